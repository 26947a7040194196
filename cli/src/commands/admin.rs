//! `shop admin`: an operator changes the catalogue while the shop runs and
//! reads the audit log. Every command signs in with an operator's token,
//! from `SHOP_OPERATOR_TOKEN` or the profile `shop admin login` kept it in
//! (`operator` unless `--profile` names another); never a customer's.

use std::io::Read;

use shop_client::tokens::Tokens;
use shop_client::{Client, ClientError};
use shop_shared::catalog::{AuditEntry, CatalogChange, FieldChange};
use shop_shared::domain::Product;
use shop_shared::money::Currency;
use shop_shared::protocol::ErrorCode;
use shop_shared::time::Timestamp;
use uuid::Uuid;

use super::Context;
use crate::args::{AdminCommand, KeyArg};
use crate::error::{CliError, Exit};
use crate::output::{Align, Table, out, safe};

/// Where an operator's token comes from before any profile.
const TOKEN_ENV: &str = "SHOP_OPERATOR_TOKEN";

/// Longest token `shop admin login` reads.
const MAX_TOKEN_LEN: usize = 1024;

pub(super) async fn admin(context: &Context, command: AdminCommand) -> Result<(), CliError> {
    match command {
        AdminCommand::Login => login(context).await,
        AdminCommand::Stock => stock(context).await,
        AdminCommand::Audit { sku } => audit(context, sku.as_deref()).await,
        AdminCommand::Add {
            sku,
            name,
            price,
            stock,
            category,
            description,
            image_url,
            key,
        } => {
            let client = operator(context).await?;
            let unit_price = parse_price(&price, shop_currency(context, &client).await?)?;
            let change = CatalogChange::AddProduct {
                sku,
                name,
                description,
                category,
                image_url,
                unit_price,
                stock,
            };
            apply(context, &client, change, key).await
        }
        AdminCommand::Set {
            sku,
            name,
            price,
            category,
            description,
            image_url,
            key,
        } => {
            if [&name, &price, &category, &description, &image_url]
                .iter()
                .all(|field| field.is_none())
            {
                return Err(CliError::usage(
                    "say what to change: --name, --price, --category, --description or --image-url",
                ));
            }
            let client = operator(context).await?;
            let unit_price = match price {
                Some(price) => Some(parse_price(&price, shop_currency(context, &client).await?)?),
                None => None,
            };
            let change = CatalogChange::UpdateProduct {
                sku,
                name,
                description,
                category,
                image_url,
                unit_price,
            };
            apply(context, &client, change, key).await
        }
        AdminCommand::Restock { sku, quantity, key } => {
            let client = operator(context).await?;
            apply(
                context,
                &client,
                CatalogChange::Restock { sku, quantity },
                key,
            )
            .await
        }
        AdminCommand::WriteOff {
            sku,
            quantity,
            reason,
            key,
        } => {
            let client = operator(context).await?;
            let change = CatalogChange::WriteOff {
                sku,
                quantity,
                reason,
            };
            apply(context, &client, change, key).await
        }
        AdminCommand::Withdraw { sku, key } => {
            let client = operator(context).await?;
            apply(context, &client, CatalogChange::Withdraw { sku }, key).await
        }
        AdminCommand::Relist { sku, key } => {
            let client = operator(context).await?;
            apply(context, &client, CatalogChange::Relist { sku }, key).await
        }
    }
}

/// The profile operators' tokens are kept in.
fn profile(context: &Context) -> &str {
    context.global.profile.as_deref().unwrap_or("operator")
}

/// Signs in as the operator whose token `SHOP_OPERATOR_TOKEN` holds, or
/// the profile keeps.
async fn operator(context: &Context) -> Result<Client, CliError> {
    let profile = profile(context);
    let from_env = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|token| !token.trim().is_empty());
    let source = if from_env.is_some() {
        TOKEN_ENV.to_owned()
    } else {
        format!("profile `{profile}`")
    };
    let token = match from_env {
        Some(token) => token.trim().to_owned(),
        None => {
            let tokens = Tokens::locate().map_err(|error| CliError::usage(error.to_string()))?;
            tokens.get(profile, &context.gateway).ok_or_else(|| {
                CliError::usage(format!(
                    "no operator's token in profile `{profile}` for this shop: pipe one into \
                     `shop admin login` (`shop-backend operator-token --name NAME` prints one), \
                     or set {TOKEN_ENV}"
                ))
            })?
        }
    };
    if !token.starts_with("op1.") {
        return Err(CliError::usage(format!(
            "{source} holds no operator's token (a customer's, or something else); sign in with \
             `shop admin login`, or name the operator's profile with --profile"
        )));
    }
    signed_in(context, &token).await
}

