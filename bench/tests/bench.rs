//! The real `shop-bench` binary against a real backend started on port 0:
//! a short run at a fixed rate that pays some orders, a run at full speed
//! over scarce stock, and its errors.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use shop_backend::config::{ConnectionArgs, EmbeddedArgs, LimitArgs, TlsArgs};
use shop_backend::{Application, Running};
use tokio::process::Command;

/// A backend serving in this process.
struct Shop {
    gateway: String,
    dir: tempfile::TempDir,
    _running: Running,
}

impl Shop {
    /// A shop selling the catalogue `shop-bench catalog` writes for `args`.
    async fn start(catalog_args: &[&str]) -> Shop {
        Shop::start_serving(catalog_args, TlsArgs::default()).await
    }

    /// [`Shop::start`], serving TLS with `tls`.
    async fn start_serving(catalog_args: &[&str], tls: TlsArgs) -> Shop {
        Shop::start_configured(catalog_args, tls, Duration::from_secs(600)).await
    }

    async fn start_configured(catalog_args: &[&str], tls: TlsArgs, pay_ttl: Duration) -> Shop {
        let dir = tempfile::tempdir().expect("temporary directory");
        let catalog = dir.path().join("catalog.toml");
        let written = bench(&["catalog", "--out", path(&catalog)])
            .args(catalog_args)
            .output()
            .await
            .expect("shop-bench runs");
        assert!(written.status.success(), "catalog: {written:?}");
        // Each bench connection is one customer ordering far past the
        // per-customer limits, all from one address: lift them, as
        // scripts/bench.sh does.
        let local = EmbeddedArgs::local(dir.path().join("data"));
        let app = Application::build(EmbeddedArgs {
            pay_ttl,
            catalog: Some(catalog),
            limits: LimitArgs {
                hold_limit: 0,
                order_rate: 0,
            },
            connections: ConnectionArgs {
                max_connections_per_address: local.connections.max_connections,
                tls,
                ..local.connections.clone()
            },
            ..local
        })
        .await
        .expect("backend builds");
        Shop {
            gateway: format!("http://{}", app.local_addr()),
            dir,
            _running: app.spawn(),
        }
    }

