//! `shop-bench`: a load generator that measures the shop as customers feel
//! it. It speaks only the gateway's WebSocket protocol (and, to pay, the
//! local checkout's form), like any client.

mod args;
mod catalog;
mod conservation;
mod load;
mod report;
mod returning;
mod stats;
mod trace;

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser;
use clap::error::ErrorKind;
use shop_client::{ClientError, TlsProblem, Trust, websocket_url};
use shop_shared::domain::Product;
use tokio::task::JoinSet;
use tokio::time::Instant;

use args::{CatalogArgs, Cli, Command, RunArgs};
use conservation::Before;
use load::{Connection, Job, Random, Shared};
use report::Report;

/// Exit codes, as `shop-bench --help` lists them.
const EXIT_USAGE: u8 = 1;
const EXIT_UNREACHABLE: u8 = 2;
const EXIT_FAILED_ORDERS: u8 = 3;
const EXIT_NOT_CONSERVED: u8 = 4;
/// The reader of stdout went away (`shop-bench catalog | head`): 128 +
/// `SIGPIPE`, what a shell reports for a program that pipe stopped. The run
/// ends quietly.
const EXIT_BROKEN_PIPE: u8 = 141;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return match error.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(EXIT_USAGE),
            };
        }
    };
    let outcome = match cli.command {
        Command::Catalog(args) => write_catalog(&args),
        Command::Run(args) => run(&args).await,
        Command::Seed(args) => run(&args.into_run()).await,
        Command::Hello(args) => returning::measure(&args).await,
    };
    match outcome {
        Ok(code) => code,
        Err((EXIT_BROKEN_PIPE, _)) => ExitCode::from(EXIT_BROKEN_PIPE),
        Err((code, message)) => {
            let _ = writeln!(std::io::stderr(), "shop-bench: {message}");
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, String);

/// Writes `text` to stdout; a closed pipe or another write failure ends the
/// run instead of panicking as `print!` does.
fn print_out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::BrokenPipe => (EXIT_BROKEN_PIPE, String::new()),
            _ => (EXIT_USAGE, format!("cannot write the report: {error}")),
        })
}

fn cannot_write(path: &std::path::Path, error: &std::io::Error) -> String {
    format!("cannot write {}: {error}", path.display())
}