/// Connects with an operator's `token` and checks the shop took it as one.
async fn signed_in(context: &Context, token: &str) -> Result<Client, CliError> {
    let client = match context.connect_as(Some(token)).await {
        Err(ClientError::Server {
            code: ErrorCode::InvalidToken,
            message,
        }) => {
            return Err(CliError::new(
                Exit::Refused,
                format!("the shop refused the operator's token: {message}"),
            ));
        }
        other => other.map_err(|error| context.fail(error))?,
    };
    if client.operator().is_none() {
        return Err(CliError::new(
            Exit::Refused,
            "the shop took the token as a customer's, not an operator's",
        ));
    }
    Ok(client.with_reply_timeout(context.timeout()))
}

async fn login(context: &Context) -> Result<(), CliError> {
    let mut text = String::new();
    std::io::stdin()
        .take(MAX_TOKEN_LEN as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|error| CliError::usage(format!("cannot read the token: {error}")))?;
    let token = text.trim();
    if token.is_empty() || text.len() > MAX_TOKEN_LEN || !token.starts_with("op1.") {
        return Err(CliError::usage(
            "give an operator's token on standard input, as `shop-backend operator-token --name NAME` prints it: \
             shop-backend operator-token --name alice | shop admin login",
        ));
    }
    let profile = profile(context);
    let tokens = Tokens::locate().map_err(|error| CliError::usage(error.to_string()))?;
    if let Some(kept) = tokens.get(profile, &context.gateway)
        && !kept.starts_with("op1.")
    {
        return Err(CliError::usage(format!(
            "profile `{profile}` is a customer's (its token would be lost, and with it the \
             customer's orders); keep the operator's token in another, e.g. \
             `shop --profile operator admin login`"
        )));
    }
    let client = signed_in(context, token).await?;
    let name = client.operator().unwrap_or_default().to_owned();
    tokens
        .save(profile, &context.gateway, token)
        .map_err(|error| CliError::usage(error.to_string()))?;
    if context.global.json {
        return context.json(&serde_json::json!({ "operator": name, "profile": profile }));
    }
    out!(
        "signed in as operator {} (profile `{profile}`); `shop admin --help` lists what you can do",
        safe(&name)
    )
}

/// The currency the shop sells in: that of its products.
async fn shop_currency(context: &Context, client: &Client) -> Result<Currency, CliError> {
    let products = client
        .products()
        .await
        .map_err(|error| context.fail(error))?;
    Ok(products
        .first()
        .map_or(Currency::EUR, |product| product.currency))
}

fn parse_price(text: &str, currency: Currency) -> Result<i64, CliError> {
    currency
        .parse_amount(text)
        .map_err(|error| CliError::usage(format!("--price: {error}")))
}

async fn apply(
    context: &Context,
    client: &Client,
    change: CatalogChange,
    key: KeyArg,
) -> Result<(), CliError> {
    let chosen = key.idempotency_key.is_some();
    let key = key
        .idempotency_key
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let (entry, product) = client.admin(&key, change).await.map_err(|error| {
        // Sent, but no answer: the change may or may not be applied. The
        // same key tells, and never applies it twice.
        let undecided = matches!(
            error,
            ClientError::Timeout(_)
                | ClientError::Closed
                | ClientError::Server {
                    code: ErrorCode::Unavailable,
                    ..
                }
        );
        let mut failed = context.fail(error);
        if undecided {
            failed.message = format!(
                "{}. The change may have been applied: run the same command with \
                 --idempotency-key {key} to apply it once and learn what became of it{}",
                failed.message.trim_end_matches(['.', ';']),
                if chosen {
                    " (that key is this command's)"
                } else {
                    ""
                }
            );
        }
        failed
    })?;
    if context.global.json {
        return context.json(&serde_json::json!({ "entry": entry, "product": product }));
    }
    out!("{}", describe(&entry, &product))
}

