//! Command-line flags and environment variables of `shop-backend`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser};

use crate::secrets::Secret;

const EXAMPLES: &str = "\
Examples:
  shop-backend                                  run the whole shop on 127.0.0.1:8080, data in ./data
  shop-backend --listen 127.0.0.1:0             pick a free port (the address is printed)
  shop-backend --pay-ttl 30s --data-dir /tmp/shop
  shop-backend --catalog catalog.toml           seed your own products on first start";

/// The shop backend: gateway, order, stock and payment services.
#[derive(Debug, Parser)]
#[command(name = "shop-backend", version, about, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub embedded: EmbeddedArgs,
}

/// Settings of embedded mode: all four services in one process.
#[derive(Debug, Clone, Args)]
pub struct EmbeddedArgs {
    /// Address to listen on. Port 0 picks a free port; the chosen address is printed.
    #[arg(long, env = "SHOP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory of the SQLite databases, the bus log and the secrets.
    #[arg(long, env = "SHOP_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// How long a RESERVED order waits for payment, such as 5m, 90s or 3s.
    #[arg(long, env = "SHOP_PAY_TTL", default_value = "5m", value_parser = parse_ttl)]
    pub pay_ttl: Duration,

    /// TOML catalogue to seed (see README); without it, an empty shop gets
    /// three products.
    #[arg(long, env = "SHOP_CATALOG")]
    pub catalog: Option<PathBuf>,

    /// Base URL browsers use to reach this backend, for checkout and return
    /// links [default: http://<listen address>].
    #[arg(long, env = "SHOP_PUBLIC_URL", value_parser = parse_url)]
    pub public_url: Option<String>,

    /// Partitions of each bus topic; more lets consumers work in parallel.
    #[arg(long, env = "SHOP_PARTITIONS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub partitions: u32,

    /// Secret that signs customer tokens [default: generated and kept in the data directory].
    #[arg(long, env = "SHOP_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<Secret>,

    /// Secret that signs checkout webhooks [default: generated and kept in the data directory].
    #[arg(long, env = "SHOP_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<Secret>,
}

/// Reads a pay TTL: at least a second, at most a day.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration such as 5m, 90s or 3s: {error}"))?;
    if ttl < Duration::from_secs(1) {
        return Err(format!("`{text}` is too short: the pay TTL is at least 1s"));
    }
    if ttl > Duration::from_secs(24 * 3600) {
        return Err(format!("`{text}` is too long: the pay TTL is at most 24h"));
    }
    Ok(ttl)
}

/// Reads a base URL: http(s), no trailing slash.
pub fn parse_url(text: &str) -> Result<String, String> {
    let trimmed = text.trim().trim_end_matches('/');
    if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) || trimmed.len() < 10 {
        return Err(format!(
            "`{text}` is not a base URL such as http://localhost:8080"
        ));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pay_ttl_takes_human_durations_within_bounds() {
        assert_eq!(parse_ttl("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_ttl("3s"), Ok(Duration::from_secs(3)));
        assert!(parse_ttl("500ms").is_err());
        assert!(parse_ttl("2days").is_err());
        assert!(parse_ttl("soon").is_err());
    }

    #[test]
    fn defaults_need_no_flags() {
        let cli = Cli::try_parse_from(["shop-backend"]).expect("no flags needed");
        assert_eq!(cli.embedded.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(cli.embedded.pay_ttl, Duration::from_secs(300));
        assert_eq!(cli.embedded.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn public_url_must_be_http() {
        assert_eq!(
            parse_url("http://shop.example/"),
            Ok("http://shop.example".into())
        );
        assert!(parse_url("shop.example").is_err());
    }
}
