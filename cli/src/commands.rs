//! What each command does. Every command speaks only the gateway's
//! WebSocket protocol, through the client of `shop-client`.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::CommandFactory;
use shop_client::tokens::Tokens;
use shop_client::{Client, ClientError, Push, websocket_url};
use shop_shared::domain::{
    Order, OrderLines, OrderLinesError, OrderStatus, Product, TimelineEvent,
};
use shop_shared::protocol::ErrorCode;
use shop_shared::time::Timestamp;
use uuid::Uuid;

use crate::args::{Cli, Command, Global};
use crate::error::{CliError, Exit};
use crate::output::{Align, Cell, Style, Table, countdown, duration, money, time_left};

/// How long `pay --wait` keeps waiting after the deadline for the shop to
/// record the expiry.
const DEADLINE_GRACE: Duration = Duration::from_secs(30);
/// The wait when no `--timeout` is given.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What every command needs.
struct Context {
    global: Global,
    gateway: String,
    style: Style,
}

impl Context {
    fn timeout(&self) -> Duration {
        self.global.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    fn fail(&self, error: ClientError) -> CliError {
        CliError::from_client(error, &self.gateway)
    }

    /// Connects as this profile's customer, keeping a new customer's token.
    async fn connect(&self) -> Result<Client, CliError> {
        let tokens = Tokens::locate().map_err(|error| CliError::usage(error.to_string()))?;
        let profile = &self.global.profile;
        let saved = tokens.get(profile, &self.gateway);
        let client = match self.connect_as(saved.as_deref()).await {
            Err(ClientError::Server {
                code: ErrorCode::InvalidToken,
                ..
            }) => {
                eprintln!(
                    "shop: the saved customer of profile `{profile}` is unknown to this shop (was its data reset?); \
                     continuing as a new customer"
                );
                self.connect_as(None).await
            }
            other => other,
        }
        .map_err(|error| self.fail(error))?;
        if saved.as_deref() != Some(client.token()) {
            tokens
                .save(profile, &self.gateway, client.token())
                .map_err(|error| CliError::usage(error.to_string()))?;
        }
        Ok(client.with_reply_timeout(self.timeout()))
    }

    async fn connect_as(&self, token: Option<&str>) -> Result<Client, ClientError> {
        let timeout = self.timeout();
        tokio::time::timeout(timeout, Client::connect(&self.gateway, token))
            .await
            .unwrap_or(Err(ClientError::Timeout(timeout)))
    }

    /// Prints `value` as one JSON object.
    fn json(&self, value: &impl serde::Serialize) {
        println!("{}", serde_json::to_string(value).unwrap_or_default());
    }
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let context = Context {
        gateway: websocket_url(&cli.global.gateway),
        global: cli.global,
        style: Style::detect(),
    };
    match cli.command {
        Command::Products => products(&context).await,
        Command::Order {
            lines,
            idempotency_key,
        } => order(&context, &lines, idempotency_key).await,
        Command::Orders => orders(&context).await,
        Command::Status { order } => status(&context, &order).await,
        Command::Pay { order, open, wait } => pay(&context, &order, open, wait).await,
        Command::Cancel { order } => cancel(&context, &order).await,
        Command::Watch => watch(&context).await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "shop", &mut std::io::stdout());
            Ok(())
        }
    }
}

async fn products(context: &Context) -> Result<(), CliError> {
    let client = context.connect().await?;
    let products = client
        .products()
        .await
        .map_err(|error| context.fail(error))?;
    if context.global.json {
        context.json(&products);
        return Ok(());
    }
    let mut table = Table::new(&[
        ("SKU", Align::Left),
        ("NAME", Align::Left),
        ("PRICE", Align::Right),
        ("AVAILABLE", Align::Right),
    ]);
    for product in &products {
        table.row(vec![
            product.sku.as_str().into(),
            product.name.as_str().into(),
            product.currency.format(product.unit_price).into(),
            product.available.to_string().into(),
        ]);
    }
    print!("{}", table.render(context.style));
    Ok(())
}

