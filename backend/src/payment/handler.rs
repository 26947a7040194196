//! The payment service's consumer: open a checkout session for each
//! RESERVED order, close it when the order is cancelled, refund a payment
//! that came too late.
//!
//! Provider calls happen outside database transactions and are safe to
//! repeat (providers key their work by order), so a crash between the call
//! and the commit only repeats the call.

use std::sync::Arc;

use async_trait::async_trait;
use shop_shared::events::{
    CheckoutReady, CreatePayment, Envelope, OrderRef, PaymentCommand, PaymentEvent, PaymentFailed,
    PaymentRefunded, RefundPayment,
};
use shop_shared::time::Timestamp;
use uuid::Uuid;

use super::PaymentService;
use super::provider::ProviderError;
use super::store::{self, PaymentRecord, PaymentStatus};
use crate::bus::{Handler, HandlerError, Record};
use crate::db::{inbox, outbox};

pub struct PaymentHandler {
    pub service: PaymentService,
}

#[async_trait]
impl Handler for PaymentHandler {
    async fn handle(&self, batch: &[Arc<Record>]) -> Result<(), HandlerError> {
        for record in batch {
            let envelope = Envelope::<PaymentCommand>::from_json(&record.payload)?;
            if store::processed(&self.service.db, envelope.id).await? {
                continue;
            }
            match &envelope.message {
                PaymentCommand::CreatePayment(command) => {
                    self.create(envelope.id, envelope.timestamp, command)
                        .await?
                }
                PaymentCommand::CancelPayment(order) => self.cancel(envelope.id, order).await?,
                PaymentCommand::RefundPayment(command) => self.refund(envelope.id, command).await?,
            }
        }
        self.service.relay.wake();
        Ok(())
    }
}

/// An unavailable provider is retried until it answers; a refusal fails
/// the record (and, after retries, dead-letters it for an operator).
fn provider_failure(error: ProviderError) -> HandlerError {
    match error {
        ProviderError::Unavailable(_) => HandlerError::Transient(anyhow::anyhow!(error)),
        ProviderError::Refused(_) => HandlerError::Failed(anyhow::anyhow!(error)),
    }
}

impl PaymentHandler {
    async fn existing(&self, order_id: Uuid) -> Result<Option<PaymentRecord>, HandlerError> {
        let mut tx = self.service.db.begin().await?;
        let payment = store::by_order(&self.service.db, &mut tx, order_id).await?;
        tx.rollback().await?;
        Ok(payment)
    }

    async fn create(
        &self,
        message_id: Uuid,
        requested_at: Timestamp,
        command: &CreatePayment,
    ) -> Result<(), HandlerError> {
        let service = &self.service;
        if self.existing(command.order_id).await?.is_some() {
            let mut tx = service.db.begin().await?;
            inbox::first_time(&mut tx, message_id).await?;
            tx.commit().await?;
            return Ok(());
        }
        if Timestamp::now() >= command.pay_until {
            // Redelivered after the provider failed for longer than the
            // order may wait: the order is cancelled by its deadline anyway,
            // and nobody could pay a session opened now.
            let reason = "the deadline to pay passed before a checkout could be opened";
            return self.fail(message_id, command, reason.into()).await;
        }
        let session = match service.provider.create_session(command, requested_at).await {
            Ok(session) => session,
            Err(ProviderError::Refused(reason)) => {
                tracing::warn!(order_id = %command.order_id, %reason, "provider refused the checkout session");
                let reason = format!("the payment provider refused the payment: {reason}");
                return self.fail(message_id, command, reason).await;
            }
            Err(error) => return Err(provider_failure(error)),
        };
        let payment = PaymentRecord {
            order_id: command.order_id,
            customer_id: command.customer_id,
            provider: service.provider.name().to_owned(),
            session_id: session.id.clone(),
            checkout_url: session.url.clone(),
            status: PaymentStatus::Open,
            amount: command.amount,
            currency: command.currency,
            payment_ref: None,
        };
        let mut tx = service.db.begin().await?;
        if inbox::first_time(&mut tx, message_id).await? && store::insert(&mut tx, &payment).await?
        {
            let event = PaymentEvent::CheckoutReady(CheckoutReady {
                order_id: command.order_id,
                session_id: session.id,
                checkout_url: session.url,
            });
            outbox::push(&mut tx, event, &command.order_id.to_string()).await?;
            tracing::info!(order_id = %command.order_id, provider = service.provider.name(), "checkout session opened");
        }
        tx.commit().await?;
        Ok(())
    }

    /// No session for this order: tells the order service why, once.
    async fn fail(
        &self,
        message_id: Uuid,
        command: &CreatePayment,
        reason: String,
    ) -> Result<(), HandlerError> {
        let mut tx = self.service.db.begin().await?;
        if inbox::first_time(&mut tx, message_id).await? {
            let event = PaymentEvent::PaymentFailed(PaymentFailed {
                order_id: command.order_id,
                reason,
            });
            outbox::push(&mut tx, event, &command.order_id.to_string()).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn cancel(&self, message_id: Uuid, order: &OrderRef) -> Result<(), HandlerError> {
        let service = &self.service;
        if let Some(payment) = self.existing(order.order_id).await?
            && payment.status == PaymentStatus::Open
        {
            service
                .provider
                .expire_session(&payment.session_id)
                .await
                .map_err(provider_failure)?;
        }
        let mut tx = service.db.begin().await?;
        if inbox::first_time(&mut tx, message_id).await?
            && let Some(payment) = store::by_order(&service.db, &mut tx, order.order_id).await?
            && payment.status == PaymentStatus::Open
        {
            store::set_status(&mut tx, order.order_id, PaymentStatus::Cancelled, None).await?;
            tracing::info!(order_id = %order.order_id, "checkout session closed");
        }
        tx.commit().await?;
        Ok(())
    }

    async fn refund(&self, message_id: Uuid, command: &RefundPayment) -> Result<(), HandlerError> {
        let service = &self.service;
        let Some(payment) = self.existing(command.order_id).await? else {
            let mut tx = service.db.begin().await?;
            inbox::first_time(&mut tx, message_id).await?;
            tx.commit().await?;
            return Ok(());
        };
        if payment.status == PaymentStatus::Paid {
            service
                .provider
                .refund(&payment)
                .await
                .map_err(provider_failure)?;
        }
        let mut tx = service.db.begin().await?;
        if inbox::first_time(&mut tx, message_id).await?
            && let Some(current) = store::by_order(&service.db, &mut tx, command.order_id).await?
            && current.status == PaymentStatus::Paid
        {
            store::set_status(&mut tx, command.order_id, PaymentStatus::Refunded, None).await?;
            let event = PaymentEvent::PaymentRefunded(PaymentRefunded {
                order_id: command.order_id,
                amount: current.amount,
                currency: current.currency,
            });
            outbox::push(&mut tx, event, &command.order_id.to_string()).await?;
            tracing::warn!(order_id = %command.order_id, reason = %command.reason, "late payment refunded");
        }
        tx.commit().await?;
        Ok(())
    }
}
