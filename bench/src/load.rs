//! The load: customer connections placing orders, each order timed from
//! sending it to the push that shows it RESERVED with its checkout URL.
//!
//! Pushes are read by one listener per connection, which records when each
//! order reached each stage; an order's task waits on that record, so no
//! extra request is made per order. At a fixed rate, latency is measured
//! from when the order was due, not when it was sent, so a shop that falls
//! behind shows it in the figures instead of slowing the load down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shop_client::{Client, ClientError, Push, Trust};
use shop_shared::domain::{Order, OrderStatus};
use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use crate::stats::Samples;
use crate::trace::{Stamps, Trace};

/// How far an order got, and when.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub status: OrderStatus,
    pub checkout_url: Option<String>,
    pub cancel_reason: Option<String>,
    pub stamps: Stamps,
}

impl Seen {
    fn of(order: &Order, at: Instant) -> Seen {
        Seen {
            at,
            status: order.status,
            checkout_url: order.checkout_url.clone(),
            cancel_reason: order.cancel_reason.map(|reason| reason.as_str().to_owned()),
            stamps: Stamps::of(order),
        }
    }
}

/// What an order task waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// RESERVED with a checkout URL, or a final status.
    Checkout,
    /// PAID, or cancelled.
    Settled,
}

impl Want {
    fn met_by(self, order: &Order) -> bool {
        match self {
            Want::Checkout => order.checkout_url.is_some() || order.status.is_final(),
            Want::Settled => order.status.is_final(),
        }
    }
}

#[derive(Default)]
struct Entry {
    checkout: Option<Seen>,
    settled: Option<Seen>,
    waiters: Vec<(Want, oneshot::Sender<Seen>)>,
}

/// When each order of one connection reached each stage.
#[derive(Default)]
struct Tracker {
    entries: Mutex<HashMap<Uuid, Entry>>,
    /// How many times the listener fell behind and missed pushes.
    lags: AtomicU64,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        shop_shared::sync::lock(&self.entries)
    }

    fn observe(&self, order: &Order, at: Instant) {
        let mut entries = self.lock();
        let entry = entries.entry(order.id).or_default();
        if entry.checkout.is_none() && Want::Checkout.met_by(order) {
            entry.checkout = Some(Seen::of(order, at));
        }
        if entry.settled.is_none() && Want::Settled.met_by(order) {
            entry.settled = Some(Seen::of(order, at));
        }
        let waiters = std::mem::take(&mut entry.waiters);
        for (want, waiter) in waiters {
            let seen = match want {
                Want::Checkout => entry.checkout.clone(),
                Want::Settled => entry.settled.clone(),
            };
            match seen {
                Some(seen) => {
                    let _ = waiter.send(seen);
                }
                None => entry.waiters.push((want, waiter)),
            }
        }
    }

    fn wait(&self, id: Uuid, want: Want) -> oneshot::Receiver<Seen> {
        let (sender, receiver) = oneshot::channel();
        let mut entries = self.lock();
        let entry = entries.entry(id).or_default();
        let seen = match want {
            Want::Checkout => entry.checkout.clone(),
            Want::Settled => entry.settled.clone(),
        };
        match seen {
            Some(seen) => {
                let _ = sender.send(seen);
            }
            None => entry.waiters.push((want, sender)),
        }
        receiver
    }

    fn waiting(&self) -> Vec<Uuid> {
        self.lock()
            .iter()
            .filter(|(_, entry)| !entry.waiters.is_empty())
            .map(|(id, _)| *id)
            .collect()
    }

    fn forget(&self, id: Uuid) {
        self.lock().remove(&id);
    }
}

/// One customer connection and the record of its orders.
#[derive(Clone)]
pub struct Connection {
    pub client: Client,
    tracker: Arc<Tracker>,
}

impl Connection {
    pub async fn open(url: &str, trust: &Trust) -> Result<Connection, ClientError> {
        let client = Client::connect_with(url, None, trust)
            .await?
            .with_reply_timeout(Duration::from_secs(30));
        let tracker = Arc::new(Tracker::default());
        tokio::spawn(listen(client.clone(), client.subscribe(), tracker.clone()));
        Ok(Connection { client, tracker })
    }
}

/// Records every order push; after missing pushes (a slow reader), asks for
/// the orders still awaited.
async fn listen(client: Client, mut pushes: broadcast::Receiver<Push>, tracker: Arc<Tracker>) {
    loop {
        match pushes.recv().await {
            Ok(Push::Order(order)) => tracker.observe(&order, Instant::now()),
            Ok(Push::Disconnected) | Err(broadcast::error::RecvError::Closed) => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {
                tracker.lags.fetch_add(1, Ordering::SeqCst);
                for id in tracker.waiting() {
                    let (client, tracker) = (client.clone(), tracker.clone());
                    tokio::spawn(async move {
                        if let Ok(order) = client.order(&id.to_string()).await {
                            tracker.observe(&order, Instant::now());
                        }
                    });
                }
            }
        }
    }
}

