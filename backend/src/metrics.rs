//! Metrics in the Prometheus text format, served at `/metrics`.
//!
//! Counters are kept in memory and counted where things happen (messages
//! published and consumed, handler failures, dead letters, reservations,
//! webhooks, gateway commands). Gauges are read from each service's own
//! state when scraped (orders by status, stock per product, connections);
//! those that count a table's rows reuse a count for [`COUNTS_REUSED_FOR`].

use shop_shared::sync::lock;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::db::Db;

type Labels = Vec<(&'static str, String)>;

/// The counters of one process. Cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    counters: Arc<Mutex<BTreeMap<&'static str, BTreeMap<Labels, u64>>>>,
    /// Gauges set where they change (rather than read when scraped).
    levels: Arc<Mutex<BTreeMap<Labels, f64>>>,
}

/// One gauge reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Labels,
    pub value: f64,
}

/// Something that reads gauges when `/metrics` is scraped.
pub type GaugeSource =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<Sample>> + Send>> + Send + Sync>;

/// A [`GaugeSource`] from an async function.
pub fn source<F, Fut>(read: F) -> GaugeSource
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<Sample>> + Send + 'static,
{
    Arc::new(move || Box::pin(read()))
}

/// How long [`rows_by`] reuses a count: scrapes within this time of a
/// count read the same numbers. Counting reads the whole table, and
/// `/metrics` needs no login, so however often it is scraped a table is
/// read at most once in this time (Prometheus scrapes every 15 s by
/// default, `scrape_interval`).
pub const COUNTS_REUSED_FOR: Duration = Duration::from_secs(10);

/// When a count was made, and what it gave.
type Counted = (Instant, Vec<Sample>);

/// The gauge `name` counting the rows of `table` by the value of `column`
/// (orders by status, payments by status), labelled with that value.
/// Table and column are the caller's constants. The count runs on
/// [`Db::reports`], off the service's own connection, one at a time, and
/// is reused for [`COUNTS_REUSED_FOR`].
pub fn rows_by(
    db: Db,
    table: &'static str,
    column: &'static str,
    name: &'static str,
    help: &'static str,
) -> GaugeSource {
    let last: Arc<tokio::sync::Mutex<Option<Counted>>> = Arc::default();
    source(move || {
        let db = db.clone();
        let last = Arc::clone(&last);
        async move {
            // Held while counting: a scrape that comes meanwhile waits for
            // this count instead of starting another.
            let mut last = last.lock().await;
            if let Some((at, samples)) = last.as_ref()
                && at.elapsed() < COUNTS_REUSED_FOR
            {
                return samples.clone();
            }
            match crate::db::count_by(&db, table, column).await {
                Ok(counts) => {
                    let samples: Vec<Sample> = counts
                        .into_iter()
                        .map(|(value, count)| Sample {
                            name,
                            help,
                            labels: vec![(column, value)],
                            value: count as f64,
                        })
                        .collect();
                    *last = Some((Instant::now(), samples.clone()));
                    samples
                }
                Err(error) => {
                    tracing::warn!(%error, table, "cannot count rows for metrics");
                    Vec::new()
                }
            }
        }
    })
}

/// One [`GaugeSource`] reading all of `sources`, in order.
pub fn combine(sources: Vec<GaugeSource>) -> GaugeSource {
    let sources = Arc::new(sources);
    source(move || {
        let sources = Arc::clone(&sources);
        async move {
            let mut samples = Vec::new();
            for read in sources.iter() {
                samples.extend(read().await);
            }
            samples
        }
    })
}

