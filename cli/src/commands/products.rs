//! `shop products`: the catalogue with live availability, optionally of
//! one category or matching a text.

use shop_shared::domain::Product;

use super::Context;
use crate::error::CliError;
use crate::output::{Align, Table};

pub(super) async fn products(
    context: &Context,
    category: Option<&str>,
    search: Option<&str>,
) -> Result<(), CliError> {
    let client = context.connect().await?;
    let products: Vec<Product> = client
        .products()
        .await
        .map_err(|error| context.fail(error))?
        .into_iter()
        .filter(|product| matches(product, category, search))
        .collect();
    if context.global.json {
        context.json(&products)?;
        return Ok(());
    }
    let mut table = Table::new(&[
        ("SKU", Align::Left),
        ("NAME", Align::Left),
        ("CATEGORY", Align::Left),
        ("PRICE", Align::Right),
        ("AVAILABLE", Align::Right),
    ])
    .eliding(1);
    for product in &products {
        let available = if product.listed {
            product.available.to_string()
        } else {
            "withdrawn".to_owned()
        };
        table.row(vec![
            product.sku.as_str().into(),
            product.name.as_str().into(),
            product.category.as_str().into(),
            product.currency.format(product.unit_price).into(),
            available.into(),
        ]);
    }
    crate::output::write(format_args!("{}", table.render(context.style)))?;
    if products.is_empty() && (category.is_some() || search.is_some()) {
        eprintln!("shop: no product matches; `shop products` lists them all");
    }
    Ok(())
}

/// Whether `product` is of `category` and contains `search` in its sku,
/// name or description, both ignoring case; a filter not given matches.
pub fn matches(product: &Product, category: Option<&str>, search: Option<&str>) -> bool {
    let of_category = category.is_none_or(|category| {
        product.category.trim().to_lowercase() == category.trim().to_lowercase()
    });
    let found = search.is_none_or(|text| {
        let text = text.to_lowercase();
        [&product.sku, &product.name, &product.description]
            .iter()
            .any(|field| field.to_lowercase().contains(&text))
    });
    of_category && found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_category_and_text_ignoring_case() {
        let product: Product = serde_json::from_value(serde_json::json!({
            "sku": "SKU-001", "name": "MacBook Pro", "category": "Laptops",
            "description": "Space black.", "unit_price": 450000, "currency": "EUR",
            "available": 10, "version": 1
        }))
        .expect("a product");
        assert!(matches(&product, None, None));
        assert!(matches(&product, Some("laptops"), Some("PRO")));
        assert!(matches(&product, None, Some("black")), "in the description");
        assert!(!matches(&product, Some("Phones"), None));
        assert!(!matches(&product, Some("Laptops"), Some("air")));
    }
}
