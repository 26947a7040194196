//! The real `shop-ssh` binary against a real backend, driven by the real
//! OpenSSH client (`ssh`) in a pseudo-terminal: a key logs in and orders,
//! the same key later is the same customer, another key another customer,
//! a password-only client is refused, and a resize redraws.
//!
//! Needs `ssh` and `ssh-keygen` (Debian's openssh-client; scripts/test.sh
//! installs it): without them these tests fail and say so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use shop_backend::config::EmbeddedArgs;
use shop_backend::{Application, Running};

const WAIT: Duration = Duration::from_secs(30);

/// Fails with what to install when the OpenSSH client is missing.
fn require_openssh() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in ["ssh", "ssh-keygen", "ssh-keyscan"] {
        let found = std::env::split_paths(&path).any(|dir| dir.join(tool).is_file());
        assert!(
            found,
            "`{tool}` is not installed: these tests drive the real OpenSSH client; install it \
             (Debian: apt-get install openssh-client; scripts/test.sh does)"
        );
    }
}

/// A backend on a free port, serving in this process until dropped.
async fn start_backend(data: &Path) -> (Running, String) {
    start_backend_at(data, None).await
}

/// [`start_backend`] whose links use `public_url`.
async fn start_backend_at(data: &Path, public_url: Option<&str>) -> (Running, String) {
    let app = Application::build(EmbeddedArgs {
        listen: "127.0.0.1:0".parse().expect("address"),
        public_url: public_url.map(str::to_owned),
        ..EmbeddedArgs::local(data.to_owned())
    })
    .await
    .expect("backend builds");
    let gateway = format!("http://{}", app.local_addr());
    (app.spawn(), gateway)
}

/// `shop-ssh` as a process of its own, on a free port.
struct SshServer {
    child: Child,
    port: u16,
}

impl SshServer {
    fn start(gateway: &str, data: &Path) -> SshServer {
        SshServer::start_with(gateway, data, &[])
    }

