//! Command-line flags and environment variables of `shop-ssh`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

const EXAMPLES: &str = "\
Examples:
  shop-ssh                                      serve the shop at http://127.0.0.1:8080 on port 2222
  ssh -p 2222 localhost                         ...and shop (any SSH key; the key is your account)
  shop-ssh --listen 0.0.0.0:2222 --gateway https://shop.example --data-dir /var/lib/shop
  shop-ssh --idle-timeout 5m --max-sessions-per-address 2

The shop's checkout links are its public URL: start shop-backend with --public-url so that
customers elsewhere can open them (and scan the QR code).";

/// The terminal shop served over SSH: `ssh -p 2222 host` shows the same
/// panes and keys as shop-tui, and the SSH key is the customer.
///
/// Every session is a client of the shop's gateway, over its WebSocket, as
/// shop-tui is. The first session with an SSH key becomes a new customer,
/// whose token is kept under the key's fingerprint in the data directory;
/// later sessions with the key are that customer again. Only public keys
/// log in (Ed25519, ECDSA); passwords and keyboard-interactive are refused.
#[derive(Debug, Clone, Parser)]
#[command(name = "shop-ssh", version, about, long_about, after_help = EXAMPLES)]
pub struct Config {
    /// Address to serve SSH on. Port 0 picks a free port; the chosen address is printed.
    #[arg(long, env = "SHOP_SSH_LISTEN", default_value = "127.0.0.1:2222")]
    pub listen: SocketAddr,

    /// The shop's gateway: http://host:port, ws://host:port/ws or host:port
    /// (https:// or wss:// over TLS).
    #[arg(
        long,
        env = "SHOP_GATEWAY",
        default_value = "http://127.0.0.1:8080",
        value_parser = shop_client::check_gateway
    )]
    pub gateway: String,

    /// Also trust this CA certificate (PEM) for a gateway served over TLS with a private CA.
    #[arg(long, env = "SHOP_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// Directory of the host key (ssh/host_ed25519_key, made on the first start) and of the
    /// customer token of each SSH key (ssh/profiles/): the same directory as shop-backend's.
    #[arg(long, env = "SHOP_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Most SSH sessions at once; more are turned away before the SSH handshake. Each session is
    /// a connection to the gateway from this machine: keep it within the gateway's
    /// --max-connections-per-address (100 by default).
    #[arg(long, env = "SHOP_SSH_MAX_SESSIONS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_sessions: u32,

    /// Most SSH sessions at once from one IP address.
    #[arg(long, env = "SHOP_SSH_MAX_SESSIONS_PER_ADDRESS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_sessions_per_address: u32,

    /// A session without a key press for this long is closed, such as 15m or 90s.
    #[arg(long, env = "SHOP_SSH_IDLE_TIMEOUT", default_value = "15m", value_parser = parse_timeout)]
    pub idle_timeout: Duration,

    /// How long a connection has to log in and open the shop (the SSH handshake, the key, the
    /// terminal); then it is closed. Silent connections are closed after it too.
    #[arg(long, env = "SHOP_SSH_LOGIN_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    pub login_timeout: Duration,
}

impl Config {
    /// The flags' defaults, but on a free loopback port, with the data in
    /// `data_dir` and the shop at `gateway`: for tests and tools.
    pub fn local(gateway: &str, data_dir: PathBuf) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            gateway: gateway.to_owned(),
            ca_cert: None,
            data_dir,
            max_sessions: 100,
            max_sessions_per_address: 4,
            idle_timeout: Duration::from_secs(15 * 60),
            login_timeout: Duration::from_secs(30),
        }
    }
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration such as 90s or 15m: {error}"))?;
    if duration < Duration::from_secs(1) || duration > Duration::from_secs(7 * 24 * 3600) {
        return Err(format!("`{text}`: use from 1s to 7 days"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_serve_port_2222_and_bad_values_say_what_is_expected() {
        let config = Config::try_parse_from(["shop-ssh"]).expect("defaults");
        assert_eq!(config.listen.port(), 2222);
        assert_eq!(config.idle_timeout, Duration::from_secs(900));
        let error = Config::try_parse_from(["shop-ssh", "--idle-timeout", "soon"])
            .expect_err("refused")
            .to_string();
        assert!(error.contains("90s or 15m"), "{error}");
        let error = Config::try_parse_from(["shop-ssh", "--max-sessions", "0"])
            .expect_err("refused")
            .to_string();
        assert!(error.contains("--max-sessions"), "{error}");
        let error = Config::try_parse_from(["shop-ssh", "--gateway", "ftp://shop.example"])
            .expect_err("refused")
            .to_string();
        assert!(error.contains("`ftp://`"), "{error}");
    }
}