/// Everything measured, summed over all orders.
#[derive(Debug, Default)]
pub struct Totals {
    /// Orders sent in the measured window.
    pub placed: u64,
    pub reserved: u64,
    /// Cancelled instead of reserved, by reason.
    pub cancelled: HashMap<String, u64>,
    pub errors: u64,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    pub to_reserved: Samples,
    pub paid: u64,
    pub pay_errors: u64,
    pub to_paid: Samples,
    /// Orders due at a fixed rate but not sent, because too many were
    /// still in flight.
    pub skipped: u64,
    /// Each measured order's way to RESERVED, when kept.
    pub traces: Vec<Trace>,
}

impl Totals {
    pub fn error(&mut self, message: String) {
        self.errors += 1;
        if self.error_samples.len() < 5 && !self.error_samples.contains(&message) {
            self.error_samples.push(message);
        }
    }
}

/// State shared by the order tasks of a run.
pub struct Shared {
    pub totals: Mutex<Totals>,
    /// Latencies of the last progress interval.
    pub window: Mutex<Samples>,
    pub reserved_count: AtomicU64,
    pub error_count: AtomicU64,
    pub sent: AtomicU64,
    pub in_flight: AtomicU64,
    /// Set when `--count` orders were sent.
    pub enough: AtomicBool,
    /// Whether to keep each measured order's [`Trace`] (`--orders`).
    pub keep_traces: bool,
}

impl Shared {
    pub fn new(keep_traces: bool) -> Shared {
        Shared {
            totals: Mutex::default(),
            window: Mutex::default(),
            reserved_count: AtomicU64::new(0),
            error_count: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            enough: AtomicBool::new(false),
            keep_traces,
        }
    }

    pub fn totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        shop_shared::sync::lock(&self.totals)
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Samples> {
        shop_shared::sync::lock(&self.window)
    }

    pub fn take_window(&self) -> Samples {
        std::mem::take(&mut *self.window())
    }
}

/// A small, fast pseudo-random generator (xorshift64*), good enough to
/// pick order lines.
#[derive(Debug, Clone)]
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Random {
        Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6D_DD1D)
    }

    /// A number in `1..=most`.
    pub fn upto(&mut self, most: u32) -> u32 {
        (self.next() % u64::from(most.max(1))) as u32 + 1
    }

    /// True with probability `share`.
    pub fn chance(&mut self, share: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < share
    }
}

/// The lines of one order: 1 to `max_lines` distinct skus, 1 to
/// `max_quantity` units each.
pub fn lines(
    skus: &[String],
    random: &mut Random,
    max_lines: u32,
    max_quantity: u32,
) -> Vec<(String, i64)> {
    let count = random.upto(max_lines).min(skus.len() as u32) as usize;
    let mut lines: Vec<(String, i64)> = Vec::with_capacity(count);
    while lines.len() < count {
        let sku = &skus[(random.next() % skus.len() as u64) as usize];
        if lines.iter().all(|(taken, _)| taken != sku) {
            lines.push((sku.clone(), i64::from(random.upto(max_quantity))));
        }
    }
    lines
}

/// What one order task needs.
pub struct Job {
    pub connection: Connection,
    pub lines: Vec<(String, i64)>,
    /// When the order was due (fixed rate) or sent (full speed).
    pub due: Instant,
    /// Whether it falls in the measured window.
    pub measured: bool,
    pub pay: bool,
}