fn write_catalog(args: &CatalogArgs) -> Result<ExitCode, Failure> {
    let text = catalog::generate(&args.prefix, args.skus, args.stock);
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).map_err(|error| (EXIT_USAGE, cannot_write(path, &error)))?
        }
        None => print_out(&text)?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(args: &RunArgs) -> Result<ExitCode, Failure> {
    // A file that cannot be written fails the run before it places orders.
    let orders_file = args
        .orders
        .as_ref()
        .map(|path| {
            std::fs::File::create(path)
                .map(std::io::BufWriter::new)
                .map_err(|error| (EXIT_USAGE, cannot_write(path, &error)))
        })
        .transpose()?;
    let trust = Trust::new(args.shop.ca_cert.as_deref())
        .map_err(|error| (EXIT_USAGE, error.to_string()))?;
    let urls = websocket_urls(&args.shop.gateway);
    let connections = connect(&urls, &trust, args.connections).await?;
    let products = connections[0]
        .client
        .products()
        .await
        .map_err(|error| (EXIT_UNREACHABLE, format!("listing products: {error}")))?;
    let chosen = to_order(&products, &args.shop.sku_prefix)?;
    let url = &urls[0];
    // An operator sees the shop's stock levels: the check then uses them.
    let operator = match &args.operator_token {
        Some(token) => {
            let client = shop_client::Client::connect_with(url, Some(token.as_str()), &trust)
                .await
                .map_err(|error| {
                    (
                        EXIT_UNREACHABLE,
                        format!("signing in with --operator-token: {error}"),
                    )
                })?;
            if client.operator().is_none() {
                return Err((
                    EXIT_USAGE,
                    "--operator-token is a customer's token, not an operator's".into(),
                ));
            }
            Some(client)
        }
        None => None,
    };
    let levels: HashMap<String, Product> = match &operator {
        Some(client) => client
            .products()
            .await
            .map_err(|error| (EXIT_UNREACHABLE, format!("listing products: {error}")))?
            .into_iter()
            .map(|product| (product.sku.clone(), product))
            .collect(),
        None => HashMap::new(),
    };
    let before: BTreeMap<String, Before> = chosen
        .iter()
        .map(|product| {
            let seen = levels.get(&product.sku).unwrap_or(product);
            (product.sku.clone(), Before::of(seen))
        })
        .collect();
    let skus: Vec<String> = before.keys().cloned().collect();
    let stock: i64 = before.values().map(|before| before.available).sum();
    if !args.shop.quiet && stock < 100_000 {
        eprintln!(
            "shop-bench: only {stock} units in stock over {} skus: orders will soon be cancelled \
             OUT_OF_STOCK. For long runs, start the backend with a catalogue from \
             `shop-bench catalog` (many skus, deep stock).",
            skus.len()
        );
    }

    let shared = Arc::new(Shared::new(orders_file.is_some()));
    let clock = trace::Clock::now();
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let progress = (!args.shop.quiet).then(|| tokio::spawn(progress(shared.clone(), start)));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(trust.rustls_config())
        .build()
        .map_err(|error| (EXIT_USAGE, format!("HTTP client: {error}")))?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |since| since.as_nanos() as u64)
    });
    let plan = Plan {
        args,
        skus: Arc::new(skus),
        connections: &connections,
        shared: &shared,
        http,
        seed,
        measure_from,
        end,
    };
    match args.rate {
        Some(rate) => plan.fixed_rate(rate, start).await,
        None => plan.full_speed().await,
    }
    let measured = (Instant::now().min(end) - measure_from.min(Instant::now())).as_secs_f64();
    if let Some(progress) = progress {
        progress.abort();
        if std::io::stderr().is_terminal() {
            eprintln!();
        }
    }

    let conservation = conservation::check(
        &connections,
        operator.as_ref(),
        &before,
        Duration::from_secs(30),
    )
    .await
    .map_err(|message| (EXIT_UNREACHABLE, message))?;
    let mut totals = std::mem::take(&mut *shared.totals());
    let mut traces = std::mem::take(&mut totals.traces);
    let report = Report {
        gateway: args.shop.gateway.join(", "),
        mode: if args.rate.is_some() {
            "fixed rate"
        } else {
            "full speed"
        }
        .into(),
        target_rate: args.rate,
        connections: args.connections,
        in_flight: args.rate.is_none().then_some(args.in_flight),
        duration_s: measured,
        placed: totals.placed,
        reserved: totals.reserved,
        reserved_per_s: if measured > 0.0 {
            totals.reserved as f64 / measured
        } else {
            0.0
        },
        cancelled: totals.cancelled.into_iter().collect(),
        errors: totals.errors,
        error_samples: totals.error_samples,
        skipped: totals.skipped,
        to_reserved: totals.to_reserved.summary(),
        paid: totals.paid,
        to_paid: totals.to_paid.summary(),
        conservation,
    };
    for connection in &connections {
        connection.client.close();
    }
    if let Some(operator) = &operator {
        operator.close();
    }
    let printed = if args.shop.json {
        print_out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ))
    } else {
        print_out(&report.human())
    };
    // The report is out even when the orders file cannot be finished, and
    // the file is written even when nobody reads the report.
    let mut written = true;
    if let (Some(mut file), Some(path)) = (orders_file, &args.orders)
        && let Err(error) = trace::write(&mut file, &mut traces, measure_from, clock)
    {
        eprintln!("shop-bench: {}", cannot_write(path, &error));
        written = false;
    }
    printed?;
    Ok(if !report.conservation.ok {
        ExitCode::from(EXIT_NOT_CONSERVED)
    } else if report.errors > 0 {
        ExitCode::from(EXIT_FAILED_ORDERS)
    } else if !written {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::SUCCESS
    })
}