/// Reads `SKU[:QTY]` arguments as the lines of an order; the same sku twice
/// adds up.
///
/// # Errors
///
/// A usage error for an argument that is not `SKU[:QTY]` with a whole
/// quantity of at least 1, and, with the gateway's message, for lines that
/// are not an order ([`OrderLines::parse`]): a sku of the wrong shape, more
/// than `MAX_LINES` skus, more than `MAX_QUANTITY` of one sku.
pub fn parse_lines(arguments: &[String]) -> Result<OrderLines, CliError> {
    let mut lines: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    for (position, argument) in arguments.iter().enumerate() {
        let (sku, quantity) = match argument.split_once(':') {
            None => (argument.as_str(), 1),
            Some((sku, quantity)) => {
                let quantity: i64 = quantity.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    CliError::usage(format!(
                        "`{argument}`: the quantity after ':' must be a whole number of at least 1, as in SKU-001:2"
                    ))
                })?;
                (sku, quantity)
            }
        };
        if sku.is_empty() {
            return Err(CliError::usage(format!(
                "`{argument}`: name a sku, as in SKU-001:2"
            )));
        }
        let entry = lines.entry(sku.to_owned()).or_insert((position, 0));
        entry.1 = entry.1.saturating_add(quantity);
    }
    let mut ordered: Vec<(usize, String, i64)> = lines
        .into_iter()
        .map(|(sku, (position, quantity))| (position, sku, quantity))
        .collect();
    ordered.sort();
    OrderLines::parse(
        ordered
            .iter()
            .map(|(_, sku, quantity)| (sku.as_str(), *quantity)),
    )
    .map_err(|error| match error {
        OrderLinesError::InvalidSku(_) | OrderLinesError::UnknownSku(_) => unknown_sku(error),
        other => CliError::usage(other.to_string()),
    })
}

/// The shop sells no such sku.
fn unknown_sku(message: impl std::fmt::Display) -> CliError {
    CliError::usage(format!("{message}; `shop products` lists what is for sale"))
}

async fn order(
    context: &Context,
    arguments: &[String],
    key: Option<String>,
) -> Result<(), CliError> {
    let lines = parse_lines(arguments)?;
    let client = context.connect().await?;
    let key = key.unwrap_or_else(|| Uuid::new_v4().to_string());
    let borrowed: Vec<(&str, i64)> = lines
        .iter()
        .map(|(sku, quantity)| (sku.as_str(), quantity.get()))
        .collect();
    let placed = client
        .place_order(&borrowed, &key)
        .await
        .map_err(|error| match error {
            ClientError::Server {
                code: ErrorCode::UnknownSku,
                message,
            } => unknown_sku(message),
            other => context.fail(other),
        })?;
    let order = match client.wait_for_checkout(placed.id, context.timeout()).await {
        Ok(order) => order,
        Err(ClientError::Timeout(after)) => {
            return Err(CliError::new(
                Exit::Timeout,
                format!(
                    "order {} was placed but is not reserved after {}; follow it with `shop status {}`",
                    placed.short_id(),
                    duration(after),
                    placed.short_id()
                ),
            ));
        }
        Err(error) => return Err(context.fail(error)),
    };
    if context.global.json {
        context.json(&order);
    }
    if order.status == OrderStatus::Cancelled {
        return Err(cancelled(&order));
    }
    if !context.global.json {
        let items: Vec<String> = order
            .lines
            .iter()
            .map(|line| {
                format!(
                    "{} × {}",
                    line.quantity,
                    line.name.as_deref().unwrap_or(&line.sku)
                )
            })
            .collect();
        let now = Timestamp::now();
        println!(
            "Order {} {}: {}",
            context.style.bold(&order.short_id()),
            order.status,
            items.join(", ")
        );
        println!(
            "Total {}, pay within {}",
            money(order.total, order.currency),
            order
                .pay_until
                .map_or("-".into(), |deadline| countdown(deadline, now))
        );
        println!("{}", order.checkout_url.as_deref().unwrap_or_default());
    }
    Ok(())
}