/// Places one order, waits for it to be RESERVED (or cancelled), and pays
/// it if asked; records the outcome.
pub async fn order(job: Job, shared: Arc<Shared>, http: reqwest::Client, timeout: Duration) {
    shared.in_flight.fetch_add(1, Ordering::Relaxed);
    let connection = &job.connection;
    let lines: Vec<(&str, i64)> = job
        .lines
        .iter()
        .map(|(sku, quantity)| (sku.as_str(), *quantity))
        .collect();
    let key = Uuid::new_v4().to_string();
    let outcome = tokio::time::timeout(timeout, async {
        let lags = connection.tracker.lags.load(Ordering::SeqCst);
        let placed = connection
            .client
            .place_order(&lines, &key)
            .await
            .map_err(|error| format!("placing an order: {error}"))?;
        let waiting = connection.tracker.wait(placed.id, Want::Checkout);
        if connection.tracker.lags.load(Ordering::SeqCst) != lags {
            // Pushes were missed while the order was being placed: ask.
            if let Ok(order) = connection.client.order(&placed.id.to_string()).await {
                connection.tracker.observe(&order, Instant::now());
            }
        }
        let seen = waiting
            .await
            .map_err(|_| "the connection closed".to_owned())?;
        Ok::<_, String>((placed.id, seen))
    })
    .await
    .unwrap_or_else(|_| Err(format!("no RESERVED within {timeout:?}")));
    let mut paying = None;
    {
        let mut totals = shared.totals();
        if job.measured {
            totals.placed += 1;
        }
        match &outcome {
            Ok((id, seen)) if seen.status == OrderStatus::Reserved => {
                shared.reserved_count.fetch_add(1, Ordering::Relaxed);
                if job.measured {
                    let latency = seen.at.saturating_duration_since(job.due);
                    totals.reserved += 1;
                    totals.to_reserved.add(latency);
                    shared.window().add(latency);
                    if shared.keep_traces {
                        totals.traces.push(Trace {
                            due: job.due,
                            seen: seen.at,
                            stamps: seen.stamps,
                        });
                    }
                }
                if job.pay {
                    paying = Some((*id, seen.checkout_url.clone().unwrap_or_default()));
                }
            }
            Ok((_, seen)) => {
                if job.measured {
                    let reason = seen
                        .cancel_reason
                        .clone()
                        .unwrap_or_else(|| seen.status.to_string());
                    *totals.cancelled.entry(reason).or_default() += 1;
                }
            }
            Err(message) => {
                shared.error_count.fetch_add(1, Ordering::Relaxed);
                if job.measured {
                    totals.error(message.clone());
                }
            }
        }
    }
    if let Some((id, url)) = paying {
        let paid = pay(connection, &http, id, &url, timeout).await;
        let mut totals = shared.totals();
        match paid {
            Ok(latency) if job.measured => {
                totals.paid += 1;
                totals.to_paid.add(latency);
            }
            Ok(_) => {}
            Err(message) => {
                totals.pay_errors += 1;
                totals.error(message);
            }
        }
    }
    if let Ok((id, _)) = outcome {
        connection.tracker.forget(id);
    }
    shared.in_flight.fetch_sub(1, Ordering::Relaxed);
}

/// Pays through the local checkout with a test card; the time from
/// submitting the form to the push that shows the order PAID.
async fn pay(
    connection: &Connection,
    http: &reqwest::Client,
    id: Uuid,
    url: &str,
    timeout: Duration,
) -> Result<Duration, String> {
    let settled = connection.tracker.wait(id, Want::Settled);
    let started = Instant::now();
    let response = http
        .post(url)
        .form(&[
            ("card_number", "4242424242424242"),
            ("expiry", "12/34"),
            ("cvc", "123"),
            ("name", "Bench Customer"),
        ])
        .send()
        .await
        .map_err(|error| format!("paying at {url}: {}", with_causes(&error)))?;
    if response.status() != reqwest::StatusCode::SEE_OTHER {
        return Err(format!(
            "the checkout at {url} answered {} instead of taking the payment \
             (is the shop using the local checkout?)",
            response.status()
        ));
    }
    let seen = tokio::time::timeout(timeout, settled)
        .await
        .map_err(|_| format!("no PAID within {timeout:?} after paying"))?
        .map_err(|_| "the connection closed".to_owned())?;
    if seen.status != OrderStatus::Paid {
        return Err(format!("the paid order became {}", seen.status));
    }
    Ok(seen.at.saturating_duration_since(started))
}

/// `error` and each error that caused it, joined with `: ` (reqwest's own
/// message leaves out why, such as an untrusted certificate).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_distinct_skus_within_the_limits() {
        let skus: Vec<String> = (0..5).map(|index| format!("S{index}")).collect();
        let mut random = Random::new(7);
        let mut counts = [0; 4];
        for _ in 0..2_000 {
            let lines = lines(&skus, &mut random, 3, 4);
            assert!((1..=3).contains(&lines.len()));
            counts[lines.len()] += 1;
            for (index, (sku, quantity)) in lines.iter().enumerate() {
                assert!((1..=4).contains(quantity));
                assert!(lines[index + 1..].iter().all(|(other, _)| other != sku));
            }
        }
        assert!(counts[1..].iter().all(|&count| count > 500), "{counts:?}");
        let one = vec!["ONLY".to_owned()];
        assert_eq!(lines(&one, &mut random, 3, 4).len(), 1);
    }

    #[test]
    fn chance_follows_the_share() {
        let mut random = Random::new(1);
        let hits = (0..10_000).filter(|_| random.chance(0.25)).count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| random.chance(0.0)));
        assert!((0..1000).all(|_| random.chance(1.0)));
    }
}