/// The WebSocket URLs of `--gateway`'s values.
fn websocket_urls(gateways: &[String]) -> Vec<String> {
    gateways
        .iter()
        .map(|gateway| websocket_url(gateway))
        .collect()
}

/// The products a run orders: those whose sku starts with `prefix`, or
/// every product when none does.
///
/// # Errors
///
/// [`EXIT_USAGE`] when the shop sells nothing.
fn to_order<'a>(products: &'a [Product], prefix: &str) -> Result<Vec<&'a Product>, Failure> {
    let prefixed: Vec<_> = products
        .iter()
        .filter(|product| product.sku.starts_with(prefix))
        .collect();
    let chosen = if prefixed.is_empty() {
        products.iter().collect()
    } else {
        prefixed
    };
    if chosen.is_empty() {
        return Err((EXIT_USAGE, "the shop sells nothing to order".into()));
    }
    Ok(chosen)
}

/// Why a connection to `url` failed, for the user, with the exit code.
fn unreachable(url: &str, error: ClientError) -> Failure {
    let message = match error {
        ClientError::Tls {
            problem: problem @ TlsProblem::Untrusted(_),
            ..
        } => format!(
            "no secure connection to the shop at {url}: {problem}; if its certificate \
             comes from a private certificate authority, pass that CA's certificate \
             with --ca-cert FILE"
        ),
        ClientError::Tls { problem, .. } => {
            format!("no secure connection to the shop at {url}: {problem}")
        }
        other => format!(
            "cannot reach the shop at {url} ({other}); start it with \
             `cargo run --release -p shop-backend`, or pass --gateway"
        ),
    };
    (EXIT_UNREACHABLE, message)
}

/// Which of `urls` the `index`th connection goes to: in turn, so the
/// customers spread evenly over the gateways.
fn gateway_of(urls: &[String], index: usize) -> &str {
    &urls[index % urls.len()]
}

/// Opens `count` customer connections, 32 at a time, spread over `urls`.
async fn connect(urls: &[String], trust: &Trust, count: u32) -> Result<Vec<Connection>, Failure> {
    let mut connections = Vec::with_capacity(count as usize);
    let mut opening = JoinSet::new();
    let mut started = 0;
    while connections.len() < count as usize {
        while started < count && opening.len() < 32 {
            let (url, trust) = (gateway_of(urls, started as usize).to_owned(), trust.clone());
            opening.spawn(async move {
                let opened = Connection::open(&url, &trust).await;
                opened.map_err(|error| unreachable(&url, error))
            });
            started += 1;
        }
        let Some(opened) = opening.join_next().await else {
            break;
        };
        let opened = opened.map_err(|error| (EXIT_UNREACHABLE, error.to_string()))?;
        connections.push(opened?);
    }
    Ok(connections)
}

/// How the orders of a run are sent.
struct Plan<'a> {
    args: &'a RunArgs,
    skus: Arc<Vec<String>>,
    connections: &'a [Connection],
    shared: &'a Arc<Shared>,
    http: reqwest::Client,
    seed: u64,
    measure_from: Instant,
    end: Instant,
}

