//! Command-line arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Measures the shop as customers feel it: many customers place orders
/// over WebSocket connections, and every order is timed from sending it to
/// seeing it RESERVED with its checkout URL (and, for the share that pays,
/// from paying to seeing it PAID).
#[derive(Debug, Parser)]
#[command(name = "shop-bench", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "\
Examples:
  shop-bench catalog --skus 1000 --stock 1000000 > bench-catalog.toml
  shop-backend --catalog bench-catalog.toml --pay-ttl 10m --hold-limit 0 --order-rate 0 &
  shop-bench run --rate 200 --duration 30s          # latency at a fixed rate
  shop-bench run --duration 30s --json              # throughput, as JSON

Run it against a shop nobody else uses: the conservation check at the end
counts every unit of the skus it ordered. With --operator-token (from
`shop-backend operator-token`) it checks the shop's own ledger: available +
reserved + sold + written off = received, and the units sold during the
run are the run's paid ones; without, that no unit a customer could see
vanished.

  shop-bench seed --orders 100000 --pay 0.3        # history for a shop, through the services
  shop-bench hello --customers 10 --orders 100     # a returning customer: hello to the full order list
  shop-bench run --gateway http://127.0.0.1:8080,http://127.0.0.1:8081   # customers over two gateways

Exit codes: 0 all orders reached RESERVED or a clean cancellation and stock
was conserved; 1 bad arguments or a file that cannot be written; 2 the
gateway cannot be reached; 3 some orders failed or timed out (hello: a
customer's list came back short, or a return failed); 4 stock was not
conserved; 141 the reader of the report went away.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Places orders for a while and reports throughput and latency.
    Run(RunArgs),
    /// Prints a catalogue file with many skus and deep stock, for the
    /// backend's --catalog.
    Catalog(CatalogArgs),
    /// Gives a shop history: places ORDERS orders as fast as it takes them, through the gateway
    /// and every service as customers would, paying a share, and reports as `run` does.
    Seed(SeedArgs),
    /// Measures returning customers: gives each of CUSTOMERS customers ORDERS orders, then
    /// times, again and again, one of them connecting with its kept token, saying hello and
    /// receiving its full order list.
    Hello(HelloArgs),
}

#[derive(Debug, Args)]
pub struct HelloArgs {
    /// Customers to give a history.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub customers: u32,

    /// Orders each customer places first (1 unit of one sku each); their list is what is timed.
    /// At most 1000: the shop lists a customer's newest 1,000 orders.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub orders: u32,

    /// Returns to time, one after another, the customers in turn.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub samples: u32,

    #[command(flatten)]
    pub shop: ShopArgs,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// How many orders to place.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub orders: u64,

    /// Share of the reserved orders to pay (0 to 1); the rest expire at the shop's pay deadline.
    #[arg(long, default_value_t = 0.3, value_parser = parse_share)]
    pub pay: f64,

    /// Customer connections.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: u32,

    /// Orders each connection keeps in flight.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub in_flight: u32,

    /// An operator's token: the conservation check then reads the shop's ledger.
    #[arg(long, env = "SHOP_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<String>,

    #[command(flatten)]
    pub shop: ShopArgs,
}

impl SeedArgs {
    /// The run that seeds: full speed, no warm-up, until the count.
    pub fn into_run(self) -> RunArgs {
        RunArgs {
            operator_token: self.operator_token,
            connections: self.connections,
            rate: None,
            in_flight: self.in_flight,
            // Bounded by the count; a day is far longer than any seed.
            duration: Duration::from_secs(24 * 60 * 60),
            warmup: Duration::ZERO,
            pay: self.pay,
            max_lines: 3,
            max_quantity: 2,
            timeout: Duration::from_secs(30),
            count: Some(self.orders),
            seed: None,
            orders: None,
            shop: self.shop,
        }
    }
}

