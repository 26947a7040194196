//! The payment service's unit of work: open a checkout session for each
//! RESERVED order, close it when the order is cancelled or its deadline
//! passes (and say whether the customer paid before it closed), refund a
//! payment that came too late.
//!
//! When the provider is unavailable, a create command is retried until it
//! answers (or the deadline passes), and the order service is told once
//! (`CheckoutDelayed`) so the customer sees why no checkout page comes. A
//! refund that does not go through is handed to the [`super::refunds`]
//! sweep instead of failing the command.
//!
//! Provider calls happen before the transaction (in
//! [`UnitOfWork::prepare`]) and are safe to repeat (providers key their
//! work by order), so a crash between the call and the commit only repeats
//! the call. A batch makes its provider calls first, in order, then records
//! everything in one transaction of a few statements. What each command
//! asks of the provider, and what it does to the payment, is decided in
//! [`super::domain`].

use std::collections::HashMap;

use async_trait::async_trait;
use shop_shared::events::{CheckoutDelayed, CreatePayment, Envelope, PaymentCommand, PaymentEvent};
use shop_shared::time::Timestamp;
use uuid::Uuid;

use super::PaymentService;
use super::domain::{
    self, CheckoutSession, CloseFor, Create, PaymentRecord, ProviderCall, SessionClosed,
};
use super::provider::ProviderError;
use super::refunds::{self, RefundRetry};
use super::store;
use crate::bus::{HandlerError, Record};
use crate::db::Tx;
use crate::messaging::outbox::Outgoing;
use crate::messaging::{UnitOfWork, inbox};

pub struct PaymentHandler {
    pub service: PaymentService,
}

/// A payment command with the time it was sent.
pub struct Command {
    requested_at: Timestamp,
    command: PaymentCommand,
}

impl Command {
    fn order_id(&self) -> Uuid {
        match &self.command {
            PaymentCommand::CreatePayment(command) => command.order_id,
            PaymentCommand::CancelPayment(order) => order.order_id,
            PaymentCommand::RefundPayment(command) => command.order_id,
            PaymentCommand::ExpireCheckout(order) => order.order_id,
        }
    }
}

/// What the provider calls of a batch came to, for a create command.
enum Opened {
    /// A session for an order that had none.
    Session(CheckoutSession),
    /// No session: the order service is told why.
    Failed(PaymentEvent),
}

/// What a batch's provider calls came to, by order: the sessions its
/// create commands opened (or failed to), how the sessions its cancel and
/// expire commands closed, and what its refund attempts came to.
#[derive(Default)]
pub struct ProviderCalls {
    opened: HashMap<Uuid, Opened>,
    closed: HashMap<Uuid, SessionClosed>,
    refunds: Refunds,
}

/// What the first attempt at each refund of a batch came to, by order.
type Refunds = HashMap<Uuid, Result<(), ProviderError>>;

#[async_trait]
impl UnitOfWork for PaymentHandler {
    type Message = Command;
    type Prepared = ProviderCalls;

    fn decode(&self, record: &Record) -> Result<(Uuid, Command), HandlerError> {
        let envelope = Envelope::<PaymentCommand>::from_json(&record.payload)?;
        Ok((
            envelope.id,
            Command {
                requested_at: envelope.timestamp,
                command: envelope.message,
            },
        ))
    }