    async fn bench(&self, args: &[&str]) -> Output {
        bench(args)
            .env("SHOP_GATEWAY", &self.gateway)
            .output()
            .await
            .expect("shop-bench runs")
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn bench(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shop-bench"));
    command
        .args(args)
        .env_remove("SHOP_GATEWAY")
        .kill_on_drop(true);
    command
}

fn report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "a JSON report ({error}): stdout {} stderr {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn count(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_at_a_fixed_rate_reserves_every_order_and_pays_a_share() {
    let shop = Shop::start(&["--skus", "50", "--stock", "100000"]).await;
    let orders = shop.dir.path().join("orders.csv");
    let output = shop
        .bench(&[
            "run",
            "--orders",
            path(&orders),
            "--rate",
            "40",
            "--duration",
            "3s",
            "--warmup",
            "0s",
            "--connections",
            "4",
            "--pay",
            "0.5",
            "--seed",
            "7",
            "--json",
            "--quiet",
        ])
        .await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report = report(&output);
    assert_eq!(report["mode"], "fixed rate");
    let placed = count(&report, "placed");
    // 40 orders/s for 3 s; a loaded machine may place a few fewer.
    assert!((90..=121).contains(&placed), "placed {placed}: {report}");
    assert_eq!(count(&report, "reserved"), placed, "{report}");
    assert_eq!(count(&report, "errors"), 0, "{report}");
    let to_reserved = &report["to_reserved"];
    assert_eq!(to_reserved["count"].as_u64(), Some(placed), "{report}");
    let (p50, p99, max) = (
        to_reserved["p50_ms"].as_f64().expect("p50"),
        to_reserved["p99_ms"].as_f64().expect("p99"),
        to_reserved["max_ms"].as_f64().expect("max"),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{report}");
    // About half were paid, and each payment was seen PAID.
    let paid = count(&report, "paid");
    assert!(paid > placed / 4 && paid < placed * 3 / 4, "{report}");
    assert_eq!(report["to_paid"]["count"].as_u64(), Some(paid), "{report}");
    let conservation = &report["conservation"];
    assert_eq!(conservation["ok"], true, "{report}");
    assert_eq!(conservation["skus"], 50, "{report}");
    assert!(conservation["units_held"].as_i64().expect("held") >= placed as i64);

    // --orders: a line per order, in due order, each step after the one
    // before it, and the slowest as slow as the report says.
    let csv = std::fs::read_to_string(&orders).expect("the orders file");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("due_ms,created_ms,reserved_ms,checkout_ready_ms,seen_ms")
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|line| {
            line.split(',')
                .map(|field| field.parse().unwrap_or_else(|_| panic!("{line}")))
                .collect()
        })
        .collect();
    assert_eq!(rows.len() as u64, placed, "{csv}");
    assert!(
        rows.windows(2).all(|pair| pair[0][0] <= pair[1][0]),
        "{csv}"
    );
    for row in &rows {
        // The backend stamps whole milliseconds: allow one.
        assert!(
            row[1] <= row[2] && row[2] <= row[3] && row[3] <= row[4] + 1.0,
            "{row:?}"
        );
        assert!(row[1] >= -1.0 && row[0] < 3_000.0, "{row:?}");
    }
    let slowest = rows.iter().map(|row| row[4]).fold(0.0, f64::max);
    assert!((slowest - max).abs() < 0.1, "{slowest} against {report}");

    // The report for people says the same, and comes out even when the
    // orders file fills the disk; the exit code and a message say the file
    // is not whole.
    let output = shop
        .bench(&[
            "run",
            "--orders",
            "/dev/full",
            "--rate",
            "20",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--quiet",
        ])
        .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot write /dev/full"), "{stderr}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("RESERVED:"), "{text}");
    assert!(text.contains("p99"), "{text}");
    assert!(text.contains("conservation  ok: 50 skus"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_at_full_speed_over_scarce_stock_sees_clean_cancellations_and_conserves_it() {
    // Five skus of 20 units: most orders find nothing left.
    let shop = Shop::start(&["--skus", "5", "--stock", "20"]).await;
    let output = shop
        .bench(&[
            "run",
            "--duration",
            "2s",
            "--warmup",
            "0s",
            "--connections",
            "8",
            "--json",
            "--quiet",
        ])
        .await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report = report(&output);
    assert_eq!(report["mode"], "full speed");
    let placed = count(&report, "placed");
    let reserved = count(&report, "reserved");
    let out_of_stock = report["cancelled"]["OUT_OF_STOCK"].as_u64().unwrap_or(0);
    assert!(out_of_stock > 0, "{report}");
    assert_eq!(reserved + out_of_stock, placed, "{report}");
    assert_eq!(count(&report, "errors"), 0, "{report}");
    let conservation = &report["conservation"];
    assert_eq!(conservation["ok"], true, "{report}");
    // Every unit the orders hold came out of the 100 in stock.
    let held = conservation["units_held"].as_i64().expect("held");
    assert!(held > 0 && held <= 100, "{report}");
}

/// Orders seeded before a run expire during it and give their units back:
/// the check is not fooled, with an operator's token (the shop's ledger)
/// or without (what customers see, the returned units counted apart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_from_before_the_run_expiring_during_it_are_no_violation() {
    let shop = Shop::start_configured(
        &["--skus", "5", "--stock", "1000"],
        TlsArgs::default(),
        Duration::from_secs(2),
    )
    .await;
    let seeded = shop
        .bench(&["seed", "--orders", "60", "--pay", "0", "--json", "--quiet"])
        .await;
    assert_eq!(seeded.status.code(), Some(0), "{seeded:?}");
    let seeded = report(&seeded);
    assert_eq!(count(&seeded, "placed"), 60, "{seeded}");
    let token =
        shop_backend::gateway::token::operator_token(&shop_backend::config::OperatorTokenArgs {
            name: "bench".into(),
            operator_secret: None,
            data_dir: shop.dir.path().join("data"),
        })
        .expect("an operator token");
    let run = async |ledger: bool| {
        let mut args = vec![
            "run",
            "--rate",
            "20",
            "--duration",
            "3s",
            "--warmup",
            "0s",
            "--connections",
            "2",
            "--pay",
            "0.5",
            "--json",
            "--quiet",
        ];
        if ledger {
            args.extend(["--operator-token", token.as_str()]);
        }
        shop.bench(&args).await
    };
    // The seeded orders expire 2 s after they were reserved, within this run.
    let output = run(true).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let checked = report(&output);
    assert_eq!(checked["conservation"]["ok"], true, "{checked}");
    assert_eq!(checked["conservation"]["checked"], "ledger", "{checked}");

    let seeded = shop
        .bench(&["seed", "--orders", "40", "--pay", "0", "--json", "--quiet"])
        .await;
    assert_eq!(seeded.status.code(), Some(0), "{seeded:?}");
    let output = run(false).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let checked = report(&output);
    assert_eq!(checked["conservation"]["ok"], true, "{checked}");
    assert_eq!(checked["conservation"]["checked"], "available", "{checked}");
    assert!(
        checked["conservation"]["units_returned"]
            .as_i64()
            .unwrap_or(0)
            > 0,
        "the expired orders' units are counted as returned: {checked}"
    );
}

#[tokio::test]
async fn an_unreachable_gateway_and_bad_arguments_get_clear_errors() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let address = unused.local_addr().expect("address");
    drop(unused);
    let output = bench(&["run", "--gateway", &format!("http://{address}"), "--quiet"])
        .output()
        .await
        .expect("shop-bench runs");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&address.to_string()), "{stderr}");

    let stderr = refused(&["run", "--rate", "0"]).await;
    assert!(stderr.contains("rate"), "{stderr}");

    let stderr = refused(&["run", "--orders", "/nonexistent/orders.csv", "--quiet"]).await;
    assert!(
        stderr.contains("cannot write /nonexistent/orders.csv"),
        "{stderr}"
    );

    // The shop lists a customer's newest 1,000 orders: a longer history
    // could not be timed to its end.
    let stderr = refused(&["hello", "--orders", "1001"]).await;
    assert!(
        stderr.contains("--orders") && stderr.contains("1..=1000"),
        "{stderr}"
    );

    let output = bench(&["catalog", "--skus", "3", "--stock", "5", "--prefix", "X-"])
        .output()
        .await
        .expect("shop-bench runs");
    assert!(output.status.success());
    let catalog = String::from_utf8_lossy(&output.stdout);
    assert_eq!(catalog.matches("[[products]]").count(), 3, "{catalog}");
    assert!(catalog.contains("\"X-"), "{catalog}");
}