/// `restocked SKU-001: available 8 → 13, received 10 → 15`.
pub fn describe(entry: &AuditEntry, product: &Product) -> String {
    let done = match entry.action.as_str() {
        "add_product" => "added",
        "update_product" => "changed",
        "restock" => "restocked",
        "write_off" => "wrote off units of",
        "withdraw" => "withdrew",
        "relist" => "relisted",
        other => other,
    };
    let changes = if entry.changes.is_empty() {
        "nothing to change".to_owned()
    } else {
        entry
            .changes
            .iter()
            .map(|change| field(change, product.currency))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let reason = if entry.reason.is_empty() {
        String::new()
    } else {
        format!(" ({})", safe(&entry.reason))
    };
    format!("{done} {}: {changes}{reason}", safe(&entry.sku))
}

/// `unit_price 1,100.00 EUR → 999.00 EUR`.
fn field(change: &FieldChange, currency: Currency) -> String {
    let value = |value: &serde_json::Value| match value {
        serde_json::Value::Null => "none".to_owned(),
        serde_json::Value::Number(number) if change.field == "unit_price" => number
            .as_i64()
            .map_or_else(|| number.to_string(), |amount| currency.format(amount)),
        serde_json::Value::String(text) => {
            let text = safe(text).replace('\n', " ");
            let short: String = text.chars().take(40).collect();
            let more = if short.len() < text.len() { "…" } else { "" };
            format!("\"{short}{more}\"")
        }
        other => other.to_string(),
    };
    format!(
        "{} {} → {}",
        change.field,
        value(&change.old),
        value(&change.new)
    )
}

async fn stock(context: &Context) -> Result<(), CliError> {
    let client = operator(context).await?;
    let products = client
        .products()
        .await
        .map_err(|error| context.fail(error))?;
    if context.global.json {
        return context.json(&products);
    }
    let mut table = Table::new(&[
        ("SKU", Align::Left),
        ("NAME", Align::Left),
        ("PRICE", Align::Right),
        ("AVAILABLE", Align::Right),
        ("RESERVED", Align::Right),
        ("SOLD", Align::Right),
        ("WRITTEN OFF", Align::Right),
        ("RECEIVED", Align::Right),
        ("ON SALE", Align::Left),
    ])
    .eliding(1);
    for product in &products {
        let levels = product.stock.unwrap_or(shop_shared::domain::StockLevels {
            reserved: 0,
            sold: 0,
            written_off: 0,
            received: 0,
        });
        table.row(vec![
            product.sku.as_str().into(),
            product.name.as_str().into(),
            product.currency.format(product.unit_price).into(),
            product.available.to_string().into(),
            levels.reserved.to_string().into(),
            levels.sold.to_string().into(),
            levels.written_off.to_string().into(),
            levels.received.to_string().into(),
            if product.listed { "yes" } else { "withdrawn" }.into(),
        ]);
    }
    crate::output::write(format_args!("{}", table.render(context.style)))
}

async fn audit(context: &Context, sku: Option<&str>) -> Result<(), CliError> {
    let client = operator(context).await?;
    let entries = client
        .audit(sku)
        .await
        .map_err(|error| context.fail(error))?;
    if context.global.json {
        return context.json(&entries);
    }
    let currency = shop_currency(context, &client).await?;
    let now = Timestamp::now();
    let mut table = Table::new(&[
        ("WHEN", Align::Left),
        ("OPERATOR", Align::Left),
        ("SKU", Align::Left),
        ("ACTION", Align::Left),
        ("CHANGES", Align::Left),
    ])
    .eliding(4);
    for entry in &entries {
        let mut changes: Vec<String> = entry
            .changes
            .iter()
            .map(|change| field(change, currency))
            .collect();
        if !entry.reason.is_empty() {
            changes.push(format!("reason \"{}\"", safe(&entry.reason)));
        }
        table.row(vec![
            context.clock.when(entry.at, now, true).into(),
            entry.operator.as_str().into(),
            entry.sku.as_str().into(),
            entry.action.as_str().into(),
            changes.join(", ").into(),
        ]);
    }
    crate::output::write(format_args!("{}", table.render(context.style)))?;
    if entries.is_empty() {
        eprintln!("shop: no change recorded yet");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_told_field_by_field_with_money_as_money() {
        let entry: AuditEntry = serde_json::from_value(serde_json::json!({
            "command_id": "6b1f3c2a-9d4e-5f60-8a7b-1c2d3e4f5a6b", "operator": "alice",
            "at": "2026-11-30T08:00:00.000Z", "sku": "SKU-002", "action": "update_product",
            "changes": [
                {"field": "unit_price", "old": 110000, "new": 99900},
                {"field": "name", "old": "iPhone 16", "new": "iPhone 16\u{1b}[31m"}
            ]
        }))
        .expect("an entry");
        let product: Product = serde_json::from_value(serde_json::json!({
            "sku": "SKU-002", "name": "iPhone 16", "unit_price": 99900, "currency": "EUR",
            "available": 8, "version": 4
        }))
        .expect("a product");
        let told = describe(&entry, &product);
        assert!(
            told.starts_with("changed SKU-002: unit_price 1,100.00 EUR → 999.00 EUR, name"),
            "{told}"
        );
        assert!(
            !told.contains('\u{1b}'),
            "shop text cannot drive the terminal: {told}"
        );
    }

    #[test]
    fn prices_are_read_exactly_in_the_shop_currency() {
        assert_eq!(parse_price("12.50", Currency::EUR).ok(), Some(1_250));
        let refused = parse_price("12.505", Currency::EUR).expect_err("too precise");
        assert_eq!(refused.exit, Exit::Usage);
        assert!(
            refused.message.starts_with("--price:"),
            "{}",
            refused.message
        );
    }
}
