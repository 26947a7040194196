//! The payment service's consumer: open a checkout session for each
//! RESERVED order, close it when the order is cancelled, refund a payment
//! that came too late.
//!
//! Provider calls happen outside database transactions and are safe to
//! repeat (providers key their work by order), so a crash between the call
//! and the commit only repeats the call. A batch of commands makes its
//! provider calls first, in order, then records everything in one
//! transaction of a few statements.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use shop_shared::events::{
    CheckoutReady, CreatePayment, Envelope, PaymentCommand, PaymentEvent, PaymentFailed,
    PaymentRefunded,
};
use shop_shared::time::Timestamp;
use uuid::Uuid;

use super::PaymentService;
use super::provider::{CheckoutSession, ProviderError};
use super::store::{self, PaymentRecord, PaymentStatus};
use crate::bus::{Handler, HandlerError, Record};
use crate::db::inbox;
use crate::db::outbox::Outgoing;

pub struct PaymentHandler {
    pub service: PaymentService,
}

/// One command of a batch, with what its envelope says.
struct Command {
    id: Uuid,
    requested_at: Timestamp,
    command: PaymentCommand,
}

impl Command {
    fn order_id(&self) -> Uuid {
        match &self.command {
            PaymentCommand::CreatePayment(command) => command.order_id,
            PaymentCommand::CancelPayment(order) => order.order_id,
            PaymentCommand::RefundPayment(command) => command.order_id,
        }
    }
}

/// What the provider calls of a batch came to, for a create command.
enum Opened {
    /// A session for an order that had none.
    Session(CheckoutSession),
    /// No session: the order service is told why.
    Failed(String),
}

#[async_trait]
impl Handler for PaymentHandler {
    async fn handle(&self, batch: &[Arc<Record>]) -> Result<(), HandlerError> {
        let service = &self.service;
        let mut commands = Vec::with_capacity(batch.len());
        for record in batch {
            let envelope = Envelope::<PaymentCommand>::from_json(&record.payload)?;
            commands.push(Command {
                id: envelope.id,
                requested_at: envelope.timestamp,
                command: envelope.message,
            });
        }
        let ids: Vec<Uuid> = commands.iter().map(|command| command.id).collect();
        let applied = store::processed(&service.db, &ids).await?;
        let mut seen = std::collections::HashSet::new();
        commands.retain(|command| !applied.contains(&command.id) && seen.insert(command.id));
        if commands.is_empty() {
            return Ok(());
        }

        // Provider calls, outside any transaction.
        let order_ids: Vec<Uuid> = commands.iter().map(Command::order_id).collect();
        let mut payments = store::by_orders(&service.db, None, &order_ids).await?;
        let opened = self.open(&commands, &payments).await?;
        for (order_id, opened) in &opened {
            if let (Opened::Session(session), Some(command)) =
                (opened, create_of(&commands, *order_id))
            {
                payments.insert(*order_id, new_payment(service, command, session));
            }
        }
        for command in &commands {
            let order_id = command.order_id();
            match (&command.command, payments.get(&order_id)) {
                (PaymentCommand::CancelPayment(_), Some(payment))
                    if payment.status == PaymentStatus::Open =>
                {
                    service
                        .provider
                        .expire_session(&payment.session_id)
                        .await
                        .map_err(provider_failure)?;
                }
                (PaymentCommand::RefundPayment(_), Some(payment))
                    if payment.status == PaymentStatus::Paid =>
                {
                    service
                        .provider
                        .refund(payment)
                        .await
                        .map_err(provider_failure)?;
                }
                _ => {}
            }
        }

        // Everything recorded in one transaction.
        let mut tx = service.db.begin().await?;
        let mut fresh = inbox::first_time_many(&mut tx, &ids).await?;
        commands.retain(|command| fresh.remove(&command.id));
        let new: Vec<PaymentRecord> = commands
            .iter()
            .filter_map(
                |command| match (&command.command, opened.get(&command.order_id())) {
                    (PaymentCommand::CreatePayment(create), Some(Opened::Session(session))) => {
                        Some(new_payment(service, create, session))
                    }
                    _ => None,
                },
            )
            .collect();
        let inserted = store::insert_many(&mut tx, &new).await?;
        let current = store::by_orders(&service.db, Some(&mut tx), &order_ids).await?;
        let mut statuses: HashMap<Uuid, PaymentStatus> = HashMap::new();
        let mut outgoing = Outgoing::default();
        for command in &commands {
            let order_id = command.order_id();
            let correlation = order_id.to_string();
            let status = statuses
                .get(&order_id)
                .copied()
                .or_else(|| current.get(&order_id).map(|payment| payment.status));
            match &command.command {
                PaymentCommand::CreatePayment(_) => match opened.get(&order_id) {
                    Some(Opened::Session(session)) if inserted.contains(&order_id) => {
                        let event = PaymentEvent::CheckoutReady(CheckoutReady {
                            order_id,
                            session_id: session.id.clone(),
                            checkout_url: session.url.clone(),
                        });
                        outgoing.push(event, &correlation);
                        tracing::info!(%order_id, provider = service.provider.name(), "checkout session opened");
                    }
                    Some(Opened::Failed(reason)) => {
                        let event = PaymentEvent::PaymentFailed(PaymentFailed {
                            order_id,
                            reason: reason.clone(),
                        });
                        outgoing.push(event, &correlation);
                    }
                    _ => {}
                },
                PaymentCommand::CancelPayment(_) => {
                    if status == Some(PaymentStatus::Open) {
                        statuses.insert(order_id, PaymentStatus::Cancelled);
                        tracing::info!(%order_id, "checkout session closed");
                    }
                }
                PaymentCommand::RefundPayment(refund) => {
                    if status == Some(PaymentStatus::Paid)
                        && let Some(payment) = current.get(&order_id)
                    {
                        statuses.insert(order_id, PaymentStatus::Refunded);
                        let event = PaymentEvent::PaymentRefunded(PaymentRefunded {
                            order_id,
                            amount: payment.amount,
                            currency: payment.currency,
                        });
                        outgoing.push(event, &correlation);
                        tracing::warn!(%order_id, reason = %refund.reason, "late payment refunded");
                    }
                }
            }
        }
        for (order_id, status) in statuses {
            store::set_status(&mut tx, order_id, status, None).await?;
        }
        let written = outgoing.write(&mut tx).await?;
        service.relay.commit(tx, written).await?;
        Ok(())
    }
}