/// Runs shop-bench with `args`, which it must refuse as a usage error
/// (exit status 1); returns what it said on stderr.
async fn refused(args: &[&str]) -> String {
    let output = bench(args).output().await.expect("shop-bench runs");
    assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `command` with its stdout a pipe whose reader has already gone, as
/// in `shop-bench catalog | head -1` once `head` has its line.
async fn into_closed_pipe(mut command: Command) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    command
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("shop-bench runs")
        .wait_with_output()
        .await
        .expect("shop-bench runs")
}

#[tokio::test]
async fn a_closed_pipe_ends_quietly_and_the_orders_file_is_still_written() {
    let output = into_closed_pipe(bench(&["catalog", "--skus", "1000"])).await;
    assert_eq!(output.status.code(), Some(141));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");

    let shop = Shop::start(&["--skus", "2", "--stock", "1000"]).await;
    let orders = shop.dir.path().join("orders.csv");
    let mut run = bench(&[
        "run",
        "--rate",
        "20",
        "--duration",
        "1s",
        "--connections",
        "2",
    ]);
    run.args(["--quiet", "--orders", path(&orders)])
        .env("SHOP_GATEWAY", &shop.gateway);
    let output = into_closed_pipe(run).await;
    assert_eq!(output.status.code(), Some(141));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    let written = std::fs::read_to_string(&orders).expect("the orders file");
    assert!(written.lines().count() > 1, "{written}");
}

