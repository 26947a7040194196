//! Starts the real `shop-backend` binary on a free port with a fresh data
//! directory, and drives it as customers do: through the WebSocket client
//! of `shop-shared` and plain HTTP.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use shop_shared::client::{Client, Push, websocket_url};
use shop_shared::domain::{Order, OrderStatus, Product};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::broadcast;
use uuid::Uuid;

/// How long a test waits for the shop to reach an expected state.
pub const WAIT: Duration = Duration::from_secs(20);

pub const GOOD_CARD: &str = "4242 4242 4242 4242";
pub const DECLINED_CARD: &str = "4000 0000 0000 0002";

/// How to start the backend.
#[derive(Clone)]
pub struct Options {
    pub pay_ttl: &'static str,
    /// TOML catalogue text; the reference shop when absent.
    pub catalog: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pay_ttl: "5m",
            catalog: None,
        }
    }
}

/// A running backend process and its data directory.
pub struct Shop {
    pub base: String,
    pub ws_url: String,
    port: u16,
    options: Options,
    dir: tempfile::TempDir,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Shop {
    pub async fn start() -> Shop {
        Shop::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Shop {
        let dir = tempfile::tempdir().expect("temporary data directory");
        let mut shop = Shop {
            base: String::new(),
            ws_url: String::new(),
            port: 0,
            options,
            dir,
            child: None,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .expect("HTTP client"),
        };
        shop.spawn().await;
        shop
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("backend.log")
    }

    /// Starts the process (again) on the same data directory and port.
    async fn spawn(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shop-backend"));
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--pay-ttl")
            .arg(self.options.pay_ttl)
            .env("SHOP_LOG", "info,shop_backend=debug,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if let Some(catalog) = &self.options.catalog {
            let path = self.dir.path().join("catalog.toml");
            std::fs::write(&path, catalog).expect("catalogue written");
            command.arg("--catalog").arg(path);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        command.stderr(log);
        let mut child = command.spawn().expect("shop-backend starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "shop-backend printed no address in time; log:\n{}",
                    self.log()
                )
            })
            .expect("stdout readable")
            .unwrap_or_else(|| {
                panic!("shop-backend exited before listening; log:\n{}", self.log())
            });
        let address = first
            .split("http://")
            .nth(1)
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .trim()
            .to_owned();
        // Keep draining stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.port = address
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("port");
        self.base = format!("http://{address}");
        self.ws_url = websocket_url(&self.base);
        self.child = Some(child);
    }

    /// The webhook signing secret the backend generated.
    pub fn webhook_secret(&self) -> String {
        let path = self.dir.path().join("data").join("secrets.json");
        let text = std::fs::read_to_string(&path).expect("secrets file");
        let secrets: serde_json::Value = serde_json::from_str(&text).expect("secrets JSON");
        secrets["webhook_secret"]
            .as_str()
            .expect("webhook secret")
            .to_owned()
    }

    /// The backend's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A new customer.
    pub async fn customer(&self) -> Client {
        Client::connect(&self.ws_url, None)
            .await
            .expect("customer connects")
    }

    /// The customer of `token`, connecting again.
    pub async fn returning(&self, token: &str) -> Client {
        Client::connect(&self.ws_url, Some(token))
            .await
            .expect("customer reconnects")
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Submits the checkout form at `checkout_url` with `card`.
    pub async fn pay(&self, checkout_url: &str, card: &str) -> reqwest::Response {
        self.http
            .post(checkout_url)
            .form(&[
                ("card_number", card),
                ("expiry", "12/34"),
                ("cvc", "123"),
                ("name", "Test Buyer"),
            ])
            .send()
            .await
            .expect("checkout answers")
    }

    /// Stops the backend with SIGTERM and waits for it to exit.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().expect("pid");
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = tokio::time::timeout(WAIT, child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!("shop-backend did not stop on SIGTERM; log:\n{}", self.log())
            })
            .expect("wait");
        assert!(
            exit.success(),
            "shop-backend exited with {exit} on SIGTERM; log:\n{}",
            self.log()
        );
    }

    /// Kills the backend with SIGKILL, as a crash would.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.expect("killed");
    }

    /// Starts the backend again on the same data directory and port.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill first");
        self.spawn().await;
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("---- shop-backend log (last lines) ----");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// The product `sku` as `client` sees it now.
pub async fn product(client: &Client, sku: &str) -> Product {
    client
        .products()
        .await
        .expect("products")
        .into_iter()
        .find(|product| product.sku == sku)
        .unwrap_or_else(|| panic!("no product {sku}"))
}

pub async fn available(client: &Client, sku: &str) -> i64 {
    product(client, sku).await.available
}

/// Waits until `sku` has `expected` units available: stock changes reach
/// clients on their own topic, shortly before or after the order's status.
pub async fn wait_available(client: &Client, sku: &str, expected: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = available(client, sku).await;
        if now == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sku} stayed at {now} units available instead of {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Places an order with a fresh idempotency key.
pub async fn place(client: &Client, lines: &[(&str, i64)]) -> Order {
    client
        .place_order(lines, &Uuid::new_v4().to_string())
        .await
        .expect("order placed")
}

/// Places an order and waits until it is RESERVED with a checkout URL.
pub async fn reserve(client: &Client, lines: &[(&str, i64)]) -> Order {
    let order = place(client, lines).await;
    let order = client
        .wait_for_checkout(order.id, WAIT)
        .await
        .expect("checkout ready");
    assert_eq!(order.status, OrderStatus::Reserved, "{order:?}");
    order
}

pub async fn wait_status(client: &Client, order: &Order, status: OrderStatus) -> Order {
    client
        .wait_for_status(order.id, &[status], WAIT)
        .await
        .unwrap_or_else(|error| panic!("order {} never became {status}: {error}", order.id))
}

/// Everything pushed to a client, gathered as it arrives.
pub struct Pushes {
    receiver: broadcast::Receiver<Push>,
    pub seen: Vec<Push>,
}

impl Pushes {
    pub fn new(client: &Client) -> Pushes {
        Pushes {
            receiver: client.subscribe(),
            seen: Vec::new(),
        }
    }

    /// Takes in whatever has arrived, waiting `quiet` for more.
    pub async fn collect(&mut self, quiet: Duration) {
        while let Ok(Ok(push)) = tokio::time::timeout(quiet, self.receiver.recv()).await {
            self.seen.push(push);
        }
    }

    /// The pushed versions of order `id`.
    pub fn orders(&self, id: Uuid) -> Vec<Order> {
        self.seen
            .iter()
            .filter_map(|push| match push {
                Push::Order(order) if order.id == id => Some(order.clone()),
                _ => None,
            })
            .collect()
    }

    /// The statuses order `id` was pushed in, without repeats.
    pub fn statuses(&self, id: Uuid) -> Vec<OrderStatus> {
        let mut statuses: Vec<OrderStatus> = Vec::new();
        for order in self.orders(id) {
            if statuses.last() != Some(&order.status) {
                statuses.push(order.status);
            }
        }
        statuses
    }

    /// The available quantities pushed for `sku`, in order.
    pub fn availability(&self, sku: &str) -> Vec<i64> {
        self.seen
            .iter()
            .filter_map(|push| match push {
                Push::Product(product) if product.sku == sku => Some(product.available),
                _ => None,
            })
            .collect()
    }
}
