//! `shop products`: the catalogue with live availability.

use super::Context;
use crate::error::CliError;
use crate::output::{Align, Table};

pub(super) async fn products(context: &Context) -> Result<(), CliError> {
    let client = context.connect().await?;
    let products = client
        .products()
        .await
        .map_err(|error| context.fail(error))?;
    if context.global.json {
        context.json(&products)?;
        return Ok(());
    }
    let mut table = Table::new(&[
        ("SKU", Align::Left),
        ("NAME", Align::Left),
        ("PRICE", Align::Right),
        ("AVAILABLE", Align::Right),
    ])
    .eliding(1);
    for product in &products {
        table.row(vec![
            product.sku.as_str().into(),
            product.name.as_str().into(),
            product.currency.format(product.unit_price).into(),
            product.available.to_string().into(),
        ]);
    }
    crate::output::write(format_args!("{}", table.render(context.style)))?;
    Ok(())
}