/// The error for a cancelled order, saying why.
fn cancelled(order: &Order) -> CliError {
    let reason = order
        .cancel_reason
        .map_or("cancelled", |reason| reason.describe());
    let detail = order
        .timeline
        .iter()
        .rev()
        .find(|entry| entry.event == TimelineEvent::Cancelled)
        .and_then(|entry| entry.detail.clone())
        .filter(|detail| detail != reason);
    let detail = detail
        .map(|detail| format!(" ({detail})"))
        .unwrap_or_default();
    let refunded = if order.refunded {
        "; the payment was refunded"
    } else {
        ""
    };
    CliError::new(
        Exit::Cancelled,
        format!(
            "order {} was cancelled: {reason}{detail}{refunded}",
            order.short_id()
        ),
    )
}

async fn orders(context: &Context) -> Result<(), CliError> {
    let client = context.connect().await?;
    let orders = client.orders().await.map_err(|error| context.fail(error))?;
    if context.global.json {
        context.json(&orders);
        return Ok(());
    }
    if orders.is_empty() {
        println!("No orders yet. Place one with `shop order SKU-001`.");
        return Ok(());
    }
    let now = Timestamp::now();
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("STATUS", Align::Left),
        ("TOTAL", Align::Right),
        ("PAY WITHIN", Align::Right),
        ("CHECKOUT", Align::Left),
    ]);
    for order in &orders {
        let checkout = match order.status {
            OrderStatus::Reserved => order.checkout_url.clone().unwrap_or_default(),
            _ => String::new(),
        };
        table.row(vec![
            order.short_id().into(),
            context.style.status(order),
            money(order.total, order.currency).into(),
            time_left(order, now).into(),
            Cell::from(checkout),
        ]);
    }
    print!("{}", table.render(context.style));
    Ok(())
}

/// The order an id or unique id prefix names, among this customer's.
async fn resolve(context: &Context, client: &Client, text: &str) -> Result<Order, CliError> {
    let wanted: String = text
        .trim()
        .to_ascii_lowercase()
        .chars()
        .filter(|c| *c != '-')
        .collect();
    if wanted.is_empty() || !wanted.chars().all(|c| c.is_ascii_hexdigit()) || wanted.len() > 32 {
        return Err(CliError::usage(format!(
            "`{text}` is not an order id; `shop orders` lists yours"
        )));
    }
    let orders = client.orders().await.map_err(|error| context.fail(error))?;
    let matching: Vec<Order> = orders
        .into_iter()
        .filter(|order| order.id.simple().to_string().starts_with(&wanted))
        .collect();
    match matching.len() {
        0 => Err(CliError::usage(format!(
            "no order of yours starts with `{text}`; `shop orders` lists them"
        ))),
        1 => Ok(matching
            .into_iter()
            .next()
            .unwrap_or_else(|| unreachable!("one element"))),
        many => {
            let ids: Vec<String> = matching
                .iter()
                .take(5)
                .map(|order| order.id.simple().to_string()[..12].to_owned())
                .collect();
            Err(CliError::usage(format!(
                "`{text}` matches {many} of your orders ({}…); type more of the id",
                ids.join(", ")
            )))
        }
    }
}

async fn status(context: &Context, text: &str) -> Result<(), CliError> {
    let client = context.connect().await?;
    let order = resolve(context, &client, text).await?;
    if context.global.json {
        context.json(&order);
        return Ok(());
    }
    print!("{}", describe(&order, context.style, Timestamp::now()));
    Ok(())
}

