//! The real `shop-tui` binary in a pseudo-terminal, against a real backend
//! started on port 0: keys place an order, the order shows RESERVED with a
//! countdown, a payment over HTTP turns it PAID, another customer's
//! purchase moves the stock pane, and a restart of the backend is ridden
//! out by reconnecting. An operator (`SHOP_OPERATOR_TOKEN`) restocks, adds
//! and renames a product from the keys; a customer sees an operator's price
//! change live.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use shop_backend::config::{ConnectionArgs, EmbeddedArgs, OperatorTokenArgs, TlsArgs};
use shop_backend::{Application, Running};
use shop_client::{Client, websocket_url};
use shop_shared::catalog::CatalogChange;

const WAIT: Duration = Duration::from_secs(30);

/// A backend serving in this process until stopped.
struct Backend {
    address: SocketAddr,
    running: Option<Running>,
}

impl Backend {
    async fn start(data: &Path, listen: SocketAddr) -> Backend {
        Backend::start_selling(data, listen, None).await
    }

    /// [`Backend::start`] seeded with the TOML catalogue `catalog`.
    async fn start_selling(
        data: &Path,
        listen: SocketAddr,
        catalog: Option<std::path::PathBuf>,
    ) -> Backend {
        Backend::start_with(EmbeddedArgs {
            listen,
            catalog,
            ..EmbeddedArgs::local(data.to_owned())
        })
        .await
    }

    async fn start_with(args: EmbeddedArgs) -> Backend {
        let app = Application::build(args).await.expect("backend builds");
        Backend {
            address: app.local_addr(),
            running: Some(app.spawn()),
        }
    }

    async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await.expect("backend stops cleanly");
        }
    }
}

/// A backend of its own on a free port, the directory for its data and the
/// TUI's config, and its gateway URL.
async fn fresh_shop() -> (tempfile::TempDir, Backend, String) {
    let home = tempfile::tempdir().expect("dir");
    let backend = Backend::start(
        &home.path().join("data"),
        "127.0.0.1:0".parse().expect("address"),
    )
    .await;
    let gateway = format!("http://{}", backend.address);
    (home, backend, gateway)
}

/// `shop-tui` in a pseudo-terminal, and what its screen shows.
struct Tui {
    screen: Arc<Mutex<vt100::Parser>>,
    keys: Arc<Mutex<Box<dyn Write + Send>>>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    pty: Box<dyn portable_pty::MasterPty + Send>,
}

impl Tui {
    fn start(gateway: &str, config: &Path, columns: u16, rows: u16) -> Tui {
        Tui::start_with_env(gateway, config, columns, rows, &[])
    }

