//! The real `shop` binary against a real backend started on port 0: every
//! command in human and `--json` form, exit codes, id prefixes, profiles,
//! and waiting for payments.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use shop_backend::config::{ConnectionArgs, EmbeddedArgs, LimitArgs, TlsArgs};
use shop_backend::{Application, Running};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// A backend serving in this process, and a config directory for `shop`.
struct Shop {
    gateway: String,
    home: tempfile::TempDir,
    _running: Running,
}

impl Shop {
    async fn start() -> Shop {
        Shop::start_with("5m").await
    }

    async fn start_with(pay_ttl: &str) -> Shop {
        let home = tempfile::tempdir().expect("temporary directory");
        Shop::start_configured(
            EmbeddedArgs {
                pay_ttl: humantime::parse_duration(pay_ttl).expect("duration"),
                ..EmbeddedArgs::local(home.path().join("data"))
            },
            home,
        )
        .await
    }

    async fn start_configured(args: EmbeddedArgs, home: tempfile::TempDir) -> Shop {
        let app = Application::build(args).await.expect("backend builds");
        Shop {
            gateway: format!("http://{}", app.local_addr()),
            home,
            _running: app.spawn(),
        }
    }

    /// `shop` with this shop's gateway and config directory.
    fn command(&self, args: &[&str]) -> Command {
        command(&self.gateway, self.home.path(), args)
    }

    async fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command(args).output().await.expect("shop runs"))
    }
}

fn command(gateway: &str, home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shop"));
    command
        .args(args)
        .env("SHOP_GATEWAY", gateway)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("HOME", home)
        .env_remove("SHOP_PROFILE")
        .env_remove("NO_COLOR")
        .kill_on_drop(true);
    command
}

/// What one run of `shop` did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "shop failed: {}{}", self.stdout, self.stderr);
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("{error}: {:?}", self.stdout))
    }

    fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or_default()
    }
}

/// Pays `url` through the local checkout over plain HTTP.
async fn pay_over_http(url: &str) {
    pay_with_card(url, "4242 4242 4242 4242").await;
}

/// Pays `url` through the local checkout with `card`.
async fn pay_with_card(url: &str, card: &str) {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client")
        .post(url)
        .form(&[
            ("card_number", card),
            ("expiry", "12/34"),
            ("cvc", "123"),
            ("name", "Ada"),
        ])
        .send()
        .await
        .expect("checkout answers");
    assert_eq!(response.status(), 303);
}

#[tokio::test]
async fn products_lists_the_catalogue_as_a_table_and_as_json() {
    let shop = Shop::start().await;
    let human = shop.run(&["products"]).await.ok();
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "SKU      NAME         CATEGORY         PRICE  AVAILABLE"
    );
    assert_eq!(
        lines[1],
        "SKU-001  MacBook Pro  Laptops   4,500.00 EUR         10"
    );
    assert_eq!(lines.len(), 4);
    let phones = shop.run(&["products", "--category", "phones"]).await.ok();
    assert_eq!(phones.stdout.lines().count(), 2, "{}", phones.stdout);
    assert!(phones.stdout.contains("iPhone 16"));
    let searched = shop.run(&["products", "--search", "AIR"]).await.ok();
    assert_eq!(searched.stdout.lines().count(), 2, "{}", searched.stdout);
    assert!(searched.stdout.contains("SKU-003"));
    let detail = shop.run(&["product", "SKU-001"]).await.ok();
    assert!(
        detail.stdout.contains("category   Laptops"),
        "{}",
        detail.stdout
    );
    assert!(detail.stdout.contains("Space black."), "{}", detail.stdout);
    let missing = shop.run(&["product", "NOPE"]).await;
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(
        !human.stdout.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );

    let json = shop.run(&["products", "--json"]).await.ok().json();
    let first = &json[0];
    assert_eq!(first["sku"], "SKU-001");
    assert_eq!(first["name"], "MacBook Pro");
    assert_eq!(first["unit_price"], 450_000);
    assert_eq!(first["currency"], "EUR");
    assert_eq!(first["available"], 10);
    assert_eq!(json.as_array().map(Vec::len), Some(3));
}

/// What `shop-backend operator-token` prints for the shop in `home`.
async fn operator_token(home: &Path, name: &str) -> String {
    shop_backend::gateway::token::operator_token(&shop_backend::config::OperatorTokenArgs {
        name: name.to_owned(),
        operator_secret: None,
        data_dir: home.join("data"),
    })
    .expect("an operator token")
}