    /// Makes the provider calls, for the commands not applied before.
    async fn prepare(&self, messages: &[(Uuid, Command)]) -> Result<ProviderCalls, HandlerError> {
        let service = &self.service;
        let ids: Vec<Uuid> = messages.iter().map(|(id, _)| *id).collect();
        let applied = inbox::applied(&service.db, &ids).await?;
        let commands: Vec<&Command> = messages
            .iter()
            .filter(|(id, _)| !applied.contains(id))
            .map(|(_, command)| command)
            .collect();
        if commands.is_empty() {
            return Ok(ProviderCalls::default());
        }
        let order_ids: Vec<Uuid> = commands.iter().map(|command| command.order_id()).collect();
        let mut payments = store::by_orders(&service.db, &order_ids).await?;
        let retried = store::refund_retried(&service.db, &order_ids).await?;
        let mut calls = self.open(&commands, &payments).await?;
        for (order_id, opened) in &calls.opened {
            if let (Opened::Session(session), Some(create)) =
                (opened, create_of(&commands, *order_id))
            {
                let (payment, _) = domain::opened(create, service.provider.name(), session);
                payments.insert(*order_id, payment);
            }
        }
        let mut closing: Vec<(Uuid, String)> = Vec::new();
        for command in &commands {
            let order_id = command.order_id();
            let Some(payment) = payments.get(&order_id) else {
                continue;
            };
            if let PaymentCommand::RefundPayment(_) = &command.command {
                // The sweep owns a refund it retries.
                if payment.refund_call().is_some()
                    && !retried.contains(&order_id)
                    && !calls.refunds.contains_key(&order_id)
                {
                    let outcome = self.service.provider.refund(payment).await;
                    calls.refunds.insert(order_id, outcome);
                }
                continue;
            }
            if let Some(session_id) = close_call(command, payment)
                && !closing.iter().any(|(order, _)| *order == order_id)
            {
                closing.push((order_id, session_id));
            }
        }
        if !closing.is_empty() {
            let ids: Vec<String> = closing.iter().map(|(_, id)| id.clone()).collect();
            let outcomes = self.service.provider.close_sessions(&ids).await;
            for ((order_id, _), outcome) in closing.into_iter().zip(outcomes) {
                calls
                    .closed
                    .insert(order_id, outcome.map_err(provider_failure)?);
            }
        }
        Ok(calls)
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        commands: Vec<Command>,
        calls: ProviderCalls,
        outgoing: &mut Outgoing,
    ) -> Result<(), HandlerError> {
        let provider = self.service.provider.name();
        let mut new: Vec<(PaymentRecord, PaymentEvent)> = Vec::new();
        for command in &commands {
            if let (PaymentCommand::CreatePayment(create), Some(Opened::Session(session))) =
                (&command.command, calls.opened.get(&command.order_id()))
            {
                new.push(domain::opened(create, provider, session));
            }
        }
        let records: Vec<PaymentRecord> = new.iter().map(|(payment, _)| payment.clone()).collect();
        let inserted = store::insert_many(tx, &records).await?;
        let order_ids: Vec<Uuid> = commands.iter().map(Command::order_id).collect();
        let mut current = store::by_orders_locked(tx, &order_ids).await?;
        let mut changed: Vec<Uuid> = Vec::new();
        for command in &commands {
            let order_id = command.order_id();
            let event = match calls.opened.get(&order_id) {
                Some(Opened::Session(_)) if inserted.contains(&order_id) => new
                    .iter()
                    .find(|(payment, _)| payment.order_id == order_id)
                    .map(|(_, event)| event),
                Some(Opened::Failed(event)) => Some(event),
                _ => None,
            };
            let closed = calls.closed.get(&order_id);
            let payment = current.get_mut(&order_id);
            let changed_now = match &command.command {
                PaymentCommand::RefundPayment(_) => {
                    self.record_refund(
                        tx,
                        order_id,
                        calls.refunds.get(&order_id),
                        payment,
                        outgoing,
                    )
                    .await?
                }
                _ => self.record(command, event, closed, payment, outgoing),
            };
            if changed_now && !changed.contains(&order_id) {
                changed.push(order_id);
            }
        }
        for order_id in changed {
            if let Some(payment) = current.get(&order_id) {
                store::set_status(tx, order_id, payment.status, payment.payment_ref.as_deref())
                    .await?;
            }
        }
        Ok(())
    }
}