#[tokio::test]
async fn a_run_over_tls_orders_and_pays_trusting_the_ca_it_is_given() {
    let certificates = tempfile::tempdir().expect("temporary directory");
    let issued =
        // The names of the gateway URL and of the checkout links (the
        // address bound).
        rcgen::generate_simple_self_signed(["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("a certificate");
    let (certificate, key) = (
        certificates.path().join("cert.pem"),
        certificates.path().join("key.pem"),
    );
    std::fs::write(&certificate, issued.cert.pem()).expect("written");
    std::fs::write(&key, issued.signing_key.serialize_pem()).expect("written");
    let shop = Shop::start_serving(
        &["--skus", "5", "--stock", "1000"],
        TlsArgs {
            tls_cert: Some(certificate.clone()),
            tls_key: Some(key),
        },
    )
    .await;
    let port = shop.gateway.rsplit(':').next().expect("a port");
    let gateway = format!("https://localhost:{port}");
    let run = [
        "run",
        "--gateway",
        &gateway,
        "--rate",
        "20",
        "--duration",
        "2s",
    ];
    let rest = ["--connections", "2", "--pay", "1", "--json", "--quiet"];

    let untrusted = bench(&run)
        .args(rest)
        .output()
        .await
        .expect("shop-bench runs");
    assert_eq!(untrusted.status.code(), Some(2), "{untrusted:?}");

    let output = bench(&run)
        .args(rest)
        .args(["--ca-cert", path(&certificate)])
        .output()
        .await
        .expect("shop-bench runs");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report = report(&output);
    let placed = count(&report, "placed");
    assert!(placed > 0, "{report}");
    assert_eq!(count(&report, "paid"), placed, "paid over HTTPS: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_customers_are_timed_to_their_whole_order_list() {
    let shop = Shop::start(&["--skus", "20", "--stock", "100000"]).await;
    let output = shop
        .bench(&[
            "hello",
            "--customers",
            "3",
            "--orders",
            "12",
            "--samples",
            "30",
            "--json",
            "--quiet",
        ])
        .await;
    assert!(output.status.success(), "{output:?}");
    let report = report(&output);
    assert_eq!(report["connect_to_list"]["count"], 30, "{report}");
    assert_eq!(count(&report, "orders_each"), 12, "{report}");
    assert_eq!(count(&report, "short_lists"), 0, "{report}");
    assert_eq!(count(&report, "errors"), 0, "{report}");
    let p99 = report["connect_to_list"]["p99_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("p99 in {report}"));
    assert!(p99 > 0.0, "{report}");

    // The history went through the shop: 3 customers × 12 orders of one unit.
    let client = shop_client::Client::connect(&shop_client::websocket_url(&shop.gateway), None)
        .await
        .expect("the shop answers");
    let available: i64 = client
        .products()
        .await
        .expect("products")
        .iter()
        .map(|product| product.available)
        .sum();
    assert_eq!(available, 20 * 100_000 - 36);

    // Human output names what it timed.
    let output = shop
        .bench(&[
            "hello",
            "--customers",
            "1",
            "--orders",
            "2",
            "--samples",
            "3",
            "--quiet",
        ])
        .await;
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("connect, hello, full list: p50"), "{text}");
    assert!(text.contains("short lists: 0"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_are_spread_over_every_gateway_given() {
    let shop = Shop::start(&["--skus", "20", "--stock", "100000"]).await;
    let port = shop.gateway.rsplit(':').next().expect("port").to_owned();
    // Two spellings of one shop: both take customers, the report names both.
    let both = format!("{},http://localhost:{port}", shop.gateway);
    let output = bench(&[
        "run",
        "--gateway",
        &both,
        "--connections",
        "4",
        "--count",
        "40",
        "--duration",
        "20s",
        "--warmup",
        "0s",
        "--json",
        "--quiet",
    ])
    .output()
    .await
    .expect("shop-bench runs");
    assert!(output.status.success(), "{output:?}");
    let report = report(&output);
    assert_eq!(count(&report, "reserved"), 40, "{report}");
    let named = report["gateway"].as_str().expect("gateway");
    assert!(named.contains(&format!("localhost:{port}")), "{named}");

    // The second of two gateways gets customers too: one that does not
    // answer fails the run, named.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let address = unused.local_addr().expect("address");
    drop(unused);
    let output = bench(&[
        "run",
        "--gateway",
        &format!("{},http://{address}", shop.gateway),
        "--connections",
        "2",
        "--quiet",
    ])
    .output()
    .await
    .expect("shop-bench runs");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&address.to_string()), "{stderr}");
}