#[tokio::test]
async fn an_operator_signs_in_changes_the_catalogue_and_reads_the_audit_log() {
    let shop = Shop::start().await;
    // A customer is refused, and told how to become an operator.
    let refused = shop.run(&["admin", "restock", "SKU-001", "5"]).await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("shop admin login"),
        "{}",
        refused.stderr
    );

    let token = operator_token(shop.home.path(), "alice").await;
    // The customer's profile is not the operator's: login keeps it.
    shop.run(&["orders"]).await.ok();
    let customer_token = std::fs::read_dir(shop.home.path().join("config/shop/profiles/default"))
        .expect("the customer's profile")
        .filter_map(Result::ok)
        .find(|entry| entry.path().extension().is_some_and(|ext| ext == "token"))
        .map(|entry| std::fs::read_to_string(entry.path()).expect("token"))
        .expect("a token file");
    let mut over = shop.command(&["--profile", "default", "admin", "login"]);
    over.stdin(std::process::Stdio::piped());
    over.stdout(std::process::Stdio::piped());
    over.stderr(std::process::Stdio::piped());
    let mut child = over.spawn().expect("shop runs");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(token.as_bytes())
            .await
            .expect("token written");
    }
    let over = Run::of(child.wait_with_output().await.expect("login ends"));
    assert_eq!(over.code, 1, "{}", over.stderr);
    assert!(over.stderr.contains("is a customer's"), "{}", over.stderr);
    let kept = std::fs::read_dir(shop.home.path().join("config/shop/profiles/default"))
        .expect("the customer's profile")
        .filter_map(Result::ok)
        .find(|entry| entry.path().extension().is_some_and(|ext| ext == "token"))
        .map(|entry| std::fs::read_to_string(entry.path()).expect("token"));
    assert_eq!(
        kept,
        Some(customer_token),
        "the customer's token is untouched"
    );

    let mut login = shop.command(&["admin", "login"]);
    login.stdin(std::process::Stdio::piped());
    login.stdout(std::process::Stdio::piped());
    login.stderr(std::process::Stdio::piped());
    let mut child = login.spawn().expect("shop runs");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(token.as_bytes())
            .await
            .expect("token written");
    }
    let login = Run::of(child.wait_with_output().await.expect("login ends")).ok();
    assert!(
        login.stdout.contains("signed in as operator alice"),
        "{}",
        login.stdout
    );
    assert!(!login.stdout.contains(&token), "the token is never printed");

    let restocked = shop
        .run(&[
            "admin",
            "restock",
            "SKU-001",
            "5",
            "--idempotency-key",
            "r1",
        ])
        .await
        .ok();
    assert_eq!(
        restocked.stdout.trim(),
        "restocked SKU-001: available 10 → 15, received 10 → 15"
    );
    // The same key again applies nothing more.
    shop.run(&[
        "admin",
        "restock",
        "SKU-001",
        "5",
        "--idempotency-key",
        "r1",
    ])
    .await
    .ok();
    let reused = shop
        .run(&[
            "admin",
            "restock",
            "SKU-001",
            "6",
            "--idempotency-key",
            "r1",
        ])
        .await;
    assert_eq!(reused.code, 5, "{}", reused.stderr);
    let too_many = shop.run(&["admin", "write-off", "SKU-001", "16"]).await;
    assert_eq!(too_many.code, 5, "{}", too_many.stderr);
    assert!(
        too_many.stderr.contains("only 15 units"),
        "{}",
        too_many.stderr
    );
    let repriced = shop
        .run(&["admin", "set", "SKU-002", "--price", "999.00", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(repriced["product"]["unit_price"], 99_900);
    assert_eq!(repriced["entry"]["operator"], "alice");
    let bad_price = shop
        .run(&["admin", "set", "SKU-002", "--price", "9.999"])
        .await;
    assert_eq!(bad_price.code, 1, "{}", bad_price.stderr);
    let nothing = shop.run(&["admin", "set", "SKU-002"]).await;
    assert_eq!(nothing.code, 1, "{}", nothing.stderr);
    assert!(nothing.stderr.contains("--price"), "{}", nothing.stderr);
    shop.run(&[
        "admin",
        "add",
        "MUG",
        "--name",
        "Mug",
        "--price",
        "12.50",
        "--stock",
        "4",
        "--category",
        "Kitchen",
    ])
    .await
    .ok();
    shop.run(&["admin", "withdraw", "SKU-003"]).await.ok();
    let ordered = shop.run(&["order", "SKU-003"]).await;
    assert_eq!(ordered.code, 5, "a withdrawn product: {}", ordered.stderr);

    let stock = shop.run(&["admin", "stock"]).await.ok();
    let mug = stock
        .stdout
        .lines()
        .find(|line| line.starts_with("MUG"))
        .expect("MUG listed");
    assert!(mug.contains("12.50 EUR"), "{mug}");
    let audit = shop.run(&["admin", "audit", "--json"]).await.ok().json();
    let actions: Vec<&str> = audit
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|entry| entry["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["withdraw", "add_product", "update_product", "restock"]
    );
    let human = shop.run(&["admin", "audit", "SKU-002"]).await.ok();
    assert!(
        human
            .stdout
            .contains("unit_price 1,100.00 EUR → 999.00 EUR"),
        "{}",
        human.stdout
    );
}

#[tokio::test]
async fn order_waits_for_the_reservation_and_prints_the_checkout_url_last() {
    let shop = Shop::start().await;
    let run = shop.run(&["order", "SKU-001:2", "SKU-002"]).await.ok();
    let url = run.last_line();
    assert!(
        url.starts_with(&format!("{}/checkout/cs_", shop.gateway)),
        "{url}"
    );
    assert!(run.stdout.contains("10,100.00 EUR"), "{}", run.stdout);
    assert!(
        run.stdout.contains("pay within 5:00") || run.stdout.contains("pay within 4:59"),
        "{}",
        run.stdout
    );

    let json = shop.run(&["order", "SKU-003", "--json"]).await.ok().json();
    assert_eq!(json["status"], "RESERVED");
    assert_eq!(json["cancel_reason"], Value::Null);
    assert_eq!(json["total"], 150_000);
    assert_eq!(json["currency"], "EUR");
    assert!(
        json["checkout_url"]
            .as_str()
            .is_some_and(|url| url.contains("/checkout/"))
    );
    let deadline = json["pay_until"].as_str().expect("pay_until");
    assert!(
        shop_shared::time::Timestamp::parse(deadline).is_ok(),
        "RFC 3339: {deadline}"
    );
    assert_eq!(json["lines"][0]["sku"], "SKU-003");
    assert_eq!(json["lines"][0]["quantity"], 1);
}

#[tokio::test]
async fn an_order_that_cannot_be_reserved_says_why_and_exits_3() {
    let shop = Shop::start().await;
    let run = shop.run(&["order", "SKU-001", "SKU-002:11"]).await;
    assert_eq!(run.code, 3);
    assert!(
        run.stdout.is_empty(),
        "no URL for a cancelled order: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains("was cancelled") && run.stderr.contains("SKU-002"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
    let json = shop.run(&["order", "SKU-003:99", "--json"]).await;
    assert_eq!(json.code, 3);
    assert_eq!(json.json()["cancel_reason"], "OUT_OF_STOCK");
}

#[tokio::test]
async fn an_order_over_a_limit_says_which_limit_and_how_to_get_under_it_and_exits_5() {
    let home = tempfile::tempdir().expect("temporary directory");
    let args = EmbeddedArgs {
        limits: LimitArgs {
            hold_limit: 5,
            order_rate: 2,
        },
        ..EmbeddedArgs::local(home.path().join("data"))
    };
    let shop = Shop::start_configured(args, home).await;
    let first = shop
        .run(&["order", "SKU-001:3", "--json"])
        .await
        .ok()
        .json();

    let held = shop.run(&["order", "SKU-002:3"]).await;
    assert_eq!(held.code, 5, "{}", held.stderr);
    assert!(held.stdout.is_empty(), "{}", held.stdout);
    for words in [
        "at most 5 units",
        "you hold 3",
        "shop pay ORDER",
        "shop cancel ORDER",
    ] {
        assert!(held.stderr.contains(words), "{words}: {}", held.stderr);
    }
    assert_eq!(held.stderr.lines().count(), 1, "one line: {}", held.stderr);

    let id = first["id"].as_str().expect("id");
    shop.run(&["cancel", &id[..8]]).await.ok();
    shop.run(&["order", "SKU-002:3"]).await.ok();
    let rated = shop.run(&["order", "SKU-003"]).await;
    assert_eq!(rated.code, 5, "{}", rated.stderr);
    for words in ["at most 2 orders a minute", "wait", "nothing was ordered"] {
        assert!(rated.stderr.contains(words), "{words}: {}", rated.stderr);
    }
    let orders = shop.run(&["orders", "--json"]).await.ok().json();
    assert_eq!(
        orders.as_array().map(Vec::len),
        Some(2),
        "refusals store no order"
    );
}

#[tokio::test]
async fn bad_input_is_a_usage_error_with_exit_1() {
    let shop = Shop::start().await;
    for args in [
        &["order", "SKU-001:0"][..],
        &["order", "SKU-001:lots"],
        &["order", "NOPE"],
        &["order"],
        &["frobnicate"],
        &["status", "xyz"],
        &["--profile", "a/b", "orders"],
        &["--gateway", "ftp://shop.example", "orders"],
        &["--gateway", "http://", "orders"],
    ] {
        let run = shop.run(args).await;
        assert_eq!(run.code, 1, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(!run.stderr.trim().is_empty(), "{args:?} explains itself");
    }
    let unknown = shop.run(&["order", "NOPE"]).await;
    assert!(
        unknown.stderr.contains("unknown sku") && unknown.stderr.contains("shop products"),
        "{}",
        unknown.stderr
    );
    let ftp = shop
        .run(&["--gateway", "ftp://shop.example", "orders"])
        .await;
    assert!(
        ftp.stderr
            .contains("`ftp://` is not a way to reach a gateway"),
        "{}",
        ftp.stderr
    );
    assert!(
        shop.run(&["orders", "--json"])
            .await
            .ok()
            .json()
            .as_array()
            .is_some_and(Vec::is_empty)
    );
}

#[tokio::test]
async fn orders_and_status_accept_unique_id_prefixes() {
    let shop = Shop::start().await;
    let placed = shop.run(&["order", "SKU-001", "--json"]).await.ok().json();
    let id = placed["id"].as_str().expect("id").to_owned();
    let table = shop.run(&["orders"]).await.ok();
    let row = table.stdout.lines().nth(1).expect("one order");
    assert!(
        row.starts_with(&id[..8]) && row.contains("RESERVED") && row.contains("4,500.00 EUR"),
        "{row}"
    );
    assert!(
        row.contains(":") && row.contains("/checkout/"),
        "countdown and URL: {row}"
    );

    let status = shop.run(&["status", &id[..4]]).await.ok();
    assert!(status.stdout.contains(&id), "{}", status.stdout);
    assert!(
        status.stdout.contains("MacBook Pro") && status.stdout.contains("reserved"),
        "{}",
        status.stdout
    );
    let json = shop.run(&["status", &id[..6], "--json"]).await.ok().json();
    assert_eq!(json["id"], id.as_str());
    let with_dashes = shop.run(&["status", &id[..13]]).await.ok();
    assert!(with_dashes.stdout.contains(&id));

    // Place orders until two ids share a first digit: that prefix is
    // ambiguous. That takes at most 16 more orders, more than the ten units
    // of one sku, so they alternate between two.
    let mut ids = vec![id];
    let mut skus = ["SKU-002", "SKU-003"].into_iter().cycle();
    let shared = loop {
        let sku = skus.next().expect("endless");
        let next = shop.run(&["order", sku, "--json"]).await.ok().json();
        let next = next["id"].as_str().expect("id").to_owned();
        if let Some(twin) = ids.iter().find(|known| known[..1] == next[..1]) {
            break twin[..1].to_owned();
        }
        ids.push(next);
    };
    let ambiguous = shop.run(&["status", &shared]).await;
    assert_eq!(ambiguous.code, 1);
    assert!(
        ambiguous.stderr.contains("matches 2"),
        "{}",
        ambiguous.stderr
    );
    let missing = shop.run(&["status", "ffffffff"]).await;
    if !ids.iter().any(|id| id.starts_with("ffffffff")) {
        assert_eq!(missing.code, 1);
        assert!(missing.stderr.contains("no order"), "{}", missing.stderr);
    }
}

#[tokio::test]
async fn pay_wait_ends_when_the_order_is_paid_over_http() {
    let shop = Shop::start().await;
    let order = shop.run(&["order", "SKU-001", "--json"]).await.ok().json();
    let id = order["id"].as_str().expect("id");
    let url = order["checkout_url"].as_str().expect("url").to_owned();
    let printed = shop.run(&["pay", &id[..5]]).await.ok();
    assert_eq!(printed.last_line(), url, "pay prints the checkout URL");

    let waiting = shop.command(&["pay", &id[..5], "--wait"]).output();
    let payer = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        pay_over_http(&url).await;
    };
    let (output, ()) = tokio::join!(waiting, payer);
    let run = Run::of(output.expect("shop runs")).ok();
    assert!(run.stdout.starts_with(&url), "{}", run.stdout);
    // `pay --wait` finds alice's order paid, or waits and sees it paid.
    assert!(
        run.stdout.contains("is paid") || run.stdout.contains("is already paid"),
        "{}",
        run.stdout
    );
    let again = shop.run(&["pay", &id[..5], "--json"]).await.ok().json();
    assert_eq!(again["status"], "PAID");
}

#[tokio::test]
async fn pay_wait_ends_with_exit_3_when_the_deadline_passes() {
    let shop = Shop::start_with("2s").await;
    let order = shop.run(&["order", "SKU-002", "--json"]).await.ok().json();
    let id = order["id"].as_str().expect("id");
    let run = shop.run(&["pay", &id[..6], "--wait"]).await;
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("not paid before its deadline"),
        "{}",
        run.stderr
    );
    let json = shop.run(&["status", &id[..6], "--json"]).await.ok().json();
    assert_eq!(
        (json["status"].as_str(), json["cancel_reason"].as_str()),
        (Some("CANCELLED"), Some("NOT_PAID"))
    );
    let late = shop.run(&["pay", &id[..6]]).await;
    assert_eq!(late.code, 3, "a cancelled order cannot be paid");
}

#[tokio::test]
async fn pay_wait_times_out_with_exit_4() {
    let shop = Shop::start().await;
    let order = shop.run(&["order", "SKU-003", "--json"]).await.ok().json();
    let id = order["id"].as_str().expect("id");
    let run = shop
        .run(&["pay", &id[..6], "--wait", "--timeout", "1s"])
        .await;
    assert_eq!(run.code, 4, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("not paid within 1s"), "{}", run.stderr);
}

#[tokio::test]
async fn pay_wait_rides_out_a_restart_of_the_shop_and_sees_the_payment() {
    let home = tempfile::tempdir().expect("temporary directory");
    let args = EmbeddedArgs::local(home.path().join("data"));
    let app = Application::build(args.clone())
        .await
        .expect("backend builds");
    let address = app.local_addr();
    let gateway = format!("http://{address}");
    let running = app.spawn();
    let order = command(&gateway, home.path(), &["order", "SKU-001", "--json"])
        .output()
        .await
        .map(Run::of)
        .expect("shop runs")
        .ok()
        .json();
    let id = order["id"].as_str().expect("id").to_owned();
    let url = order["checkout_url"].as_str().expect("url").to_owned();

    let waiting = command(&gateway, home.path(), &["pay", &id[..8], "--wait"]).output();
    let restart_and_pay = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        running.stop().await.expect("the shop stops");
        // Down for a moment: the wait outlives it.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let restarted = Application::build(EmbeddedArgs {
            listen: address,
            ..args.clone()
        })
        .await
        .expect("the shop starts again on its port")
        .spawn();
        pay_over_http(&url).await;
        restarted
    };
    let (output, _restarted) = tokio::join!(waiting, restart_and_pay);
    let run = Run::of(output.expect("shop runs"));
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("is paid"), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("lost the connection to the shop; reconnecting"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn cancel_releases_the_order_once_and_then_refuses() {
    let shop = Shop::start().await;
    let order = shop
        .run(&["order", "SKU-001:3", "--json"])
        .await
        .ok()
        .json();
    let id = order["id"].as_str().expect("id");
    let run = shop.run(&["cancel", &id[..7]]).await.ok();
    assert!(run.stdout.contains("cancelled"), "{}", run.stdout);
    // The stock service releases the units after the order is cancelled,
    // through the bus: they come back shortly after.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let products = shop.run(&["products", "--json"]).await.ok().json();
        if products[0]["available"] == 10 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the 3 units never came back: {products}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = shop.run(&["cancel", &id[..7], "--json"]).await;
    assert_eq!(again.code, 5);
    assert!(
        again.stderr.contains("can no longer be cancelled"),
        "{}",
        again.stderr
    );
    let json = shop.run(&["status", &id[..7], "--json"]).await.ok().json();
    assert_eq!(json["cancel_reason"], "BY_CUSTOMER");
}

#[tokio::test]
async fn profiles_keep_customers_apart_and_tokens_persist() {
    let shop = Shop::start().await;
    shop.run(&["--profile", "alice", "order", "SKU-001"])
        .await
        .ok();
    shop.run(&["order", "SKU-002", "--profile", "alice"])
        .await
        .ok();
    let alice = shop
        .run(&["orders", "--json", "--profile", "alice"])
        .await
        .ok()
        .json();
    assert_eq!(
        alice.as_array().map(Vec::len),
        Some(2),
        "the same customer across commands"
    );
    let bob = shop
        .run(&["orders", "--json", "--profile", "bob"])
        .await
        .ok()
        .json();
    assert_eq!(bob.as_array().map(Vec::len), Some(0));
    let by_env = Run::of(
        shop.command(&["orders", "--json"])
            .env("SHOP_PROFILE", "alice")
            .output()
            .await
            .expect("runs"),
    )
    .ok()
    .json();
    assert_eq!(by_env, alice);
    let alice_id = alice[0]["id"].as_str().expect("id");
    let stolen = shop
        .run(&["--profile", "bob", "cancel", &alice_id[..8]])
        .await;
    assert_eq!(stolen.code, 1, "bob cannot even see alice's order");
    let tokens = shop.home.path().join("config/shop/profiles");
    assert!(tokens.join("alice").is_dir() && tokens.join("bob").is_dir());
}

#[tokio::test]
async fn every_spelling_of_the_shop_address_is_the_same_customer() {
    let shop = Shop::start().await;
    let port = shop.gateway.rsplit(':').next().expect("a port").to_owned();
    let placed = shop
        .run(&[
            "order",
            "SKU-003",
            "--json",
            "--gateway",
            &format!("localhost:{port}"),
        ])
        .await
        .ok()
        .json();
    for spelling in [
        format!("127.0.0.1:{port}"),
        format!("http://LOCALHOST:{port}/"),
        format!("ws://127.0.0.1:{port}/ws"),
    ] {
        let orders = shop
            .run(&["orders", "--json", "--gateway", &spelling])
            .await
            .ok()
            .json();
        assert_eq!(orders[0]["id"], placed["id"], "--gateway {spelling}");
    }
}

#[tokio::test]
async fn pay_open_without_a_working_browser_says_so_and_gives_the_url() {
    let shop = Shop::start().await;
    let order = shop.run(&["order", "SKU-003", "--json"]).await.ok().json();
    let id = order["id"].as_str().expect("id");
    let url = order["checkout_url"].as_str().expect("a checkout URL");
    // No opener on the PATH, as on a server without a desktop.
    let path = shop.home.path().join("empty-path");
    std::fs::create_dir_all(&path).expect("directory");
    for browser in ["/bin/false", "/nonexistent/browser"] {
        let run = Run::of(
            shop.command(&["pay", id, "--open", "--json"])
                .env("BROWSER", browser)
                .env("PATH", &path)
                .output()
                .await
                .expect("shop runs"),
        )
        .ok();
        assert!(
            run.stderr.contains("could not open a browser")
                && run
                    .stderr
                    .contains(&format!("open this URL yourself: {url}")),
            "BROWSER={browser}: {}",
            run.stderr
        );
    }
}

#[tokio::test]
async fn commands_started_together_on_a_new_profile_are_one_customer() {
    let shop = Shop::start().await;
    // All six start before any has saved a token.
    let running: Vec<_> = (0..6)
        .map(|_| {
            shop.command(&["--profile", "fresh", "order", "SKU-002"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("shop starts")
        })
        .collect();
    for child in running {
        Run::of(child.wait_with_output().await.expect("shop runs")).ok();
    }
    let orders = shop
        .run(&["orders", "--json", "--profile", "fresh"])
        .await
        .ok()
        .json();
    assert_eq!(
        orders.as_array().map(Vec::len),
        Some(6),
        "every order placed at once is the profile's: {orders}"
    );
}

#[tokio::test]
async fn an_unreachable_gateway_is_one_clear_line_and_exit_2() {
    let home = tempfile::tempdir().expect("dir");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let closed = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    for args in [&["products"][..], &["order", "SKU-001"], &["watch"]] {
        let run = Run::of(
            command(&closed, home.path(), args)
                .output()
                .await
                .expect("runs"),
        );
        assert_eq!(run.code, 2, "{args:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        assert!(
            run.stderr.contains("cannot reach the shop") && run.stderr.contains("cargo run"),
            "{}",
            run.stderr
        );
    }
}

#[tokio::test]
async fn watch_streams_stock_and_order_changes_one_per_line() {
    let shop = Shop::start().await;
    let mut human = shop
        .command(&["watch", "--profile", "carol"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("watch runs");
    let mut json = shop
        .command(&["watch", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("watch runs");
    let mut human_lines = BufReader::new(human.stdout.take().expect("stdout")).lines();
    let mut json_lines = BufReader::new(json.stdout.take().expect("stdout")).lines();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let order = shop
        .run(&["order", "SKU-003:2", "--json"])
        .await
        .ok()
        .json();
    let short = &order["id"].as_str().expect("id")[..8];

    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(15), async {
        while let Ok(Some(line)) = json_lines.next_line().await {
            let event: Value = serde_json::from_str(&line).expect("one JSON object per line");
            seen.push(event.clone());
            if event["type"] == "order_updated" && event["order"]["checkout_url"].is_string() {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "watch --json showed {seen:?}");
    assert!(seen.iter().any(|event| event["type"] == "product_updated"
        && event["product"]["sku"] == "SKU-003"
        && event["product"]["available"] == 8));
    // The other customer's watch sees stock move but not this order.
    let mut lines = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(Some(line)) = human_lines.next_line().await {
            lines.push(line);
        }
    })
    .await;
    assert!(
        lines.iter().any(|line| line.contains("stock")
            && line.contains("SKU-003")
            && line.contains("8 available at 1,500.00 EUR")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|line| line.contains(short)),
        "another customer's order is not shown: {lines:?}"
    );
    let _ = human.kill().await;
    let _ = json.kill().await;
}

/// `shop` writing into a pipe whose reader has already gone, as in
/// `shop watch | head -1` once `head` has its line.
fn into_closed_pipe(mut command: Command) -> tokio::process::Child {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    command
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("shop runs")
}

#[tokio::test]
async fn every_printing_command_into_a_closed_pipe_ends_quietly_with_141() {
    let shop = Shop::start().await;
    let mut watch = into_closed_pipe(shop.command(&["watch"]));
    let mut watch_json = into_closed_pipe(shop.command(&["watch", "--json"]));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let order = shop.run(&["order", "SKU-003", "--json"]).await.ok().json();
    let id = order["id"].as_str().expect("id").to_owned();

    for args in [
        vec!["products"],
        vec!["products", "--json"],
        vec!["order", "SKU-003"],
        vec!["orders"],
        vec!["orders", "--json"],
        vec!["status", &id],
        vec!["pay", &id],
        vec!["completions", "bash"],
        vec!["cancel", &id],
    ] {
        let run = Run::of(
            into_closed_pipe(shop.command(&args))
                .wait_with_output()
                .await
                .expect("shop runs"),
        );
        assert_eq!(
            (run.code, run.stderr.as_str()),
            (141, ""),
            "`shop {}` into a closed pipe",
            args.join(" ")
        );
    }
    for (name, watch) in [("watch", &mut watch), ("watch --json", &mut watch_json)] {
        let status = tokio::time::timeout(Duration::from_secs(15), watch.wait())
            .await
            .unwrap_or_else(|_| panic!("`shop {name}` kept running with nobody reading"))
            .expect("watch ends");
        let mut stderr = String::new();
        tokio::io::AsyncReadExt::read_to_string(
            watch.stderr.as_mut().expect("stderr"),
            &mut stderr,
        )
        .await
        .expect("stderr");
        assert_eq!(status.code(), Some(141), "`shop {name}`: {stderr}");
        assert!(!stderr.contains("panicked"), "`shop {name}`: {stderr}");
    }
}

#[tokio::test]
async fn a_payment_settling_after_the_deadline_shows_as_refunded_live() {
    // Its settlement is known only after the deadline and the grace period
    // (the checkout's webhooks held back): a payment that truly came late.
    let home = tempfile::tempdir().expect("temporary directory");
    let shop = Shop::start_configured(
        EmbeddedArgs {
            pay_ttl: Duration::from_secs(2),
            settle_grace: Duration::from_secs(1),
            local_checkout_webhook_delay: Duration::from_secs(5),
            ..EmbeddedArgs::local(home.path().join("data"))
        },
        home,
    )
    .await;
    let mut watch = shop
        .command(&["watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("watch runs");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let order = shop.run(&["order", "SKU-002", "--json"]).await.ok().json();
    let id = order["id"].as_str().expect("id").to_owned();
    // A delayed payment method: it settles 3 s after checkout, after the
    // 2 s deadline.
    pay_with_card(
        order["checkout_url"].as_str().expect("url"),
        "4000 0000 0000 1000",
    )
    .await;

    let mut seen = Vec::new();
    let refunded = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line.clone());
            if line.contains(&id[..8]) && line.contains("refunded") {
                return line;
            }
        }
        String::new()
    })
    .await;
    let line = refunded.unwrap_or_else(|_| panic!("watch never showed the refund: {seen:?}"));
    assert!(line.contains("CANCELLED (unpaid, refunded)"), "{line}");
    let _ = watch.kill().await;

    let status = shop.run(&["status", &id]).await.ok();
    assert!(
        status
            .stdout
            .contains("Status      CANCELLED (unpaid, refunded)"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("refunded  1,100.00 EUR refunded"),
        "the timeline shows the refund: {}",
        status.stdout
    );
}

#[tokio::test]
async fn every_command_has_help_with_an_example_and_completions_print() {
    let shop = Shop::start().await;
    for command in [
        "products",
        "order",
        "orders",
        "status",
        "pay",
        "cancel",
        "watch",
        "completions",
    ] {
        let run = shop.run(&[command, "--help"]).await.ok();
        assert!(
            run.stdout.contains("Example"),
            "{command} --help has an example"
        );
    }
    let top = shop.run(&["--help"]).await.ok();
    assert!(top.stdout.contains("Exit codes"), "{}", top.stdout);
    let bash = shop.run(&["completions", "bash"]).await.ok();
    assert!(
        bash.stdout.contains("_shop()") && bash.stdout.contains("products"),
        "bash completions"
    );
    let zsh = shop.run(&["completions", "zsh"]).await.ok();
    assert!(zsh.stdout.contains("#compdef shop"));
}

#[tokio::test]
async fn the_demo_script_runs_unattended() {
    let shop = std::path::Path::new(env!("CARGO_BIN_EXE_shop"));
    let bin = shop.parent().expect("target directory");
    assert!(
        bin.join("shop-backend").exists(),
        "the demo needs shop-backend next to shop in {}; build it with `cargo build -p shop-backend` \
         (scripts/test.sh builds the whole workspace)",
        bin.display()
    );
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo.sh");
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new("bash")
            .arg(script)
            .env("SHOP_BIN_DIR", bin)
            .env_remove("SHOP_GATEWAY")
            .env_remove("SHOP_PROFILE")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the demo finishes")
    .expect("bash runs");
    let run = Run::of(output);
    assert_eq!(run.code, 0, "demo failed:\n{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("was refused"),
        "one customer loses the race:\n{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("the checkout answered 303"),
        "{}",
        run.stdout
    );
    // `pay --wait` finds alice's order paid, or waits and sees it paid.
    assert!(
        run.stdout.contains("is paid") || run.stdout.contains("is already paid"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("CANCELLED (unpaid)"), "{}", run.stdout);
    assert!(run.stdout.contains("Demo complete."));
}

/// A private certificate authority and a certificate it issued for
/// `localhost` and `127.0.0.1`, written as PEM files in `dir`: the CA's
/// certificate, the server's certificate and the server's key.
fn private_ca(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let mut authority = rcgen::CertificateParams::default();
    authority.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    authority
        .distinguished_name
        .push(rcgen::DnType::CommonName, "shop test CA");
    let authority =
        rcgen::CertifiedIssuer::self_signed(authority, rcgen::KeyPair::generate().expect("a key"))
            .expect("a CA");
    let key = rcgen::KeyPair::generate().expect("a key");
    let certificate =
        rcgen::CertificateParams::new(["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("names")
            .signed_by(&key, &authority)
            .expect("a certificate");
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, authority.as_ref().pem()).expect("written");
    std::fs::write(&paths.1, certificate.pem()).expect("written");
    std::fs::write(&paths.2, key.serialize_pem()).expect("written");
    paths
}

#[tokio::test]
async fn every_command_works_over_tls_with_a_private_ca_and_says_what_to_do_without_it() {
    let home = tempfile::tempdir().expect("temporary directory");
    let (ca, certificate, key) = private_ca(home.path());
    let local = EmbeddedArgs::local(home.path().join("data"));
    let shop = Shop::start_configured(
        EmbeddedArgs {
            connections: ConnectionArgs {
                tls: TlsArgs {
                    tls_cert: Some(certificate),
                    tls_key: Some(key),
                },
                ..local.connections.clone()
            },
            ..local
        },
        home,
    )
    .await;
    let port = shop.gateway.rsplit(':').next().expect("a port").to_owned();
    let ca = ca.to_str().expect("UTF-8 path").to_owned();

    for gateway in [
        format!("https://localhost:{port}"),
        format!("wss://127.0.0.1:{port}/ws"),
    ] {
        let untrusted = shop.run(&["products", "--gateway", &gateway]).await;
        assert_eq!(untrusted.code, 2, "{}", untrusted.stderr);
        assert!(
            untrusted.stderr.contains("no secure connection")
                && untrusted.stderr.contains("--ca-cert FILE"),
            "{}",
            untrusted.stderr
        );
        let products = shop
            .run(&["products", "--gateway", &gateway, "--ca-cert", &ca])
            .await
            .ok();
        assert!(
            products.stdout.contains("MacBook Pro"),
            "{}",
            products.stdout
        );
    }

    // Plain HTTP to the TLS port, and TLS to a plain port, say which.
    let plain_to_tls = shop
        .run(&["products", "--gateway", &format!("http://127.0.0.1:{port}")])
        .await;
    assert_eq!(plain_to_tls.code, 2, "{}", plain_to_tls.stderr);
    assert!(
        plain_to_tls.stderr.contains("use https:// or wss://"),
        "{}",
        plain_to_tls.stderr
    );
    let plain = Shop::start().await;
    let plain_port = plain.gateway.rsplit(':').next().expect("a port");
    let tls_to_plain = shop
        .run(&[
            "products",
            "--gateway",
            &format!("https://127.0.0.1:{plain_port}"),
        ])
        .await;
    assert_eq!(tls_to_plain.code, 2, "{}", tls_to_plain.stderr);
    assert!(
        tls_to_plain
            .stderr
            .contains("does not speak TLS on that port; use http:// or ws://")
            && !tls_to_plain.stderr.contains("--ca-cert"),
        "{}",
        tls_to_plain.stderr
    );

    let gateway = format!("https://localhost:{port}");
    let order = shop
        .run(&[
            "order",
            "SKU-003",
            "--json",
            "--gateway",
            &gateway,
            "--ca-cert",
            &ca,
        ])
        .await
        .ok()
        .json();
    let id = order["id"].as_str().expect("id").to_owned();
    let url = order["checkout_url"]
        .as_str()
        .expect("a checkout URL")
        .to_owned();
    assert!(
        url.starts_with(&format!("https://127.0.0.1:{port}/checkout/")),
        "{url}"
    );
    let mut waiting = shop.command(&["pay", &id, "--wait", "--gateway", &gateway]);
    waiting.env("SHOP_CA_CERT", &ca);
    let waiting = waiting.output();
    let pay = async {
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .tls_certs_only(
                reqwest::Certificate::from_pem_bundle(&std::fs::read(&ca).expect("the CA"))
                    .expect("PEM"),
            )
            .build()
            .expect("HTTPS client");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let paid = browser
            .post(&url)
            .form(&[
                ("card_number", "4242 4242 4242 4242"),
                ("expiry", "12/34"),
                ("cvc", "123"),
                ("name", "Ada"),
            ])
            .send()
            .await
            .expect("the checkout answers over HTTPS");
        assert_eq!(paid.status(), 303);
    };
    let (waited, ()) = tokio::join!(waiting, pay);
    let waited = Run::of(waited.expect("shop runs")).ok();
    assert!(waited.stdout.contains("is paid"), "{}", waited.stdout);
}

/// A shop selling a product whose name carries escape sequences, a
/// newline and a bidi override, and one with a wide (CJK) name.
async fn hostile_shop() -> Shop {
    let home = tempfile::tempdir().expect("temporary directory");
    let catalog = home.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        r#"currency = "EUR"

[[products]]
sku = "EVIL"
name = "Mug\u001b[2J\u001b]0;pwned\u0007\nsecond line\u202eX"
price = "12.50"
stock = 40

[[products]]
sku = "WIDE"
name = "世界の時計"
price = "115620.00"
stock = 3
"#,
    )
    .expect("catalogue written");
    Shop::start_configured(
        EmbeddedArgs {
            catalog: Some(catalog),
            ..EmbeddedArgs::local(home.path().join("data"))
        },
        home,
    )
    .await
}

/// `shop` run with `NO_COLOR` set.
async fn run_no_color(shop: &Shop, args: &[&str]) -> Run {
    let output = shop
        .command(args)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("shop runs");
    Run::of(output).ok()
}

#[tokio::test]
async fn text_from_the_shop_is_shown_never_obeyed_and_tables_align_on_display_width() {
    let shop = hostile_shop().await;
    let products = run_no_color(&shop, &["products"]).await;
    assert!(
        !products.stdout.contains('\x1b') && !products.stdout.contains('\u{202e}'),
        "{:?}",
        products.stdout
    );
    let lines: Vec<&str> = products.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "one line per product: {lines:?}");
    assert!(
        lines[1].contains("Mug␛[2J␛]0;pwned␇␊second line\\u{202e}X"),
        "{}",
        lines[1]
    );
    // Every row ends its PRICE column at the header's column, counted
    // as the terminal draws it: 世 takes two columns.
    let price_end = |line: &str| {
        let at = line.find(" EUR").expect("a price") + " EUR".len();
        unicode_width::UnicodeWidthStr::width(&line[..at])
    };
    let header_end = unicode_width::UnicodeWidthStr::width(
        &lines[0][..lines[0].find("PRICE").expect("PRICE") + 5],
    );
    assert_eq!(price_end(lines[1]), header_end, "{lines:#?}");
    assert_eq!(price_end(lines[2]), header_end, "{lines:#?}");
    assert!(lines[2].contains("115,620.00 EUR"), "{}", lines[2]);

    let mut watch = shop
        .command(&["watch", "--profile", "carol"])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("watch runs");
    let mut watched = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let order = run_no_color(&shop, &["order", "EVIL:2", "WIDE"]).await;
    assert!(!order.stdout.contains('\x1b'), "{:?}", order.stdout);
    assert!(order.stdout.contains("2 × Mug␛[2J"), "{}", order.stdout);
    let orders = run_no_color(&shop, &["orders"]).await;
    assert!(!orders.stdout.contains('\x1b'), "{:?}", orders.stdout);
    assert!(
        orders.stdout.contains("115,645.00 EUR"),
        "{}",
        orders.stdout
    );
    let id = orders
        .stdout
        .lines()
        .nth(1)
        .expect("an order")
        .split(' ')
        .next()
        .expect("id")
        .to_owned();
    let status = run_no_color(&shop, &["status", &id]).await;
    assert!(!status.stdout.contains('\x1b'), "{:?}", status.stdout);
    assert!(
        status.stdout.contains("Mug␛[2J␛]0;pwned␇␊second line"),
        "{}",
        status.stdout
    );
    let line = tokio::time::timeout(Duration::from_secs(15), async {
        while let Ok(Some(line)) = watched.next_line().await {
            if line.contains("EVIL") {
                return line;
            }
        }
        String::new()
    })
    .await
    .expect("watch shows the stock change");
    assert!(!line.contains('\x1b'), "{line:?}");
    assert!(line.contains("Mug␛[2J␛]0;pwned␇␊second line"), "{line}");
    let _ = watch.kill().await;
}

#[tokio::test]
async fn times_are_local_and_in_words_and_events_have_user_facing_names() {
    let shop = Shop::start().await;
    // Three hours east of UTC, as POSIX spells it.
    let order = shop.run(&["order", "SKU-001", "--json"]).await.ok().json();
    let id = order["id"].as_str().expect("id");
    let deadline =
        shop_shared::time::Timestamp::parse(order["pay_until"].as_str().expect("pay_until"))
            .expect("a time");
    let local = deadline.plus(Duration::from_secs(3 * 3600)).to_string();
    let local_clock = &local[11..16];
    let status = Run::of(
        shop.command(&["status", &id[..8]])
            .env("TZ", "XYZ-3")
            .output()
            .await
            .expect("shop runs"),
    )
    .ok();
    assert!(
        status.stdout.contains(&format!(" {local_clock})")),
        "the deadline at {local_clock} local time: {}",
        status.stdout
    );
    assert!(
        !status.stdout.contains(":00.000Z") && !status.stdout.contains("Z\n"),
        "no raw UTC: {}",
        status.stdout
    );
    assert!(
        status.stdout.contains("checkout page ready"),
        "{}",
        status.stdout
    );
    assert!(
        !status.stdout.contains("checkout_ready"),
        "{}",
        status.stdout
    );

    let waiting = shop
        .command(&["pay", &id[..8], "--wait", "--timeout", "1s"])
        .env("TZ", "XYZ-3")
        .output()
        .await
        .expect("shop runs");
    let waiting = Run::of(waiting);
    assert!(
        waiting
            .stderr
            .contains(&format!("(pay by today {local_clock}, in 5 min)"))
            || waiting
                .stderr
                .contains(&format!("(pay by tomorrow {local_clock}, in 5 min)")),
        "a pipe gets the deadline once, as a local time: {}",
        waiting.stderr
    );

    let cancelled = shop.run(&["cancel", &id[..8]]).await.ok();
    assert!(
        cancelled.stdout.contains("is cancelled"),
        "{}",
        cancelled.stdout
    );
    let orders = shop.run(&["orders"]).await.ok();
    assert!(
        orders.stdout.contains("CANCELLED (by you)"),
        "{}",
        orders.stdout
    );
}

/// What `shop pay --wait` shows on a terminal now: its last line with text.
fn waiting_line(screen: &std::sync::Mutex<vt100::Parser>) -> String {
    let contents = screen.lock().expect("screen").screen().contents();
    contents
        .lines()
        .rev()
        .find(|line| line.contains("Waiting for the payment"))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_wait_on_a_terminal_counts_down() {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    use std::io::Read;
    use std::sync::{Arc, Mutex};

    let shop = Shop::start().await;
    let order = shop.run(&["order", "SKU-001", "--json"]).await.ok().json();
    let id = order["id"].as_str().expect("id")[..8].to_owned();
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 10,
            cols: 120,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("a pseudo-terminal");
    let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_shop"));
    command.args(["pay", &id, "--wait"]);
    command.env("SHOP_GATEWAY", &shop.gateway);
    command.env("XDG_CONFIG_HOME", shop.home.path().join("config"));
    command.env("HOME", shop.home.path());
    command.env_remove("SHOP_PROFILE");
    let mut child = pty.slave.spawn_command(command).expect("shop starts");
    drop(pty.slave);
    let mut output = pty.master.try_clone_reader().expect("reader");
    let size = |value: u16| std::num::NonZero::new(value).expect("not zero");
    let screen = Arc::new(Mutex::new(vt100::Parser::new(size(10), size(120), 0)));
    let feed = screen.clone();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(read @ 1..) = output.read(&mut buffer) {
            feed.lock().expect("screen").process(&buffer[..read]);
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let first = loop {
        let line = waiting_line(&screen);
        if line.contains(" left") {
            break line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no countdown: {line:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let later = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let line = waiting_line(&screen);
        if line != first {
            break line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the countdown never moved from {first:?}"
        );
    };
    // The deadline in words: "today", or "tomorrow" for an order placed
    // in the minutes before midnight.
    let pay_until: shop_shared::time::Timestamp =
        serde_json::from_value(order["pay_until"].clone()).expect("a deadline");
    let when = shop_client::words::Clock::local().when(
        pay_until,
        shop_shared::time::Timestamp::now(),
        false,
    );
    let day = when.split(' ').next().expect("a day");
    assert!(
        later.contains(" left") && later.contains(&format!("pay by {day} ")),
        "{later} (the deadline: {when})"
    );
    let _ = child.kill();
}