impl PaymentHandler {
    /// Records what `command` did: publishes the event of a create command
    /// (`opened`), and moves `payment` for a cancel, expire (as the
    /// session `closed`) or refund. Returns whether the payment changed.
    #[tracing::instrument(name = "payment", skip_all, fields(order_id = %command.order_id()))]
    fn record(
        &self,
        command: &Command,
        opened: Option<&PaymentEvent>,
        closed: Option<&SessionClosed>,
        payment: Option<&mut PaymentRecord>,
        outgoing: &mut Outgoing,
    ) -> bool {
        let order_id = command.order_id();
        let correlation = order_id.to_string();
        match (&command.command, payment) {
            (PaymentCommand::CreatePayment(_), _) => {
                if let Some(event) = opened {
                    if matches!(event, PaymentEvent::CheckoutReady(_)) {
                        tracing::info!(%order_id, provider = self.service.provider.name(), "checkout session opened");
                    }
                    outgoing.push(event.clone(), &correlation);
                }
                false
            }
            (PaymentCommand::CancelPayment(_), Some(payment)) => {
                close(payment, closed, CloseFor::Cancel, outgoing)
            }
            (PaymentCommand::ExpireCheckout(_), Some(payment)) => {
                close(payment, closed, CloseFor::Deadline, outgoing)
            }
            _ => false,
        }
    }