/// One order in full, for people.
pub fn describe(order: &Order, style: Style, now: Timestamp) -> String {
    let mut out = String::new();
    out.push_str(&format!("{} {}\n", style.bold("Order"), order.id));
    out.push_str(&format!("Status      {}\n", style.status(order).shown()));
    out.push_str(&format!(
        "Total       {}\n",
        money(order.total, order.currency)
    ));
    if let (OrderStatus::Reserved, Some(deadline)) = (order.status, order.pay_until) {
        out.push_str(&format!(
            "Pay within  {} (until {deadline})\n",
            countdown(deadline, now)
        ));
    }
    if let (OrderStatus::Reserved, Some(url)) = (order.status, &order.checkout_url) {
        out.push_str(&format!("Checkout    {url}\n"));
    }
    out.push_str("Lines\n");
    let mut lines = Table::new(&[
        ("QTY", Align::Right),
        ("SKU", Align::Left),
        ("NAME", Align::Left),
        ("UNIT", Align::Right),
        ("AMOUNT", Align::Right),
    ]);
    for line in &order.lines {
        lines.row(vec![
            line.quantity.to_string().into(),
            line.sku.as_str().into(),
            line.name.clone().unwrap_or_default().into(),
            money(line.unit_price, order.currency).into(),
            money(line.amount, order.currency).into(),
        ]);
    }
    for row in lines.render(style).lines() {
        out.push_str(&format!("  {row}\n"));
    }
    out.push_str("Timeline\n");
    for entry in &order.timeline {
        let detail = entry
            .detail
            .as_deref()
            .map(|detail| format!("  {}", style.dim(detail)))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {}  {}{detail}\n",
            entry.at,
            entry.event.as_str()
        ));
    }
    out
}

async fn pay(context: &Context, text: &str, open: bool, wait: bool) -> Result<(), CliError> {
    let client = context.connect().await?;
    let mut order = resolve(context, &client, text).await?;
    if order.status == OrderStatus::New
        || (order.status == OrderStatus::Reserved && order.checkout_url.is_none())
    {
        order = client
            .wait_for_checkout(order.id, context.timeout())
            .await
            .map_err(|error| context.fail(error))?;
    }
    match order.status {
        OrderStatus::Paid => {
            if context.global.json {
                context.json(&order);
            } else {
                println!("Order {} is already paid.", order.short_id());
            }
            return Ok(());
        }
        OrderStatus::Cancelled => {
            if context.global.json {
                context.json(&order);
            }
            return Err(cancelled(&order));
        }
        OrderStatus::New | OrderStatus::Reserved => {}
    }
    let Some(url) = order.checkout_url.clone() else {
        return Err(CliError::new(
            Exit::Timeout,
            format!(
                "order {} has no checkout page yet; try again shortly",
                order.short_id()
            ),
        ));
    };
    if !context.global.json {
        println!("{url}");
    }
    if open && let Err(problem) = shop_client::browser::open(&url) {
        eprintln!("shop: could not open a browser ({problem}); open the URL above yourself");
    }
    if !wait {
        if context.global.json {
            context.json(&order);
        }
        return Ok(());
    }
    let now = Timestamp::now();
    let timeout = context.global.timeout.unwrap_or_else(|| {
        order.pay_until.map_or(DEFAULT_TIMEOUT, |deadline| {
            deadline.remaining_from(now) + DEADLINE_GRACE
        })
    });
    if !context.global.json {
        let left = order
            .pay_until
            .map_or("-".into(), |deadline| countdown(deadline, now));
        eprintln!(
            "Waiting for the payment of order {} (pay within {left})…",
            order.short_id()
        );
    }
    let outcome = client
        .wait_for_order(order.id, timeout, |order| order.status.is_final())
        .await;
    let order = match outcome {
        Ok(order) => order,
        Err(ClientError::Timeout(after)) => {
            return Err(CliError::new(
                Exit::Timeout,
                format!(
                    "order {} was not paid within {}",
                    order.short_id(),
                    duration(after)
                ),
            ));
        }
        Err(error) => return Err(context.fail(error)),
    };
    if context.global.json {
        context.json(&order);
    }
    match order.status {
        OrderStatus::Paid => {
            if !context.global.json {
                println!(
                    "Order {} is paid: {}.",
                    order.short_id(),
                    money(order.total, order.currency)
                );
            }
            Ok(())
        }
        _ => Err(cancelled(&order)),
    }
}

async fn cancel(context: &Context, text: &str) -> Result<(), CliError> {
    let client = context.connect().await?;
    let order = resolve(context, &client, text).await?;
    let order = client
        .cancel_order(&order.id.to_string())
        .await
        .map_err(|error| context.fail(error))?;
    if context.global.json {
        context.json(&order);
    } else {
        println!(
            "Order {} is cancelled; its items are back in stock.",
            order.short_id()
        );
    }
    Ok(())
}