/// Which shop, and how to report.
#[derive(Debug, Args)]
pub struct ShopArgs {
    /// The gateway, as http://host:port or ws://host:port/ws. Several (repeated, or
    /// separated by commas) spread the customers over gateway instances of one shop,
    /// connection by connection.
    #[arg(
        long,
        env = "SHOP_GATEWAY",
        default_value = "http://127.0.0.1:8080",
        value_delimiter = ','
    )]
    pub gateway: Vec<String>,

    /// Also trust the certificate authority in this PEM file, for a shop served over TLS
    /// with a certificate from a private CA. Mozilla's roots are always trusted.
    #[arg(long, env = "SHOP_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,

    /// Order only skus starting with this; when no product does, every sku.
    #[arg(long, default_value = "BENCH-")]
    pub sku_prefix: String,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// No progress line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// An operator's token (`shop-backend operator-token`): the conservation check then reads
    /// the shop's own ledger, which orders from before the run cannot confuse.
    #[arg(long, env = "SHOP_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<String>,

    /// Customer connections to open; each is a customer of its own.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: u32,

    /// Orders per second to place, spread over the connections; without
    /// it, as fast as the shop answers.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Orders each connection keeps in flight when running as fast as
    /// possible.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub in_flight: u32,

    /// How long to measure.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,

    /// How long to place orders before measuring (not counted).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Share of the reserved orders to pay through the local checkout
    /// (0 to 1), timing each payment until the order shows PAID.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub pay: f64,

    /// Most lines per order (each order has 1 to this many).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub max_lines: u32,

    /// Most units per line.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_quantity: u32,

    /// An order not RESERVED (or cancelled) within this long counts as an
    /// error.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Stop after this many orders (with --duration as a limit too).
    #[arg(long)]
    pub count: Option<u64>,

    /// Seed of the random order lines, to repeat a run.
    #[arg(long)]
    pub seed: Option<u64>,

    /// Also write one CSV line per measured order that reached RESERVED to
    /// FILE: when it was due (ms after measuring began), and how many ms
    /// after that the backend stamped it created, reserved and checkout
    /// ready, and the customer saw it. The backend's stamps are its own
    /// clock in whole ms: they line up when both run on one machine.
    #[arg(long, value_name = "FILE")]
    pub orders: Option<PathBuf>,

    #[command(flatten)]
    pub shop: ShopArgs,
}

#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// Number of skus.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub skus: u32,

    /// Units of each sku.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(1..=1_000_000_000))]
    pub stock: i64,

    /// Sku prefix; `shop-bench run` orders skus with this prefix.
    #[arg(long, default_value = "BENCH-")]
    pub prefix: String,

    /// Write the catalogue here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration such as 30s or 2m: {error}"))?;
    if duration > Duration::from_secs(24 * 3600) {
        return Err("at most 24h".into());
    }
    Ok(duration)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of orders per second"))?;
    if !(rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0) {
        return Err("a rate is above 0 and at most 1000000 orders per second".into());
    }
    Ok(rate)
}

fn parse_share(text: &str) -> Result<f64, String> {
    let share: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number from 0 to 1"))?;
    if !(0.0..=1.0).contains(&share) {
        return Err("a share is from 0 to 1".into());
    }
    Ok(share)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked() {
        assert!(parse_rate("200").is_ok());
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_share("0.25").is_ok());
        assert!(parse_share("1.5").is_err());
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("soon").is_err());
        let cli = Cli::try_parse_from(["shop-bench", "run", "--rate", "100", "--pay", "0.5"])
            .expect("valid");
        let Command::Run(run) = cli.command else {
            panic!("run")
        };
        assert_eq!((run.rate, run.pay, run.connections), (Some(100.0), 0.5, 16));
        assert!(Cli::try_parse_from(["shop-bench", "run", "--connections", "0"]).is_err());
        let two = Cli::try_parse_from([
            "shop-bench",
            "run",
            "--gateway",
            "http://a:1,http://b:2",
            "--gateway",
            "ws://c:3/ws",
        ])
        .expect("several gateways");
        let Command::Run(two) = two.command else {
            panic!("run")
        };
        assert_eq!(
            two.shop.gateway,
            ["http://a:1", "http://b:2", "ws://c:3/ws"]
        );
    }
}