impl PaymentHandler {
    /// Opens a session for every create command of an order without a
    /// payment, in one provider call; an order past its deadline gets none.
    async fn open(
        &self,
        commands: &[Command],
        payments: &HashMap<Uuid, PaymentRecord>,
    ) -> Result<HashMap<Uuid, Opened>, HandlerError> {
        let mut opened = HashMap::new();
        let mut wanted: Vec<(&CreatePayment, Timestamp)> = Vec::new();
        let now = Timestamp::now();
        for command in commands {
            let PaymentCommand::CreatePayment(create) = &command.command else {
                continue;
            };
            if payments.contains_key(&create.order_id)
                || opened.contains_key(&create.order_id)
                || wanted
                    .iter()
                    .any(|(other, _)| other.order_id == create.order_id)
            {
                continue;
            }
            if now >= create.pay_until {
                // Redelivered after the provider failed for longer than the
                // order may wait: the order is cancelled by its deadline
                // anyway, and nobody could pay a session opened now.
                let reason = "the deadline to pay passed before a checkout could be opened";
                opened.insert(create.order_id, Opened::Failed(reason.into()));
                continue;
            }
            wanted.push((create, command.requested_at));
        }
        if wanted.is_empty() {
            return Ok(opened);
        }
        let sessions = self.service.provider.create_sessions(&wanted).await;
        for ((create, _), session) in wanted.iter().zip(sessions) {
            let outcome = match session {
                Ok(session) => Opened::Session(session),
                Err(ProviderError::Refused(reason)) => {
                    tracing::warn!(order_id = %create.order_id, %reason, "provider refused the checkout session");
                    Opened::Failed(format!(
                        "the payment provider refused the payment: {reason}"
                    ))
                }
                Err(error) => return Err(provider_failure(error)),
            };
            opened.insert(create.order_id, outcome);
        }
        Ok(opened)
    }
}

/// The create command of `order_id` in the batch.
fn create_of(commands: &[Command], order_id: Uuid) -> Option<&CreatePayment> {
    commands.iter().find_map(|command| match &command.command {
        PaymentCommand::CreatePayment(create) if create.order_id == order_id => Some(create),
        _ => None,
    })
}

fn new_payment(
    service: &PaymentService,
    command: &CreatePayment,
    session: &CheckoutSession,
) -> PaymentRecord {
    PaymentRecord {
        order_id: command.order_id,
        customer_id: command.customer_id,
        provider: service.provider.name().to_owned(),
        session_id: session.id.clone(),
        checkout_url: session.url.clone(),
        status: PaymentStatus::Open,
        amount: command.amount,
        currency: command.currency,
        payment_ref: None,
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
