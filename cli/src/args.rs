//! Command-line arguments of `shop`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  shop products                          what is for sale, live quantities
  url=$(shop order SKU-001:2 SKU-002 | tail -1)
                                         order, and keep the checkout URL
  shop orders                            my orders, with time left to pay
  shop pay 1a2b --open --wait            pay in the browser, wait until paid
  shop watch --json                      live events, one JSON object per line
  shop --profile bob order SKU-003       act as another customer
  shop product SKU-001                   one product in full
  shop admin restock SKU-001 5           operators: change the catalogue (see shop admin --help)

Human output shows text from the shop safely (control characters as ␛, ␊…),
times in your local time zone (TZ) and statuses in words; --json keeps the
shop's names and UTC times. Colour only on a terminal, never with NO_COLOR.

Exit codes: 0 success, 1 usage or input error, 2 cannot reach the gateway,
3 order cancelled or expired, 4 timed out waiting, 5 refused by the shop
(also an operator command it refuses: not enough stock, a sku it has, a
customer's token), 6 the shop is unavailable, 141 the reader of the output
went away.";

/// Shop from the terminal: browse, order, pay and watch it happen live.
#[derive(Debug, Parser)]
#[command(name = "shop", version, about, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes, before or after its name.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The shop's gateway: http://host:port, ws://host:port/ws or host:port.
    #[arg(
        long,
        global = true,
        env = "SHOP_GATEWAY",
        default_value = "http://127.0.0.1:8080",
        value_parser = shop_client::check_gateway
    )]
    pub gateway: String,

    /// Which customer to be: each profile keeps its own customer token [default: default;
    /// for `shop admin`, operator].
    #[arg(long, global = true, env = "SHOP_PROFILE", value_parser = parse_profile)]
    pub profile: Option<String>,

    /// Also trust the certificate authority in this PEM file, for a shop served over TLS
    /// (https:// or wss://) with a certificate from a private CA. Mozilla's roots are always trusted.
    #[arg(long, global = true, env = "SHOP_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// Print machine-readable JSON (one object; one per line for `watch`).
    #[arg(long, global = true)]
    pub json: bool,

    /// Longest wait for the shop, such as 30s or 2m [default: 30s; for `pay --wait`, until the deadline].
    #[arg(long, global = true, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the catalogue: sku, name, category, price and units available now.
    #[command(
        after_help = "Examples:\n  shop products\n  shop products --category Laptops --search pro\n  shop products --json"
    )]
    Products {
        /// Only products of this category (as shown; case does not matter).
        #[arg(long)]
        category: Option<String>,
        /// Only products whose sku, name or description contains this text (case does not matter).
        #[arg(long)]
        search: Option<String>,
    },

    /// Show one product in full: name, category, price, units available, description, image.
    #[command(after_help = "Example:\n  shop product SKU-001\n  shop product SKU-001 --json")]
    Product {
        /// The product's sku.
        sku: String,
    },

    /// Place one order and wait until it is reserved; print its checkout URL
    /// alone on the last line.
    #[command(
        after_help = "Examples:\n  shop order SKU-001:2 SKU-002\n  url=$(shop order SKU-001 | tail -1)"
    )]
    Order {
        /// What to buy: a sku, optionally with a quantity (SKU-001:2); the quantity defaults to 1.
        #[arg(required = true, value_name = "SKU[:QTY]")]
        lines: Vec<String>,
        /// Makes retrying safe: the same key names the same order [default: a fresh one].
        #[arg(long)]
        idempotency_key: Option<String>,
    },

    /// List my orders: id, status, total, time left to pay, checkout URL.
    #[command(after_help = "Example:\n  shop orders\n  shop orders --json")]
    Orders,

    /// Show one order in full: lines, total, deadline and timeline, in your
    /// local time.
    #[command(after_help = "Example:\n  shop status 1a2b        (any unique prefix of the id)")]
    Status {
        /// Order id, or any unique prefix of it.
        order: String,
    },

    /// Print the checkout URL of a reserved order; optionally open it and
    /// wait for the payment.
    #[command(after_help = "Examples:\n  shop pay 1a2b\n  shop pay 1a2b --open --wait")]
    Pay {
        /// Order id, or any unique prefix of it.
        order: String,
        /// Open the checkout page in the browser.
        #[arg(long)]
        open: bool,
        /// Then wait until the order is PAID (exit 0), CANCELLED or past its deadline (exit 3);
        /// on a terminal a countdown moves on stderr, otherwise the deadline is printed once. A
        /// dropped connection (the shop restarting) is connected again and the wait goes on.
        #[arg(long)]
        wait: bool,
    },

    /// Cancel an unpaid order; its stock is released.
    #[command(after_help = "Example:\n  shop cancel 1a2b")]
    Cancel {
        /// Order id, or any unique prefix of it.
        order: String,
    },

    /// Stream live events, one per line, until interrupted: every change of
    /// a product's available quantity, and of my orders.
    #[command(
        after_help = "Examples:\n  shop watch\n  shop watch --json | grep --line-buffered PAID"
    )]
    Watch,

    /// Operators: change the catalogue while the shop runs (restock, write off, prices,
    /// withdraw, add), and read the audit log. Needs an operator's token.
    #[command(after_help = ADMIN_EXAMPLES)]
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },

    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    #[command(
        after_help = "Example:\n  shop completions bash > ~/.local/share/bash-completion/completions/shop"
    )]
    Completions { shell: clap_complete::Shell },
}

