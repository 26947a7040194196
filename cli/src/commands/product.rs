//! `shop product SKU`: one product in full.

use super::Context;
use crate::error::CliError;
use crate::output::{out, safe};

pub(super) async fn product(context: &Context, sku: &str) -> Result<(), CliError> {
    let client = context.connect().await?;
    let products = client
        .products()
        .await
        .map_err(|error| context.fail(error))?;
    let Some(product) = products
        .into_iter()
        .find(|product| product.sku == sku.trim())
    else {
        return Err(CliError::usage(format!(
            "the shop sells no product {}; `shop products` lists them",
            safe(sku)
        )));
    };
    if context.global.json {
        return context.json(&product);
    }
    let style = context.style;
    out!(
        "{}  {}",
        style.bold(&safe(&product.sku)),
        style.bold(&safe(&product.name))
    )?;
    if !product.category.is_empty() {
        out!("category   {}", safe(&product.category))?;
    }
    out!("price      {}", product.currency.format(product.unit_price))?;
    if product.listed {
        out!("available  {}", product.available)?;
    } else {
        out!("available  withdrawn from sale: it takes no new orders")?;
    }
    if let Some(url) = &product.image_url {
        out!("image      {}", safe(url))?;
    }
    if !product.description.is_empty() {
        out!("")?;
        for line in product.description.lines() {
            out!("{}", safe(line))?;
        }
    }
    Ok(())
}