/// Help text of each counter.
const COUNTERS: &[(&str, &str)] = &[
    (
        "shop_bus_messages_published_total",
        "Messages published to the bus, by topic.",
    ),
    (
        "shop_bus_messages_consumed_total",
        "Messages handled from the bus, by consumer group and topic.",
    ),
    (
        "shop_bus_handler_failures_total",
        "Batches a consumer failed to handle (and retried), by group.",
    ),
    (
        "shop_bus_dead_letters_total",
        "Messages given up on and sent to a dead-letter topic, by group.",
    ),
    (
        "shop_reservations_total",
        "Reservation requests, by outcome (reserved, rejected).",
    ),
    (
        "shop_catalog_changes_total",
        "Operators' catalogue changes, by action and outcome (applied, or the refusal's code).",
    ),
    (
        "shop_webhooks_total",
        "Payment webhooks received, by outcome.",
    ),
    (
        "shop_gateway_commands_total",
        "Client commands, by type and outcome (ok or the error code).",
    ),
    (
        "shop_http_connections_refused_total",
        "Connections refused with 503, by the limit they met (total, per_address).",
    ),
    (
        "shop_pruned_rows_total",
        "Rows deleted by retention, by service and table (docs/architecture.md, Retention).",
    ),
    (
        "shop_refund_failures_total",
        "Refund attempts that did not go through and are retried, by outcome (refused by the provider, provider unavailable).",
    ),
];

impl Metrics {
    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], by: u64) {
        let labels: Labels = labels
            .iter()
            .map(|(key, value)| (*key, (*value).to_owned()))
            .collect();
        let mut counters = lock(&self.counters);
        *counters.entry(name).or_default().entry(labels).or_default() += by;
    }

    pub fn published(&self, topic: &str) {
        self.add("shop_bus_messages_published_total", &[("topic", topic)], 1);
    }

    pub fn consumed(&self, group: &str, topic: &str, count: u64) {
        self.add(
            "shop_bus_messages_consumed_total",
            &[("group", group), ("topic", topic)],
            count,
        );
    }

    pub fn handler_failed(&self, group: &str) {
        self.add("shop_bus_handler_failures_total", &[("group", group)], 1);
    }

    pub fn dead_lettered(&self, group: &str) {
        self.add("shop_bus_dead_letters_total", &[("group", group)], 1);
    }

    pub fn reservation(&self, outcome: &str) {
        self.add("shop_reservations_total", &[("outcome", outcome)], 1);
    }

    /// An operator's catalogue change: `applied`, or the refusal's code.
    pub fn catalog_change(&self, action: &str, outcome: &str) {
        self.add(
            "shop_catalog_changes_total",
            &[("action", action), ("outcome", outcome)],
            1,
        );
    }

    /// A refund attempt did not go through (`refused` or `unavailable`).
    pub fn refund_failed(&self, outcome: &str) {
        self.add("shop_refund_failures_total", &[("outcome", outcome)], 1);
    }

    pub fn webhook(&self, outcome: &str) {
        self.add("shop_webhooks_total", &[("outcome", outcome)], 1);
    }

    /// How many partitions of `group`'s topics this process reads now.
    pub fn set_assigned_partitions(&self, group: &str, partitions: usize) {
        let labels: Labels = vec![("group", group.to_owned())];
        let mut levels = lock(&self.levels);
        levels.insert(labels, partitions as f64);
    }

    pub fn command(&self, kind: &str, outcome: &str) {
        self.add(
            "shop_gateway_commands_total",
            &[("type", kind), ("outcome", outcome)],
            1,
        );
    }

    /// A connection refused for meeting `limit`.
    pub fn connection_refused(&self, limit: &str) {
        self.add(
            "shop_http_connections_refused_total",
            &[("reason", limit)],
            1,
        );
    }

    /// The value of a counter, for tests.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let counters = lock(&self.counters);
        counters
            .get(name)
            .and_then(|series| {
                series.iter().find_map(|(have, value)| {
                    let same = have.len() == labels.len()
                        && have
                            .iter()
                            .zip(labels)
                            .all(|((k1, v1), (k2, v2))| k1 == k2 && v1 == v2);
                    same.then_some(*value)
                })
            })
            .unwrap_or(0)
    }

    /// Counters and `gauges` in the Prometheus text format.
    pub fn render(&self, gauges: &[Sample]) -> String {
        let mut out = String::new();
        let counters = lock(&self.counters).clone();
        for (name, help) in COUNTERS {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            if let Some(series) = counters.get(name) {
                for (labels, value) in series {
                    let _ = writeln!(out, "{name}{} {value}", render_labels(labels));
                }
            }
        }
        let levels = lock(&self.levels).clone();
        let assigned = levels.into_iter().map(|(labels, value)| Sample {
            name: "shop_bus_assigned_partitions",
            help: "Partitions this process reads for a consumer group.",
            labels,
            value,
        });
        let gauges: Vec<Sample> = assigned.chain(gauges.iter().cloned()).collect();
        let mut described = std::collections::HashSet::new();
        for sample in &gauges {
            if described.insert(sample.name) {
                let _ = writeln!(
                    out,
                    "# HELP {} {}\n# TYPE {} gauge",
                    sample.name, sample.help, sample.name
                );
            }
            let _ = writeln!(
                out,
                "{}{} {}",
                sample.name,
                render_labels(&sample.labels),
                sample.value
            );
        }
        out
    }
}