    /// [`SshServer::start`] with more flags.
    fn start_with(gateway: &str, data: &Path, flags: &[&str]) -> SshServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shop-ssh"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--gateway",
                gateway,
                "--data-dir",
            ])
            .arg(data)
            .args(flags)
            .env("SHOP_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("shop-ssh starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("shop-ssh says where it listens");
        let address: SocketAddr = first
            .split_whitespace()
            .nth(3)
            .and_then(|word| word.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        SshServer {
            child,
            port: address.port(),
        }
    }

    /// Stops it as a service manager does (SIGTERM); its exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("status") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "shop-ssh did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new Ed25519 key pair in `dir`, as a customer makes one; its private key's path.
fn make_key(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen runs");
    assert!(made.success(), "ssh-keygen made no key");
    path
}

/// The options that keep `ssh` to this test: no user config, no agent, no
/// known_hosts, no questions.
fn ssh_options(port: u16) -> Vec<String> {
    [
        "-F",
        "/dev/null",
        "-p",
        &port.to_string(),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        "ConnectTimeout=10",
    ]
    .iter()
    .map(|option| (*option).to_owned())
    .collect()
}

/// `ssh` with a key, in a pseudo-terminal, and what its screen shows.
struct Session {
    screen: Arc<Mutex<vt100::Parser>>,
    keys: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    pty: Box<dyn portable_pty::MasterPty + Send>,
}

impl Session {
    fn open(port: u16, key: &Path, columns: u16, rows: u16) -> Session {
        Session::open_with(port, key, columns, rows, &[])
    }

    /// [`Session::open`] with more `ssh` options.
    fn open_with(port: u16, key: &Path, columns: u16, rows: u16, options: &[&str]) -> Session {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows,
                cols: columns,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a pseudo-terminal");
        let mut command = CommandBuilder::new("ssh");
        for option in ssh_options(port) {
            command.arg(option);
        }
        // Quiet: the banner and warnings would only scroll by.
        command.args(["-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", "-i"]);
        command.arg(key);
        command.args(options);
        command.arg("-t");
        command.arg("customer@127.0.0.1");
        command.env("TERM", "xterm-256color");
        let child = pty.slave.spawn_command(command).expect("ssh starts");
        drop(pty.slave);
        let mut output = pty.master.try_clone_reader().expect("reader");
        let keys = pty.master.take_writer().expect("writer");
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            cells(rows),
            cells(columns),
            0,
        )));
        let feed = screen.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            loop {
                let read = match output.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => read,
                };
                feed.lock().expect("screen").process(&buffer[..read]);
            }
        });
        Session {
            screen,
            keys,
            child,
            pty: pty.master,
        }
    }

    fn contents(&self) -> String {
        self.screen.lock().expect("screen").screen().contents()
    }

    fn press(&mut self, keys: &str) {
        self.keys.write_all(keys.as_bytes()).expect("keys written");
        self.keys.flush().expect("flushed");
    }

    /// Resizes the terminal, as dragging its window does: `ssh` sends the
    /// server a window-change.
    fn resize(&mut self, columns: u16, rows: u16) {
        self.screen
            .lock()
            .expect("screen")
            .screen_mut()
            .set_size(cells(rows), cells(columns));
        self.pty
            .resize(PtySize {
                rows,
                cols: columns,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("resized");
    }

    async fn wait_until(&self, what: &str, test: impl Fn(&vt100::Screen) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            {
                let parser = self.screen.lock().expect("screen");
                if test(parser.screen()) {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never saw {what}; the screen shows:\n{}",
                self.contents()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_for_line(&self, what: &str, test: impl Fn(&str) -> bool) -> String {
        self.wait_until(what, |screen| screen.contents().lines().any(&test))
            .await;
        self.contents()
            .lines()
            .find(|line| test(line))
            .map(str::to_owned)
            .unwrap_or_default()
    }

    async fn wait_for(&self, text: &str) -> String {
        self.wait_for_line(text, |line| line.contains(text)).await
    }

    /// Waits until `ssh` exits; its exit status.
    async fn exit(&mut self) -> portable_pty::ExitStatus {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("status") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "ssh did not end; the screen shows:\n{}",
                self.contents()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn cells(value: u16) -> std::num::NonZero<u16> {
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

/// The short id of the RESERVED order on `screen`: the word before its status.
fn reserved_order(screen: &str) -> Option<String> {
    let line = screen.lines().find(|line| line.contains("RESERVED"))?;
    let words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == '│')
        .filter(|word| !word.is_empty())
        .collect();
    let status = words.iter().position(|word| *word == "RESERVED")?;
    words.get(status.checked_sub(1)?).map(|id| (*id).to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_key_is_the_customer_who_orders_and_sees_their_orders_again() {
    require_openssh();
    let home = tempfile::tempdir().expect("dir");
    let (backend, gateway) = start_backend(&home.path().join("data")).await;
    let mut server = SshServer::start(&gateway, &home.path().join("ssh-data"));
    let alice = make_key(home.path(), "alice");
    let bob = make_key(home.path(), "bob");

    // Alice connects: the stock pane, live from the gateway.
    let mut session = Session::open(server.port, &alice, 100, 30);
    session.wait_for("● online").await;
    let stock = session.wait_for("SKU-002").await;
    assert!(stock.contains("10"), "{stock}");

    // She orders one of the first product: the order is RESERVED, and p shows the checkout URL.
    session.press("a");
    session
        .wait_for_line("the cart line", |line| {
            line.contains("MacBook Pro") && line.contains(" 1 ")
        })
        .await;
    session.press("o");
    session.wait_for("Place this order?").await;
    session.press("y");
    session.wait_for("RESERVED").await;
    let ordered = reserved_order(&session.contents()).expect("the order's id");
    session.press("p");
    let link = session
        .wait_for_line("the checkout link", |line| url_in(line).is_some())
        .await;
    let url = url_in(&link).expect("url");
    assert!(
        url.starts_with(&format!("{gateway}/checkout/")),
        "the link is the shop's public checkout URL: {url}"
    );
    let page = reqwest::get(&url).await.expect("the checkout answers");
    assert!(
        page.status().is_success(),
        "the checkout page opens: {}",
        page.status()
    );
    // One key at a time: Esc and O in one read would be ESC O, the start
    // of an escape sequence, as on any terminal.
    session.press("\x1b");
    session
        .wait_until("the pay box closed", |screen| {
            !screen.contents().contains("Pay order")
        })
        .await;
    // O cannot open a browser on the customer's side: it shows the link to click instead.
    session.press("O");
    session.wait_for("the browser is on your side").await;
    session.wait_for("click or copy the link").await;
    session.press("\x1b");
    session
        .wait_until("the pay box closed", |screen| {
            !screen.contents().contains("Pay order")
        })
        .await;

    // A resize reaches the server as a window-change: the shop redraws at the new size.
    session.resize(120, 40);
    session
        .wait_until("the shop drawn 120×40", |screen| {
            let last_row = (0..120).any(|column| {
                screen
                    .cell(39, column)
                    .is_some_and(|cell| !cell.contents().trim().is_empty())
            });
            let last_column = (0..40).any(|row| {
                screen
                    .cell(row, 119)
                    .is_some_and(|cell| !cell.contents().trim().is_empty())
            });
            last_row && last_column
        })
        .await;

    // q ends the session: ssh exits cleanly and the terminal is given back.
    session.press("q");
    let status = session.exit().await;
    assert!(status.success(), "{status:?}");
    let alternate = session
        .screen
        .lock()
        .expect("screen")
        .screen()
        .alternate_screen();
    assert!(!alternate, "the alternate screen was left");
    drop(session);

    // The same key later is the same customer, with the order.
    let mut again = Session::open(server.port, &alice, 100, 30);
    again.wait_for("● online").await;
    again.wait_for("RESERVED").await;
    assert_eq!(
        reserved_order(&again.contents()),
        Some(ordered),
        "the same order"
    );
    again.press("\x03");
    assert!(again.exit().await.success(), "Ctrl-C ends the session");

    // Another key is another customer: no orders.
    let mut other = Session::open(server.port, &bob, 100, 30);
    other.wait_for("● online").await;
    other.wait_for("My orders (0)").await;
    assert!(
        !other.contents().contains("RESERVED"),
        "{}",
        other.contents()
    );

    // SIGTERM: the session is told, the terminal restored, ssh ends; the server exits 0.
    let stopped = server.terminate();
    assert!(stopped.success(), "{stopped:?}");
    other.exit().await;
    let screen = other.contents();
    assert!(screen.contains("the SSH server is stopping"), "{screen}");
    backend.stop().await.expect("backend stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_password_only_client_is_refused_and_told_to_use_a_key() {
    require_openssh();
    let home = tempfile::tempdir().expect("dir");
    let (backend, gateway) = start_backend(&home.path().join("data")).await;
    let server = SshServer::start(&gateway, &home.path().join("ssh-data"));
    let output = Command::new("ssh")
        .args(ssh_options(server.port))
        .args([
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "NumberOfPasswordPrompts=1",
            "customer@127.0.0.1",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("ssh runs");
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(255), "{said}");
    assert!(said.contains("Permission denied (publickey)"), "{said}");
    assert!(said.contains("your SSH key is your account"), "{said}");
    assert!(said.contains("ssh-keygen -t ed25519"), "{said}");
    backend.stop().await.expect("backend stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_host_key_is_made_once_kept_private_and_shown_the_same_after_a_restart() {
    require_openssh();
    let home = tempfile::tempdir().expect("dir");
    let data = home.path().join("ssh-data");
    let (backend, gateway) = start_backend(&home.path().join("data")).await;
    let scan = |port: u16| {
        let output = Command::new("ssh-keyscan")
            .args(["-p", &port.to_string(), "-t", "ed25519", "127.0.0.1"])
            .stderr(Stdio::null())
            .output()
            .expect("ssh-keyscan runs");
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .last()
            .map(str::to_owned)
            .expect("a host key")
    };
    let mut first = SshServer::start(&gateway, &data);
    let before = scan(first.port);
    assert!(first.terminate().success());
    let second = SshServer::start(&gateway, &data);
    assert_eq!(
        scan(second.port),
        before,
        "the same host key after a restart"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("ssh").join("host_ed25519_key"))
            .expect("the key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    backend.stop().await.expect("backend stops");
}

/// `ssh` without a pseudo-terminal, its input empty: its exit code, output and errors.
fn ssh_plain(port: u16, key: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new("ssh")
        .args(ssh_options(port))
        .args(["-o", "IdentitiesOnly=yes", "-i"])
        .arg(key)
        .args(extra)
        .arg("customer@127.0.0.1")
        .stdin(Stdio::null())
        .output()
        .expect("ssh runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_sessions_over_the_per_address_cap_are_turned_away_until_a_dropped_one_frees_its_place()
{
    require_openssh();
    let home = tempfile::tempdir().expect("dir");
    let (backend, gateway) = start_backend(&home.path().join("data")).await;
    let server = SshServer::start_with(
        &gateway,
        &home.path().join("ssh-data"),
        &["--max-sessions-per-address", "1"],
    );
    let key = make_key(home.path(), "carol");
    let mut first = Session::open(server.port, &key, 100, 30);
    first.wait_for("● online").await;

    let (code, _, said) = ssh_plain(server.port, &key, &["-T"]);
    assert_eq!(
        code,
        Some(255),
        "a second session from the address is refused: {said}"
    );
    assert!(said.contains("Connection closed"), "{said}");

    // The first connection drops (its ssh killed): its place is free again.
    first.child.kill().expect("ssh killed");
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (code, out, said) = ssh_plain(server.port, &key, &["-T"]);
        if code == Some(2) {
            assert!(out.contains("the shop needs a terminal"), "{out}{said}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dropped session never freed its place: {code:?} {said}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    backend.stop().await.expect("backend stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_idle_session_is_closed_and_told_why_after_outliving_the_login_deadline() {
    require_openssh();
    let home = tempfile::tempdir().expect("dir");
    let (backend, gateway) = start_backend(&home.path().join("data")).await;
    let server = SshServer::start_with(
        &gateway,
        &home.path().join("ssh-data"),
        &["--idle-timeout", "5s", "--login-timeout", "1s"],
    );
    let key = make_key(home.path(), "dave");
    let mut session = Session::open(server.port, &key, 100, 30);
    session.wait_for("● online").await;
    // A key press (a move down) counts as activity; a running shop then
    // outlives the login deadline, however still its screen.
    session.press("j");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        session.child.try_wait().expect("status").is_none(),
        "the session ended before its idle timeout:\n{}",
        session.contents()
    );
    let status = session.exit().await;
    assert!(status.success(), "{status:?}");
    let screen = session.contents();
    assert!(
        screen.contains("closed after 5s without a key press"),
        "{screen}"
    );
    backend.stop().await.expect("backend stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_connection_that_logs_in_but_never_opens_the_shop_is_cut_at_the_login_deadline() {
    require_openssh();
    let home = tempfile::tempdir().expect("dir");
    let (backend, gateway) = start_backend(&home.path().join("data")).await;
    let server = SshServer::start_with(
        &gateway,
        &home.path().join("ssh-data"),
        &["--login-timeout", "1s"],
    );
    let key = make_key(home.path(), "erin");
    // -N: logs in, asks for no session, holds the connection.
    let mut holding = Command::new("ssh")
        .args(ssh_options(server.port))
        .args(["-o", "IdentitiesOnly=yes", "-N", "-i"])
        .arg(&key)
        .arg("customer@127.0.0.1")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh runs");
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = holding.try_wait().expect("status") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = holding.kill();
            panic!("a connection without a shop was never cut");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(255), "cut by the server: {status:?}");
    backend.stop().await.expect("backend stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_key_of_a_type_the_shop_does_not_take_is_refused_and_told_which_it_takes() {
    require_openssh();
    let home = tempfile::tempdir().expect("dir");
    let (backend, gateway) = start_backend(&home.path().join("data")).await;
    let server = SshServer::start(&gateway, &home.path().join("ssh-data"));
    let rsa = home.path().join("rsa");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
        .arg(&rsa)
        .status()
        .expect("ssh-keygen runs");
    assert!(made.success());
    let (code, _, said) = ssh_plain(server.port, &rsa, &["-T"]);
    assert_eq!(code, Some(255), "{said}");
    assert!(said.contains("Permission denied (publickey)"), "{said}");
    assert!(said.contains("Ed25519 and ECDSA keys (not RSA)"), "{said}");
    backend.stop().await.expect("backend stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_pay_box_shows_the_shops_public_checkout_url_and_its_qr_code() {
    require_openssh();
    let home = tempfile::tempdir().expect("dir");
    let public = "http://shop.example:8080";
    let (backend, gateway) = start_backend_at(&home.path().join("data"), Some(public)).await;
    let server = SshServer::start(&gateway, &home.path().join("ssh-data"));
    let key = make_key(home.path(), "frank");
    let mut session = Session::open(server.port, &key, 120, 40);
    session.wait_for("● online").await;
    session.press("a");
    session.press("o");
    session.wait_for("Place this order?").await;
    session.press("y");
    session.wait_for("RESERVED").await;
    session.press("p");
    let link = session
        .wait_for_line("the public checkout link", |line| {
            line.contains(&format!("{public}/checkout/"))
        })
        .await;
    assert!(link.contains("shop.example"), "{link}");
    session.wait_for("scan the code with a phone").await;
    let blocks = session
        .contents()
        .chars()
        .filter(|c| matches!(c, '█' | '▀' | '▄'))
        .count();
    assert!(blocks > 100, "a QR code is drawn:\n{}", session.contents());
    session.press("q");
    assert!(session.exit().await.success());
    backend.stop().await.expect("backend stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_client_that_sends_no_color_gets_the_screen_without_colours() {
    require_openssh();
    let home = tempfile::tempdir().expect("dir");
    let (backend, gateway) = start_backend(&home.path().join("data")).await;
    let server = SshServer::start(&gateway, &home.path().join("ssh-data"));
    let key = make_key(home.path(), "grace");
    let mut coloured = Session::open(server.port, &key, 100, 30);
    coloured.wait_for("● online").await;
    assert!(
        !coloured.contents().contains("▶"),
        "{}",
        coloured.contents()
    );
    coloured.press("q");
    coloured.exit().await;
    let plain = Session::open_with(server.port, &key, 100, 30, &["-o", "SetEnv=NO_COLOR=1"]);
    plain.wait_for("● online").await;
    plain.wait_for("▶ Stock").await;
    backend.stop().await.expect("backend stops");
}

/// The gateway's `shop_gateway_connections` gauge: open client connections.
async fn gateway_connections(gateway: &str) -> u64 {
    let text = reqwest::get(format!("{gateway}/metrics"))
        .await
        .expect("the metrics answer")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix("shop_gateway_connections "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no shop_gateway_connections in {text}")) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_sessions_that_ended_leave_no_gateway_connection_behind() {
    require_openssh();
    let home = tempfile::tempdir().expect("dir");
    let (backend, gateway) = start_backend(&home.path().join("data")).await;
    let server = SshServer::start(&gateway, &home.path().join("ssh-data"));
    let key = make_key(home.path(), "dora");
    // Each way a session ends: q, Ctrl-C, the client killed.
    for ending in ["q", "\x03", "kill"] {
        let mut session = Session::open(server.port, &key, 100, 30);
        session.wait_for("● online").await;
        assert!(
            gateway_connections(&gateway).await >= 1,
            "the session is a gateway connection"
        );
        if ending == "kill" {
            session.child.kill().expect("ssh killed");
        } else {
            session.press(ending);
            session.exit().await;
        }
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let open = gateway_connections(&gateway).await;
        if open == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} gateway connections are still open after every session ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    backend.stop().await.expect("backend stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_pasted_text_is_never_read_as_keys() {
    require_openssh();
    let home = tempfile::tempdir().expect("dir");
    let (backend, gateway) = start_backend(&home.path().join("data")).await;
    let server = SshServer::start(&gateway, &home.path().join("ssh-data"));
    let key = make_key(home.path(), "erin");
    let mut session = Session::open(server.port, &key, 100, 30);
    session.wait_for("● online").await;
    session.wait_for("My orders (0)").await;
    // What a terminal sends for a paste once the shop turned bracketed
    // paste on: "a", "o", "y" in it would be add, order, yes as keys.
    session.press("\x1b[200~Hi, as we discussed today: you pay only once. a o y\x1b[201~");
    session
        .wait_for("pasted text is taken only where text is typed")
        .await;
    let screen = session.contents();
    assert!(screen.contains("My orders (0)"), "{screen}");
    assert!(!screen.contains("Place this order?"), "{screen}");
    session.press("q");
    assert!(session.exit().await.success());
    backend.stop().await.expect("backend stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_a_burst_of_keys_from_a_client_that_reads_its_screen_does_not_end_the_session() {
    require_openssh();
    let home = tempfile::tempdir().expect("dir");
    let (backend, gateway) = start_backend(&home.path().join("data")).await;
    let server = SshServer::start(&gateway, &home.path().join("ssh-data"));
    let key = make_key(home.path(), "fred");
    let mut session = Session::open(server.port, &key, 100, 30);
    session.wait_for("● online").await;
    // 12 KB of moves, each redrawing the screen: far more than the shop
    // reads at once. Keys beyond its queue may be dropped; the session
    // (whose client reads every frame) must go on.
    session.press(&"jk".repeat(6144));
    tokio::time::sleep(Duration::from_secs(2)).await;
    session.wait_for("● online").await;
    session.press("q");
    let status = session.exit().await;
    assert!(
        status.success(),
        "the session ended cleanly on q: {status:?}"
    );
    let alternate = session
        .screen
        .lock()
        .expect("screen")
        .screen()
        .alternate_screen();
    assert!(!alternate, "the terminal was given back");
    backend.stop().await.expect("backend stops");
}