    /// Records what the first attempt at a refund came to (`outcome`;
    /// `None` when none was made): a refund that went through moves
    /// `payment` to REFUNDED and the order service hears of it; one that
    /// did not is handed to the refund sweep, and the order service hears
    /// why. Returns whether the payment changed.
    #[tracing::instrument(name = "payment", skip_all, fields(order_id = %order_id))]
    async fn record_refund(
        &self,
        tx: &mut Tx,
        order_id: Uuid,
        outcome: Option<&Result<(), ProviderError>>,
        payment: Option<&mut PaymentRecord>,
        outgoing: &mut Outgoing,
    ) -> Result<bool, HandlerError> {
        let correlation = order_id.to_string();
        match (outcome, payment) {
            (Some(Ok(())), Some(payment)) => match payment.refund() {
                Some(event) => {
                    outgoing.push(event, &correlation);
                    tracing::warn!(%order_id, "late payment refunded");
                    Ok(true)
                }
                None => Ok(false),
            },
            (Some(Err(error)), Some(payment)) if payment.refund_call().is_some() => {
                self.service
                    .metrics
                    .refund_failed(refunds::failure_outcome(error));
                let (retry, event) = RefundRetry::start(order_id, error, Timestamp::now());
                if store::insert_refund_retry(tx, &retry).await? {
                    tracing::warn!(%order_id, %error, next = %retry.next_attempt_at, "refund did not go through; retrying later");
                    outgoing.push(event, &correlation);
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// Opens a session for every create command of an order without a
    /// payment, in one provider call; an order past its deadline gets none.
    async fn open(
        &self,
        commands: &[&Command],
        payments: &HashMap<Uuid, PaymentRecord>,
    ) -> Result<ProviderCalls, HandlerError> {
        let mut opened = HashMap::new();
        let mut wanted: Vec<(&CreatePayment, Timestamp)> = Vec::new();
        let now = Timestamp::now();
        for command in commands {
            let PaymentCommand::CreatePayment(create) = &command.command else {
                continue;
            };
            if opened.contains_key(&create.order_id)
                || wanted
                    .iter()
                    .any(|(other, _)| other.order_id == create.order_id)
            {
                continue;
            }
            match domain::create(payments.get(&create.order_id), create, now) {
                Create::Exists => {}
                Create::TooLate => {
                    tracing::info!(order_id = %create.order_id, "deadline passed before a checkout session could be opened; none is opened");
                }
                Create::Open => wanted.push((create, command.requested_at)),
            }
        }
        if wanted.is_empty() {
            return Ok(ProviderCalls {
                opened,
                ..ProviderCalls::default()
            });
        }
        let sessions = self.service.provider.create_sessions(&wanted).await;
        let mut delayed: Vec<(Uuid, String)> = Vec::new();
        let mut unavailable = None;
        for ((create, _), session) in wanted.iter().zip(sessions) {
            let outcome = match session {
                Ok(session) => Opened::Session(session),
                Err(ProviderError::Refused(reason)) => {
                    tracing::warn!(order_id = %create.order_id, %reason, "provider refused the checkout session");
                    Opened::Failed(domain::refused(create.order_id, &reason))
                }
                Err(error) => {
                    delayed.push((create.order_id, error.to_string()));
                    unavailable = Some(error);
                    continue;
                }
            };
            opened.insert(create.order_id, outcome);
        }
        if let Some(error) = unavailable {
            self.announce_delays(&delayed).await?;
            return Err(provider_failure(error));
        }
        Ok(ProviderCalls {
            opened,
            ..ProviderCalls::default()
        })
    }

    /// Tells the order service, once per order, that no checkout session
    /// can be opened yet for `delayed` (order, what the provider answered),
    /// in a transaction of its own: the create commands themselves are
    /// retried until the provider answers.
    async fn announce_delays(&self, delayed: &[(Uuid, String)]) -> Result<(), HandlerError> {
        let service = &self.service;
        let mut tx = service.db.begin().await?;
        let first = store::insert_checkout_delays(&mut tx, delayed).await?;
        let mut outgoing = Outgoing::default();
        for (order_id, reason) in delayed {
            if first.contains(order_id) {
                tracing::warn!(%order_id, %reason, "no checkout session yet: the provider is unavailable; retrying");
                let event = PaymentEvent::CheckoutDelayed(CheckoutDelayed {
                    order_id: *order_id,
                    reason: reason.clone(),
                });
                outgoing.push(event, &order_id.to_string());
            }
        }
        service.relay.commit_outgoing(tx, outgoing).await?;
        Ok(())
    }
}

/// The session `command` asks to close with the provider, if any: a
/// cancel or expire command of an open payment.
fn close_call(command: &Command, payment: &PaymentRecord) -> Option<String> {
    match &command.command {
        PaymentCommand::CancelPayment(_) | PaymentCommand::ExpireCheckout(_) => {
            match payment.cancel_call() {
                Some(ProviderCall::ExpireSession { session_id }) => Some(session_id),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Moves `payment` as closing its session came out (`closed`, when a
/// session was closed now) and queues what the order service hears.
/// Returns whether the payment changed.
fn close(
    payment: &mut PaymentRecord,
    closed: Option<&SessionClosed>,
    why: CloseFor,
    outgoing: &mut Outgoing,
) -> bool {
    let Some(closed) = closed else {
        return false;
    };
    let closing = payment.closed(closed, why);
    let order_id = payment.order_id;
    match (&closing.event, closed) {
        (Some(PaymentEvent::PaymentSucceeded(_)), _) => {
            tracing::info!(%order_id, ?why, "checkout session was paid before it closed");
        }
        (_, SessionClosed::Unpaid) => {
            tracing::info!(%order_id, ?why, "checkout session closed unpaid")
        }
        (_, SessionClosed::Completed(_)) => {
            tracing::info!(%order_id, ?why, "checkout session completed before it closed; payment settling");
        }
    }
    let changed = closing.status != payment.status || closing.payment_ref != payment.payment_ref;
    payment.status = closing.status;
    payment.payment_ref = closing.payment_ref;
    if let Some(event) = closing.event {
        outgoing.push(event, &order_id.to_string());
    }
    changed
}

/// The create command of `order_id` in the batch.
fn create_of<'a>(commands: &[&'a Command], order_id: Uuid) -> Option<&'a CreatePayment> {
    commands.iter().find_map(|command| match &command.command {
        PaymentCommand::CreatePayment(create) if create.order_id == order_id => Some(create),
        _ => None,
    })
}

/// An unavailable provider is retried until it answers; a refusal (of
/// closing a session) fails the record (and, after retries, dead-letters
/// it for an operator).
fn provider_failure(error: ProviderError) -> HandlerError {
    match error {
        ProviderError::Unavailable(_) => HandlerError::Transient(anyhow::anyhow!(error)),
        ProviderError::Refused(_) => HandlerError::Failed(anyhow::anyhow!(error)),
    }
}