fn render_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(key, value)| {
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{key}=\"{escaped}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[derive(Clone)]
struct Scrape {
    metrics: Metrics,
    sources: Vec<GaugeSource>,
}

/// `GET /metrics`.
pub fn router(metrics: Metrics, sources: Vec<GaugeSource>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape { metrics, sources })
}

async fn scrape(State(scrape): State<Scrape>) -> impl IntoResponse {
    let mut gauges = Vec::new();
    for source in &scrape.sources {
        gauges.extend(source().await);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        scrape.metrics.render(&gauges),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scrapes in quick succession read the table once: the second sees
    /// the first's count, not the row added in between.
    #[tokio::test]
    async fn a_row_count_is_reused_by_the_scrapes_right_after_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::sqlite(&dir.path().join("x.sqlite"))
            .await
            .expect("opens");
        for sql in [
            "CREATE TABLE orders (status TEXT NOT NULL)",
            "INSERT INTO orders VALUES ('PAID')",
        ] {
            sqlx::query(sql).execute(db.pool()).await.expect("setup");
        }
        let gauge = rows_by(db.clone(), "orders", "status", "shop_orders", "Orders.");
        let paid = |samples: Vec<Sample>| {
            samples
                .iter()
                .find(|sample| sample.labels == vec![("status", "PAID".to_owned())])
                .map(|sample| sample.value)
        };
        assert_eq!(paid(gauge().await), Some(1.0));
        sqlx::query("INSERT INTO orders VALUES ('PAID')")
            .execute(db.pool())
            .await
            .expect("insert");
        assert_eq!(
            paid(gauge().await),
            Some(1.0),
            "reused within COUNTS_REUSED_FOR"
        );
    }

    #[test]
    fn renders_counters_and_gauges_in_the_prometheus_text_format() {
        let metrics = Metrics::default();
        metrics.published("orders.v1");
        metrics.published("orders.v1");
        metrics.webhook("dup\"licate");
        let gauges = vec![Sample {
            name: "shop_orders",
            help: "Orders by status.",
            labels: vec![("status", "PAID".into())],
            value: 3.0,
        }];
        let text = metrics.render(&gauges);
        assert!(text.contains("# TYPE shop_bus_messages_published_total counter"));
        assert!(
            text.contains("shop_bus_messages_published_total{topic=\"orders.v1\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("shop_webhooks_total{outcome=\"dup\\\"licate\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE shop_orders gauge\nshop_orders{status=\"PAID\"} 3"),
            "{text}"
        );
        assert_eq!(
            metrics.get(
                "shop_bus_messages_published_total",
                &[("topic", "orders.v1")]
            ),
            2
        );
    }
}