async fn watch(context: &Context) -> Result<(), CliError> {
    let mut client = context.connect().await?;
    if !context.global.json {
        eprintln!(
            "Watching the shop at {} (times in UTC; Ctrl-C to stop)…",
            context.gateway
        );
    }
    loop {
        let mut pushes = client.subscribe();
        loop {
            let push = tokio::select! {
                push = pushes.recv() => push,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            match push {
                Ok(Push::Product(product)) => print_product(context, &product),
                Ok(Push::Order(order)) => print_order(context, &order),
                Ok(Push::Disconnected) | Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    break;
                }
                Ok(Push::Error { .. })
                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            }
        }
        eprintln!("shop: lost the connection to the shop; reconnecting…");
        client = reconnect(context).await?;
        eprintln!("shop: reconnected");
    }
}

/// Connects again with growing pauses, until it works or Ctrl-C.
async fn reconnect(context: &Context) -> Result<Client, CliError> {
    let mut pause = Duration::from_millis(250);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = tokio::signal::ctrl_c() => std::process::exit(0),
        }
        match context.connect().await {
            Ok(client) => return Ok(client),
            Err(error) if error.exit == Exit::Unreachable || error.exit == Exit::Timeout => {
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(error) => return Err(error),
        }
    }
}

fn clock() -> String {
    let now = Timestamp::now().to_string();
    now.get(11..19).unwrap_or(&now).to_owned()
}

fn print_product(context: &Context, product: &Product) {
    if context.global.json {
        context.json(&serde_json::json!({ "type": "product_updated", "product": product }));
    } else {
        println!(
            "{}  stock  {}  {}: {} available",
            context.style.dim(&clock()),
            product.sku,
            product.name,
            product.available
        );
    }
}

fn print_order(context: &Context, order: &Order) {
    if context.global.json {
        context.json(&serde_json::json!({ "type": "order_updated", "order": order }));
        return;
    }
    let status = context.style.status(order);
    let mut line = format!(
        "{}  order  {}  {}",
        context.style.dim(&clock()),
        order.short_id(),
        status.shown()
    );
    if let Some(total) = order.total {
        line.push_str(&format!("  {}", money(Some(total), order.currency)));
    }
    if order.status == OrderStatus::Reserved {
        line.push_str(&format!(
            "  pay within {}",
            time_left(order, Timestamp::now())
        ));
        if let Some(url) = &order.checkout_url {
            line.push_str(&format!("  {url}"));
        }
    }
    println!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|item| (*item).to_owned()).collect()
    }

    #[test]
    fn lines_take_optional_quantities_and_add_up_repeats() {
        let lines = parse_lines(&args(&["SKU-002", "SKU-001:2", "SKU-002:3"])).expect("valid");
        let lines: Vec<(String, i64)> = lines
            .iter()
            .map(|(sku, quantity)| (sku.to_string(), quantity.get()))
            .collect();
        assert_eq!(
            lines,
            vec![("SKU-002".to_owned(), 4), ("SKU-001".to_owned(), 2)]
        );
    }

    #[test]
    fn lines_the_shop_would_refuse_are_usage_errors_with_the_gateways_message() {
        let message = |list: &[&str]| {
            let error = parse_lines(&args(list)).expect_err("refused");
            assert_eq!(error.exit, Exit::Usage, "{list:?}");
            error.message
        };
        assert_eq!(
            message(&["SKU 001"]),
            "unknown sku \"SKU 001\"; `shop products` lists what is for sale"
        );
        assert_eq!(
            message(&["SKU-001:600", "SKU-001:401"]),
            "quantity of SKU-001 must be between 1 and 1000, not 1001"
        );
        let many: Vec<String> = (0..21).map(|n| format!("SKU-{n:03}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(message(&many), "an order has at most 20 lines, not 21");
    }

    #[test]
    fn malformed_lines_are_usage_errors() {
        for bad in ["SKU-001:", "SKU-001:0", "SKU-001:-1", "SKU-001:two", ":3"] {
            let error = parse_lines(&args(&[bad])).expect_err(bad);
            assert_eq!(error.exit, Exit::Usage, "{bad}");
        }
    }
}