    /// [`Tui::start`] with more environment variables.
    fn start_with_env(
        gateway: &str,
        config: &Path,
        columns: u16,
        rows: u16,
        env: &[(&str, &str)],
    ) -> Tui {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows,
                cols: columns,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a pseudo-terminal");
        let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_shop-tui"));
        command.env("SHOP_GATEWAY", gateway);
        command.env("XDG_CONFIG_HOME", config);
        command.env("TERM", "xterm-256color");
        command.env_remove("SHOP_PROFILE");
        for (name, value) in env {
            command.env(name, value);
        }
        let child = pty.slave.spawn_command(command).expect("shop-tui starts");
        drop(pty.slave);
        let mut output = pty.master.try_clone_reader().expect("reader");
        let keys = Arc::new(Mutex::new(pty.master.take_writer().expect("writer")));
        let screen = Arc::new(Mutex::new(vt100::Parser::new(size(rows), size(columns), 0)));
        let (feed, answer) = (screen.clone(), keys.clone());
        std::thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            loop {
                let read = match output.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => read,
                };
                let mut parser = feed.lock().expect("screen");
                parser.process(&buffer[..read]);
                // Answer "where is the cursor?" as a terminal does.
                if buffer[..read].windows(4).any(|window| window == b"\x1b[6n") {
                    let (row, column) = parser.screen().cursor_position();
                    let reply = format!("\x1b[{};{}R", row + 1, column + 1);
                    let mut keys = answer.lock().expect("keys");
                    let _ = keys.write_all(reply.as_bytes());
                    let _ = keys.flush();
                }
            }
        });
        Tui {
            screen,
            keys,
            child,
            pty: pty.master,
        }
    }

    /// Resizes the terminal, as dragging its window does.
    fn resize(&mut self, columns: u16, rows: u16) {
        self.screen
            .lock()
            .expect("screen")
            .screen_mut()
            .set_size(size(rows), size(columns));
        self.pty
            .resize(PtySize {
                rows,
                cols: columns,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("resized");
    }

    fn contents(&self) -> String {
        self.screen.lock().expect("screen").screen().contents()
    }

    fn press(&mut self, keys: &str) {
        let mut writer = self.keys.lock().expect("keys");
        writer.write_all(keys.as_bytes()).expect("keys written");
        writer.flush().expect("flushed");
    }

    /// Waits until some line of the screen satisfies `test`; returns it.
    /// Waits until the stock pane shows `available` units of `sku`.
    async fn wait_for_stock(&self, sku: &str, available: u32) {
        let count = available.to_string();
        self.wait_for_line(&format!("{sku} at {available}"), |line| {
            line.contains(sku) && line.split_whitespace().any(|word| word == count)
        })
        .await;
    }

    async fn wait_for_line(&self, what: &str, test: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let contents = self.contents();
            if let Some(line) = contents.lines().find(|line| test(line)) {
                return line.to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never saw {what}; the screen shows:\n{contents}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_for(&self, text: &str) -> String {
        self.wait_for_line(text, |line| line.contains(text)).await
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// A customer of their own connects to `gateway` and buys `quantity` of
/// `sku`, waiting until the order is RESERVED.
async fn another_customer_buys(gateway: &str, sku: &str, quantity: i64, key: &str) -> Client {
    let customer = Client::connect(&websocket_url(gateway), None)
        .await
        .expect("another customer connects");
    let order = customer
        .place_order(&[(sku, quantity)], key)
        .await
        .expect("placed");
    customer
        .wait_for_checkout(order.id, WAIT)
        .await
        .expect("reserved");
    customer
}

fn size(value: u16) -> std::num::NonZero<u16> {
    std::num::NonZero::new(value).expect("a terminal has rows and columns")
}

/// The checkout URL in `line`, if there is one.
fn url_in(line: &str) -> Option<String> {
    let start = line.find("http://")?;
    let url: String = line[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '│')
        .collect();
    url.contains("/checkout/").then_some(url)
}

/// A line of the orders pane showing a countdown such as `4:59`.
fn has_countdown(line: &str) -> bool {
    line.split_whitespace().any(|word| {
        let word = word.trim_end_matches('│');
        let mut parts = word.split(':');
        matches!((parts.next(), parts.next(), parts.next()), (Some(m), Some(s), None)
            if !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()) && s.len() == 2 && s.chars().all(|c| c.is_ascii_digit()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_place_an_order_that_turns_paid_while_stock_moves_live() {
    let (home, mut backend, gateway) = fresh_shop().await;
    let mut tui = Tui::start(&gateway, &home.path().join("config"), 100, 30);

    tui.wait_for("● online").await;
    let before = tui.wait_for("SKU-002").await;
    assert!(before.contains("10"), "{before}");

    // Add one MacBook Pro (the first row), go to the cart, order.
    tui.press("a");
    tui.wait_for_line("the cart line", |line| {
        line.contains("MacBook Pro") && line.contains("4,500.00 EUR") && line.contains(" 1 ")
    })
    .await;
    tui.press("\t");
    tui.press("o");
    // Nothing is ordered before the total is shown and the answer is yes.
    tui.wait_for("Place this order?").await;
    tui.wait_for("Total 4,500.00 EUR").await;
    tui.wait_for("My orders (0)").await;
    tui.press("y");
    let reserved = tui
        .wait_for_line("a reserved order with a countdown", |line| {
            line.contains("RESERVED") && has_countdown(line)
        })
        .await;
    assert!(reserved.contains("4,500.00 EUR"), "{reserved}");

    // Another customer buys three iPhones: the stock pane follows.
    let other = another_customer_buys(&gateway, "SKU-002", 3, "their-order").await;
    tui.wait_for_stock("SKU-002", 7).await;

    // The pay box shows the link; paying it over HTTP turns the order PAID in place.
    tui.press("p");
    let link = tui
        .wait_for_line("the checkout link", |line| url_in(line).is_some())
        .await;
    let url = url_in(&link).expect("url");
    tui.wait_for("Waiting for payment").await;
    let paid = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(&url)
        .form(&[
            ("card_number", "4242 4242 4242 4242"),
            ("expiry", "12/34"),
            ("cvc", "123"),
            ("name", "Ada"),
        ])
        .send()
        .await
        .expect("checkout answers");
    assert_eq!(paid.status(), 303);
    tui.wait_for("Paid — thank you!").await;
    tui.press("\x1b");
    tui.wait_for_line("the order PAID in the orders pane", |line| {
        line.contains("PAID") && line.contains("4,500.00 EUR")
    })
    .await;

    // The backend restarts: the TUI says so, reconnects by itself and resyncs.
    backend.stop().await;
    tui.wait_for("disconnected").await;
    let address = backend.address;
    let mut backend = Backend::start(&home.path().join("data"), address).await;
    tui.wait_for("● online").await;
    tui.wait_for_line("the paid order after the restart", |line| {
        line.contains("PAID") && line.contains("4,500.00 EUR")
    })
    .await;
    other.close();
    let bought = other.place_order(&[("SKU-003", 1)], "after-restart").await;
    assert!(bought.is_err(), "the old connection is gone");
    another_customer_buys(&gateway, "SKU-003", 4, "after-restart").await;
    tui.wait_for_stock("SKU-003", 6).await;

    // q quits and gives the terminal back.
    tui.press("q");
    let deadline = tokio::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = tui.child.try_wait().expect("status") {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "shop-tui did not quit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (alternate, hidden) = {
        let parser = tui.screen.lock().expect("screen");
        (
            parser.screen().alternate_screen(),
            parser.screen().hide_cursor(),
        )
    };
    assert!(!alternate, "left the alternate screen");
    assert!(!hidden, "the cursor is visible again");
    backend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_works_at_80_by_24_and_follows_a_resize_and_the_help_lists_every_key() {
    let (home, mut backend, gateway) = fresh_shop().await;
    let mut tui = Tui::start(&gateway, &home.path().join("config"), 80, 24);
    tui.wait_for("● online").await;
    tui.wait_for("MacBook Air").await;
    tui.press("?");
    tui.wait_for("Keys").await;
    for key in ["Tab, →, l", "next pane", "quit"] {
        tui.wait_for(key).await;
    }
    tui.press("\x1b");
    let narrow = tui.wait_for("Stock (3)").await;
    assert!(narrow.chars().count() <= 80);
    // The help's closing is drawn first: a resize then is one the screen
    // follows, not one a redraw of the old size could overwrite.
    tui.wait_for_line("the help closed", |line| line.contains("a add"))
        .await;
    tui.resize(120, 40);
    tui.wait_for_line("the stock pane redrawn 120 wide", |line| {
        line.contains("Stock (3)") && line.trim_end().chars().count() == 120
    })
    .await;
    tui.press("jjj");
    tui.press("\x03");
    let deadline = tokio::time::Instant::now() + WAIT;
    while tui.child.try_wait().expect("status").is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Ctrl-C did not quit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    backend.stop().await;
}

/// The token files under `config`.
fn token_files(config: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![config.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "token") {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_saved_token_is_kept_and_the_customer_is_told() {
    let (home, mut backend, gateway) = fresh_shop().await;
    let config = home.path().join("config");
    let mut first = Tui::start(&gateway, &config, 100, 30);
    first.wait_for("● online").await;
    first.press("q");
    drop(first);
    let files = token_files(&config);
    assert_eq!(files.len(), 1, "{files:?}");
    // A token the shop does not accept, as after its token secret changed.
    std::fs::write(&files[0], "v1.not-this-shops.token").expect("token written");

    let tui = Tui::start(&gateway, &config, 140, 30);
    tui.wait_for("did not accept this profile's saved sign-in")
        .await;
    tui.wait_for("● online").await;
    assert_eq!(
        std::fs::read_to_string(&files[0]).expect("token file"),
        "v1.not-this-shops.token",
        "the saved token is kept for when the shop accepts it again"
    );
    drop(tui);
    backend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_that_cannot_be_kept_is_said() {
    let (home, mut backend, gateway) = fresh_shop().await;
    // A file where the config folder would be: no token can be saved
    // (even by root, whom permissions would not stop).
    let config = home.path().join("not-a-folder");
    std::fs::write(&config, "").expect("a file");
    let tui = Tui::start(&gateway, &config, 140, 30);
    let said = tui.wait_for("cannot keep this sign-in").await;
    assert!(
        !said.contains("not-a-folder"),
        "no path of the machine it runs on is shown (over SSH, the server's): {said}"
    );
    tui.wait_for("● online").await;
    drop(tui);
    backend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_the_browser_says_when_it_failed() {
    let (home, mut backend, gateway) = fresh_shop().await;
    // No opener on the PATH, and a $BROWSER that fails.
    let path = home.path().join("empty-path");
    std::fs::create_dir_all(&path).expect("directory");
    let mut tui = Tui::start_with_env(
        &gateway,
        &home.path().join("config"),
        100,
        30,
        &[
            ("BROWSER", "/bin/false"),
            ("PATH", path.to_str().expect("path")),
            // Three hours east of UTC, as POSIX spells it.
            ("TZ", "XYZ-3"),
        ],
    );
    tui.wait_for("● online").await;
    tui.press("a");
    tui.wait_for_line("the cart line", |line| line.contains("MacBook Pro"))
        .await;
    tui.press("\t");
    tui.press("o");
    tui.wait_for("Place this order?").await;
    tui.press("y");
    tui.wait_for_line("a reserved order", |line| line.contains("RESERVED"))
        .await;
    tui.press("p");
    tui.wait_for_line("the checkout link", |line| url_in(line).is_some())
        .await;
    tui.press("O");
    tui.wait_for("could not open a browser").await;

    // The order in full: its timeline in the user's time zone, with
    // user-facing event names.
    tui.press("\x1b");
    // Alone, so that Esc and Enter are not read as Alt-Enter.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tui.press("\r");
    let placed = tui.wait_for("order placed").await;
    let local = |seconds_ago: u64| {
        let at = std::time::SystemTime::now() + Duration::from_secs(3 * 3600)
            - Duration::from_secs(seconds_ago);
        humantime::format_rfc3339(at).to_string()[11..16].to_owned()
    };
    assert!(
        placed.contains(&format!("today {}", local(0)))
            || placed.contains(&format!("today {}", local(60))),
        "the local time ({}) in {placed}",
        local(0)
    );
    tui.wait_for("checkout page ready").await;
    assert!(
        !tui.contents().contains("checkout_ready"),
        "{}",
        tui.contents()
    );
    backend.stop().await;
}

/// The cell at (row, column) of the screen: its text, whether reversed and
/// whether bold.
fn cell(tui: &Tui, row: u16, column: u16) -> (String, bool, bool) {
    let parser = tui.screen.lock().expect("screen");
    let cell = parser.screen().cell(row, column).expect("a cell");
    (cell.contents().to_owned(), cell.inverse(), cell.bold())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_colour_the_selection_and_the_focused_pane_still_show_on_a_real_terminal() {
    let (home, mut backend, gateway) = fresh_shop().await;
    let tui = Tui::start_with_env(
        &gateway,
        &home.path().join("config"),
        80,
        24,
        &[("NO_COLOR", "1")],
    );
    tui.wait_for("● online").await;
    tui.wait_for("MacBook Air").await;
    // Row 2 is the first product, selected, in the focused stock pane.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let selected = cell(&tui, 2, 3);
        let unselected = cell(&tui, 3, 3);
        let corner = cell(&tui, 0, 0);
        if selected.1 && !unselected.1 && corner.0 == "┏" && corner.2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "selected {selected:?}, next row {unselected:?}, corner {corner:?}:\n{}",
            tui.contents()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    backend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_shown_not_obeyed_and_a_small_terminal_says_so() {
    let home = tempfile::tempdir().expect("dir");
    let catalog = home.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        r#"currency = "EUR"

[[products]]
sku = "EVIL"
name = "Mug\u001b[2J\u001b[31mred\nX"
price = "12.50"
stock = 40

[[products]]
sku = "WIDE"
name = "世界の時計"
price = "115620.00"
stock = 3
"#,
    )
    .expect("catalogue");
    let mut backend = Backend::start_selling(
        &home.path().join("data"),
        "127.0.0.1:0".parse().expect("address"),
        Some(catalog),
    )
    .await;
    let gateway = format!("http://{}", backend.address);
    let mut tui = Tui::start(&gateway, &home.path().join("config"), 80, 24);
    tui.wait_for("● online").await;
    let evil = tui.wait_for("EVIL").await;
    assert!(evil.contains("Mug␛[2J␛[31mred␊X"), "{evil}");
    let wide = tui.wait_for("WIDE").await;
    assert!(
        wide.contains("世界の時計") && wide.contains("115,620.00 EUR"),
        "{wide}"
    );
    // `/` filters the stock pane by name; Esc clears the filter.
    tui.press("/世界");
    tui.wait_for("(1 of 2)").await;
    tui.press("\x1b");
    tui.wait_for("Stock (2)").await;
    // An unknown key points to the help.
    tui.press("z");
    tui.wait_for("press ? for help").await;
    tui.resize(50, 12);
    tui.wait_for("terminal too small (need 60×16)").await;
    tui.resize(60, 16);
    tui.wait_for("Stock (2)").await;
    backend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_shops_over_tls_trusting_the_ca_it_is_given() {
    let home = tempfile::tempdir().expect("dir");
    let issued =
        rcgen::generate_simple_self_signed(["localhost".to_owned()]).expect("a certificate");
    let (certificate, key) = (home.path().join("cert.pem"), home.path().join("key.pem"));
    std::fs::write(&certificate, issued.cert.pem()).expect("written");
    std::fs::write(&key, issued.signing_key.serialize_pem()).expect("written");
    let local = EmbeddedArgs::local(home.path().join("data"));
    let mut backend = Backend::start_with(EmbeddedArgs {
        connections: ConnectionArgs {
            tls: TlsArgs {
                tls_cert: Some(certificate.clone()),
                tls_key: Some(key),
            },
            ..local.connections.clone()
        },
        ..local
    })
    .await;
    let gateway = format!("https://localhost:{}", backend.address.port());

    let untrusted = Tui::start(&gateway, &home.path().join("config"), 160, 30);
    untrusted.wait_for("pass --ca-cert FILE").await;
    drop(untrusted);

    let tui = Tui::start_with_env(
        &gateway,
        &home.path().join("config"),
        100,
        30,
        &[("SHOP_CA_CERT", certificate.to_str().expect("UTF-8 path"))],
    );
    tui.wait_for("● online").await;
    tui.wait_for("SKU-002").await;
    backend.stop().await;
}

/// The operator token `shop-backend operator-token --name NAME --data-dir
/// DATA` prints for the embedded shop keeping its data in `data`.
fn operator_token(data: &Path, name: &str) -> String {
    shop_backend::gateway::token::operator_token(&OperatorTokenArgs {
        name: name.to_owned(),
        operator_secret: None,
        data_dir: data.to_owned(),
    })
    .expect("an operator token")
}

/// Whether the cell at (row, column) has a background colour: the
/// highlight of something that just changed.
fn highlighted(tui: &Tui, row: u16, column: u16) -> bool {
    let parser = tui.screen.lock().expect("screen");
    parser
        .screen()
        .cell(row, column)
        .is_some_and(|cell| cell.bgcolor() != vt100::Color::Default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restocks_from_the_keys_and_sees_the_new_quantity() {
    let (home, mut backend, gateway) = fresh_shop().await;
    let config = home.path().join("config");
    let token = operator_token(&home.path().join("data"), "alice");
    let mut tui = Tui::start_with_env(
        &gateway,
        &config,
        100,
        30,
        &[("SHOP_OPERATOR_TOKEN", token.as_str())],
    );
    tui.wait_for("● online · operator alice").await;
    tui.wait_for("RCVD").await;
    // The first row, the MacBook Pro: 10 available of 10 received.
    tui.press("r");
    tui.wait_for("How many units of MacBook Pro came in?").await;
    tui.press("5\r");
    tui.wait_for("restocked 5 × MacBook Pro: 15 available")
        .await;
    tui.wait_for_line("15 available and 15 received in the stock pane", |line| {
        line.contains("SKU-001")
            && line
                .split_whitespace()
                .filter(|word| word.trim_matches('│') == "15")
                .count()
                == 2
    })
    .await;
    // A customer sees the new quantity too.
    let customer = Client::connect(&websocket_url(&gateway), None)
        .await
        .expect("a customer connects");
    let products = customer.products().await.expect("products");
    let restocked = products
        .iter()
        .find(|p| p.sku == "SKU-001")
        .expect("SKU-001");
    assert_eq!(restocked.available, 15);
    // More than is available is refused by the shop, and the TUI says why.
    tui.press("w99\r");
    tui.wait_for("not_enough_stock").await;
    // Cart keys are a customer's.
    tui.press("a");
    tui.wait_for("places no orders").await;
    assert!(
        token_files(&config).is_empty(),
        "SHOP_OPERATOR_TOKEN is never saved"
    );
    drop(tui);
    backend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_adds_a_product_with_n_and_renames_it_with_e() {
    let (home, mut backend, gateway) = fresh_shop().await;
    let token = operator_token(&home.path().join("data"), "dora");
    let mut tui = Tui::start_with_env(
        &gateway,
        &home.path().join("config"),
        100,
        30,
        &[("SHOP_OPERATOR_TOKEN", token.as_str())],
    );
    tui.wait_for("● online · operator dora").await;
    tui.wait_for("RCVD").await;
    // One question at a time; each shows once the last was taken.
    tui.press("n");
    for (question, answer) in [
        ("The new product's sku?", "SKU-042\r"),
        ("The name of SKU-042?", "Mug\r"),
        ("The price of one Mug, in EUR?", "12.50\r"),
        ("How many units of Mug are in stock?", "7\r"),
        ("The category of Mug?", "Kitchen\r"),
        ("A description of Mug?", "Holds a pint\r"),
    ] {
        tui.wait_for(question).await;
        tui.press(answer);
    }
    tui.wait_for("Mug added: 7 available").await;
    tui.wait_for_line("the new mug in the stock pane", |line| {
        line.contains("SKU-042") && line.contains("Mug") && line.contains("12.50 EUR")
    })
    .await;
    tui.wait_for("Stock (4)").await;
    // The new product is selected: e renames it.
    tui.press("e");
    tui.wait_for("Change what of Mug?").await;
    tui.press("n");
    tui.wait_for("New name of Mug?").await;
    tui.wait_for("now: Mug").await;
    tui.press("Pint mug\r");
    tui.wait_for("SKU-042 is now called Pint mug").await;
    tui.wait_for_line("the renamed mug in the stock pane", |line| {
        line.contains("SKU-042") && line.contains("Pint mug")
    })
    .await;
    // Customers see it as the operator left it.
    let customer = Client::connect(&websocket_url(&gateway), None)
        .await
        .expect("a customer connects");
    let products = customer.products().await.expect("products");
    let mug = products
        .iter()
        .find(|p| p.sku == "SKU-042")
        .expect("SKU-042");
    assert_eq!(
        (
            mug.name.as_str(),
            mug.unit_price,
            mug.available,
            mug.category.as_str(),
            mug.description.as_str()
        ),
        ("Pint mug", 1_250, 7, "Kitchen", "Holds a pint")
    );
    drop(tui);
    backend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_sees_an_operators_price_change_highlighted_and_reads_the_description() {
    let (home, mut backend, gateway) = fresh_shop().await;
    let mut tui = Tui::start(&gateway, &home.path().join("config"), 80, 24);
    tui.wait_for("● online").await;
    tui.wait_for("iPhone 16").await;
    // The iPhone's details, over the cart at this size.
    tui.press("ji");
    tui.wait_for("SKU-002 · details").await;
    tui.wait_for("6.1-inch display, 128 GB.").await;
    tui.wait_for("Ultramarine.").await;

    let operator = Client::connect(
        &websocket_url(&gateway),
        Some(&operator_token(&home.path().join("data"), "bob")),
    )
    .await
    .expect("the operator connects");
    operator
        .admin(
            "cheaper-iphone",
            CatalogChange::UpdateProduct {
                sku: "SKU-002".into(),
                name: None,
                description: None,
                category: None,
                image_url: None,
                unit_price: Some(99_900),
            },
        )
        .await
        .expect("the price changes");
    // Live, highlighted for a moment, in the stock pane's price column.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let contents = tui.contents();
        let lit = contents.lines().enumerate().any(|(row, line)| {
            line.contains("SKU-002")
                && line.find("999.00 EUR").is_some_and(|at| {
                    let column = line[..at].chars().count() as u16;
                    highlighted(&tui, row as u16, column)
                })
        });
        if lit {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never saw the new price highlighted:\n{contents}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tui.wait_for("999.00 EUR · 10 available").await;
    backend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_signed_in_with_an_operators_token_starts_in_operator_mode() {
    let (home, mut backend, gateway) = fresh_shop().await;
    let config = home.path().join("config");
    // What `shop admin login --profile ops` keeps: the operator's token
    // in the token store shop-tui reads.
    let token = operator_token(&home.path().join("data"), "carol");
    shop_client::tokens::Tokens::in_dir(config.join("shop"))
        .save("ops", &websocket_url(&gateway), &token)
        .expect("token saved");
    let tui = Tui::start_with_env(&gateway, &config, 100, 30, &[("SHOP_PROFILE", "ops")]);
    tui.wait_for("● online · operator carol").await;
    tui.wait_for("r restock").await;
    drop(tui);
    backend.stop().await;
}