const ADMIN_EXAMPLES: &str = "\
Examples:
  shop-backend operator-token --name alice | shop admin login
  shop admin stock                                   units by where they are
  shop admin restock SKU-001 5
  shop admin write-off SKU-001 1 --reason \"dropped\"
  shop admin set SKU-002 --price 999.00 --category Phones
  shop admin add MUG --name \"Coffee mug\" --price 12.50 --stock 40 --category Kitchen
  shop admin withdraw SKU-003
  shop admin audit SKU-001

The operator's token comes from SHOP_OPERATOR_TOKEN if set, otherwise from
the profile (`operator` unless --profile says otherwise) that `shop admin
login` saved it in. Every change is recorded with the operator's name.
A change with the same --idempotency-key is applied once, however often it
is sent: retrying after a lost answer is safe.";

/// What an operator does.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Keep an operator's token (read from standard input) in the profile, after checking it
    /// with the shop.
    #[command(
        after_help = "Example:\n  shop-backend operator-token --name alice | shop admin login\n  shop --profile ops admin login < token.txt"
    )]
    Login,

    /// Every product with its units by where they are: available, reserved, sold, written off,
    /// received.
    Stock,

    /// Add a product, on sale at once.
    Add {
        sku: String,
        /// The name customers see.
        #[arg(long)]
        name: String,
        /// Price of one unit in the shop's currency, such as 12.50.
        #[arg(long)]
        price: String,
        /// Units received.
        #[arg(long, default_value_t = 0)]
        stock: i64,
        #[arg(long, default_value = "")]
        category: String,
        /// Plain text; "\n" in the shell's quoting makes new lines.
        #[arg(long, default_value = "")]
        description: String,
        /// An http:// or https:// URL of a picture.
        #[arg(long)]
        image_url: Option<String>,
        #[command(flatten)]
        key: KeyArg,
    },

    /// Change a product's name, price, category, description or image; what is not given stays.
    /// Orders already reserved keep their price.
    Set {
        sku: String,
        #[arg(long)]
        name: Option<String>,
        /// Price of one unit in the shop's currency, such as 999.00.
        #[arg(long)]
        price: Option<String>,
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// An http:// or https:// URL; "" removes the image.
        #[arg(long)]
        image_url: Option<String>,
        #[command(flatten)]
        key: KeyArg,
    },

    /// Units received: available grows by QUANTITY.
    Restock {
        sku: String,
        quantity: i64,
        #[command(flatten)]
        key: KeyArg,
    },

    /// Units lost (breakage, theft): at most what is available.
    WriteOff {
        sku: String,
        quantity: i64,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        key: KeyArg,
    },

    /// Take a product off sale: no new orders; reserved orders keep their units.
    Withdraw {
        sku: String,
        #[command(flatten)]
        key: KeyArg,
    },

    /// Put a withdrawn product on sale again.
    Relist {
        sku: String,
        #[command(flatten)]
        key: KeyArg,
    },

    /// The audit log, newest first: who changed what, when, from what to what.
    Audit {
        /// Only this product's changes.
        sku: Option<String>,
    },
}

/// The idempotency key of a change.
#[derive(Debug, Clone, Args)]
pub struct KeyArg {
    /// Makes retrying safe: the same key applies the change once [default: a fresh one].
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

/// Reads a duration such as 30s, 2m or 1h30m.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration such as 30s or 2m: {error}"))?;
    if duration.is_zero() {
        return Err("the timeout must be longer than zero".into());
    }
    Ok(duration)
}

/// Reads a profile name: letters, digits, `-` and `_`.
fn parse_profile(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not a profile name: use letters, digits, '-' or '_'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_flags_go_before_or_after_the_command() {
        let before =
            Cli::try_parse_from(["shop", "--json", "--profile", "bob", "orders"]).expect("parses");
        let after =
            Cli::try_parse_from(["shop", "orders", "--json", "--profile", "bob"]).expect("parses");
        for cli in [before, after] {
            assert!(cli.global.json);
            assert_eq!(cli.global.profile.as_deref(), Some("bob"));
            assert!(matches!(cli.command, Command::Orders));
        }
    }

    #[test]
    fn bad_profiles_and_timeouts_are_usage_errors() {
        assert!(Cli::try_parse_from(["shop", "--profile", "../x", "orders"]).is_err());
        assert!(Cli::try_parse_from(["shop", "--timeout", "soon", "orders"]).is_err());
        assert!(Cli::try_parse_from(["shop", "--gateway", "ftp://x", "orders"]).is_err());
        assert!(
            Cli::try_parse_from(["shop", "order"]).is_err(),
            "an order needs lines"
        );
    }
}
