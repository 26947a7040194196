//! `shop-bench hello`: returning customers. A customer with a history
//! comes back with its kept token, says hello and asks for its orders; the
//! time it waits for the whole list is what a returning customer feels
//! before the first screen is complete.

use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use shop_client::{Client, Trust};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::args::HelloArgs;
use crate::load::Random;
use crate::stats::{Samples, Summary};
use crate::{
    EXIT_FAILED_ORDERS, EXIT_UNREACHABLE, EXIT_USAGE, Failure, gateway_of, print_out, to_order,
    unreachable, websocket_urls,
};

/// Orders one customer keeps in flight while its history is made.
const PLACING_IN_FLIGHT: usize = 8;

/// How long a customer's list may take to show every order it placed (the
/// gateway's projection stores them as the order service publishes them).
const LISTED_WITHIN: Duration = Duration::from_secs(60);

/// What `shop-bench hello` reports.
#[derive(Debug, Serialize)]
struct Report {
    gateway: String,
    customers: u32,
    orders_each: u32,
    /// From opening the connection (TCP and WebSocket handshakes included)
    /// through `hello` and `welcome` to the `orders` reply with the whole
    /// list, in milliseconds.
    connect_to_list: Option<Summary>,
    /// Returns whose list lacked some of the customer's orders.
    short_lists: u64,
    /// Returns that failed (the connection or a request), with a sample.
    errors: u64,
    error_samples: Vec<String>,
}

impl Report {
    fn human(&self) -> String {
        let latency = crate::report::latency(self.connect_to_list.as_ref(), "returns");
        let mut text = format!(
            "shop-bench hello against {}\n\
             customers: {}, {} orders each\n\
             connect, hello, full list: {latency}\n\
             short lists: {}\n\
             errors: {}\n",
            self.gateway, self.customers, self.orders_each, self.short_lists, self.errors
        );
        for sample in &self.error_samples {
            text.push_str(&format!("  {sample}\n"));
        }
        text
    }
}

/// Runs `shop-bench hello`.
///
/// # Errors
///
/// [`EXIT_UNREACHABLE`] when the shop cannot be reached or refuses to make
/// the history (an order refused for the per-customer limits among them:
/// start the backend with `--hold-limit 0 --order-rate 0`);
/// [`EXIT_USAGE`] when the shop sells nothing or the report cannot be
/// written.
pub async fn measure(args: &HelloArgs) -> Result<ExitCode, Failure> {
    let trust = Trust::new(args.shop.ca_cert.as_deref())
        .map_err(|error| (EXIT_USAGE, error.to_string()))?;
    let urls = websocket_urls(&args.shop.gateway);
    let tokens = make_history(args, &urls, &trust).await?;

    let mut samples = Samples::default();
    let (mut short_lists, mut errors) = (0, 0);
    let mut error_samples = Vec::new();
    for index in 0..args.samples as usize {
        let url = gateway_of(&urls, index);
        let token = &tokens[index % tokens.len()];
        let started = Instant::now();
        match return_once(url, token, &trust).await {
            Ok(listed) => {
                samples.add(started.elapsed());
                if listed < args.orders as usize {
                    short_lists += 1;
                }
            }
            Err(error) => {
                errors += 1;
                if error_samples.len() < 5 {
                    error_samples.push(error);
                }
            }
        }
    }
    let report = Report {
        gateway: args.shop.gateway.join(", "),
        customers: args.customers,
        orders_each: args.orders,
        connect_to_list: samples.summary(),
        short_lists,
        errors,
        error_samples,
    };
    if args.shop.json {
        print_out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ))?;
    } else {
        print_out(&report.human())?;
    }
    Ok(if short_lists > 0 || errors > 0 {
        ExitCode::from(EXIT_FAILED_ORDERS)
    } else {
        ExitCode::SUCCESS
    })
}

/// One return: connect with `token`, hello, list. Returns how many orders
/// the list held.
async fn return_once(url: &str, token: &str, trust: &Trust) -> Result<usize, String> {
    let client = Client::connect_with(url, Some(token), trust)
        .await
        .map_err(|error| format!("connecting with a kept token: {error}"))?;
    let listed = client.orders().await;
    client.close();
    listed
        .map(|orders| orders.len())
        .map_err(|error| format!("listing orders: {error}"))
}

/// Makes `--customers` new customers, each placing `--orders` orders of
/// one unit, and waits until each one's list shows them all. Returns their
/// tokens.
async fn make_history(
    args: &HelloArgs,
    urls: &[String],
    trust: &Trust,
) -> Result<Vec<String>, Failure> {
    let mut clients = Vec::with_capacity(args.customers as usize);
    for index in 0..args.customers as usize {
        let url = gateway_of(urls, index);
        let client = Client::connect_with(url, None, trust)
            .await
            .map_err(|error| unreachable(url, error))?
            .with_reply_timeout(Duration::from_secs(30));
        clients.push(client);
    }
    let products = clients[0]
        .products()
        .await
        .map_err(|error| (EXIT_UNREACHABLE, format!("listing products: {error}")))?;
    let skus: Vec<String> = to_order(&products, &args.shop.sku_prefix)?
        .into_iter()
        .map(|product| product.sku.clone())
        .collect();
    if !args.shop.quiet {
        eprintln!(
            "shop-bench: {} customers placing {} orders each",
            args.customers, args.orders
        );
    }
    let mut placing = JoinSet::new();
    for (index, client) in clients.iter().enumerate() {
        let (client, skus, orders) = (client.clone(), skus.clone(), args.orders);
        placing.spawn(async move { place_history(&client, &skus, orders, index as u64).await });
    }
    while let Some(placed) = placing.join_next().await {
        placed
            .map_err(|error| (EXIT_UNREACHABLE, error.to_string()))?
            .map_err(|error| (EXIT_UNREACHABLE, error))?;
    }
    let tokens = clients
        .iter()
        .map(|client| client.token().to_owned())
        .collect();
    for client in &clients {
        client.close();
    }
    Ok(tokens)
}

/// One customer's `orders` orders, [`PLACING_IN_FLIGHT`] at a time, then a
/// wait until its list holds them all.
async fn place_history(
    client: &Client,
    skus: &[String],
    orders: u32,
    seed: u64,
) -> Result<(), String> {
    let mut random = Random::new(seed.wrapping_add(1));
    let mut in_flight = JoinSet::new();
    for _ in 0..orders {
        if in_flight.len() >= PLACING_IN_FLIGHT
            && let Some(placed) = in_flight.join_next().await
        {
            placed.map_err(|error| error.to_string())??;
        }
        let sku = skus[(random.next() % skus.len() as u64) as usize].clone();
        let client = client.clone();
        in_flight.spawn(async move {
            let key = uuid::Uuid::new_v4().to_string();
            client
                .place_order(&[(sku.as_str(), 1)], &key)
                .await
                .map(|_| ())
                .map_err(|error| format!("placing a customer's history: {error}"))
        });
    }
    while let Some(placed) = in_flight.join_next().await {
        placed.map_err(|error| error.to_string())??;
    }
    let deadline = Instant::now() + LISTED_WITHIN;
    loop {
        let listed = client
            .orders()
            .await
            .map_err(|error| format!("listing a customer's orders: {error}"))?
            .len();
        if listed >= orders as usize {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "a customer's list shows {listed} of its {orders} orders after {}s",
                LISTED_WITHIN.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