impl Plan<'_> {
    /// Whether `--count` orders were sent already; counts this one.
    fn enough(&self) -> bool {
        let sent = self.shared.sent.fetch_add(1, Ordering::Relaxed);
        match self.args.count {
            Some(count) if sent >= count => {
                self.shared.enough.store(true, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    fn job(&self, random: &mut Random, connection: &Connection, due: Instant) -> Job {
        Job {
            connection: connection.clone(),
            lines: load::lines(
                &self.skus,
                random,
                self.args.max_lines,
                self.args.max_quantity,
            ),
            due,
            measured: due >= self.measure_from,
            pay: random.chance(self.args.pay),
        }
    }

    /// Orders due at `rate` per second from `start`, each sent when due
    /// whether or not earlier ones are done.
    async fn fixed_rate(&self, rate: f64, start: Instant) {
        let limit = ((rate * self.args.timeout.as_secs_f64()) as u64).max(1_000);
        let mut random = Random::new(self.seed);
        let mut tasks = JoinSet::new();
        let mut index: u64 = 0;
        loop {
            let due = start + Duration::from_secs_f64(index as f64 / rate);
            if due >= self.end || self.enough() {
                break;
            }
            tokio::time::sleep_until(due).await;
            if self
                .connections
                .iter()
                .all(|connection| connection.client.is_closed())
            {
                // The gateway went away: nothing more can be placed.
                break;
            }
            let connection = &self.connections[(index % self.connections.len() as u64) as usize];
            index += 1;
            if connection.client.is_closed() {
                self.shared.error_count.fetch_add(1, Ordering::Relaxed);
                if due >= self.measure_from {
                    self.shared
                        .totals()
                        .error("placing an order: the connection to the gateway closed".into());
                }
                continue;
            }
            if self.shared.in_flight.load(Ordering::Relaxed) >= limit {
                if due >= self.measure_from {
                    self.shared.totals().skipped += 1;
                }
                continue;
            }
            let job = self.job(&mut random, connection, due);
            tasks.spawn(load::order(
                job,
                self.shared.clone(),
                self.http.clone(),
                self.args.timeout,
            ));
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Every connection keeps `--in-flight` orders going: a new one as soon
    /// as one is RESERVED.
    async fn full_speed(&self) {
        let mut tasks = JoinSet::new();
        let mut slot: u64 = 0;
        for connection in self.connections {
            for _ in 0..self.args.in_flight {
                slot += 1;
                let connection = connection.clone();
                let (shared, http) = (self.shared.clone(), self.http.clone());
                let mut random = Random::new(self.seed.wrapping_add(slot));
                let (end, timeout, count) = (self.end, self.args.timeout, self.args.count);
                let skus = self.skus.clone();
                let measure_from = self.measure_from;
                let (pay, max_lines, max_quantity) =
                    (self.args.pay, self.args.max_lines, self.args.max_quantity);
                tasks.spawn(async move {
                    // A connection the gateway closed places nothing more
                    // (its orders would fail at once, as fast as they came).
                    while Instant::now() < end
                        && !shared.enough.load(Ordering::Relaxed)
                        && !connection.client.is_closed()
                    {
                        let sent = shared.sent.fetch_add(1, Ordering::Relaxed);
                        if count.is_some_and(|count| sent >= count) {
                            shared.enough.store(true, Ordering::Relaxed);
                            break;
                        }
                        let due = Instant::now();
                        let job = Job {
                            connection: connection.clone(),
                            lines: load::lines(&skus, &mut random, max_lines, max_quantity),
                            due,
                            measured: due >= measure_from,
                            pay: random.chance(pay),
                        };
                        load::order(job, shared.clone(), http.clone(), timeout).await;
                    }
                });
            }
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// A progress line on stderr each second: orders RESERVED per second,
/// latency of the last second, errors so far.
async fn progress(shared: Arc<Shared>, start: Instant) {
    let tty = std::io::stderr().is_terminal();
    let mut last = 0;
    let mut ticks: u64 = 0;
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.tick().await;
    loop {
        interval.tick().await;
        ticks += 1;
        let reserved = shared.reserved_count.load(Ordering::Relaxed);
        let window = shared.take_window();
        let p99 = window.summary().map_or("-".to_owned(), |summary| {
            format!("{:.1} ms", summary.p99_ms)
        });
        let line = format!(
            "{:>5.0} s  {:>7} orders/s  p99 {:>9}  in flight {:>5}  errors {}",
            start.elapsed().as_secs_f64(),
            reserved - last,
            p99,
            shared.in_flight.load(Ordering::Relaxed),
            shared.error_count.load(Ordering::Relaxed),
        );
        last = reserved;
        if tty {
            eprint!("\r{line}");
        } else if ticks.is_multiple_of(5) {
            eprintln!("{line}");
        }
    }
}
