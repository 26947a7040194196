//! The catalogue the stock service seeds on first start: the reference
//! shop's three products, or a TOML file such as
//!
//! ```toml
//! currency = "EUR"
//!
//! [[products]]
//! sku = "SKU-001"
//! name = "MacBook Pro"
//! price = "4500.00"   # a decimal string: prices are never floats
//! stock = 10
//! # optional:
//! description = """
//! Apple M4 Pro, 24 GB.
//! Space black."""
//! category = "Laptops"
//! image_url = "https://example.com/mbp.png"
//! ```
//!
//! The file seeds a new shop only: once the shop has products, operators
//! change them (`shop admin`) and the file is not read again.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;
use shop_shared::catalog::CatalogChange;
pub use shop_shared::catalog::{MAX_STOCK, MAX_UNIT_PRICE};
use shop_shared::domain::{MAX_SKU_LEN, is_valid_sku};
use shop_shared::money::Currency;

use super::domain::ProductStock;

/// A product to seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogProduct {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub image_url: Option<String>,
    /// Price of one unit, in minor units of `currency`.
    pub unit_price: i64,
    pub currency: Currency,
    pub stock: i64,
}

impl From<&CatalogProduct> for ProductStock {
    /// The product as a new shop first holds it: its whole stock received
    /// and available, listed, at version 1.
    fn from(product: &CatalogProduct) -> ProductStock {
        ProductStock {
            sku: product.sku.clone(),
            name: product.name.clone(),
            description: product.description.clone(),
            category: product.category.clone(),
            image_url: product.image_url.clone(),
            unit_price: product.unit_price,
            currency: product.currency,
            available: product.stock,
            reserved: 0,
            sold: 0,
            written_off: 0,
            received: product.stock,
            withdrawn_at: None,
            version: 1,
        }
    }
}

/// Why a catalogue file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Shown with its cause, as anyhow's alternate form prints chains.
    #[error("cannot read catalogue {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("catalogue {path} is not valid: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    currency: String,
    products: Vec<ProductEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductEntry {
    sku: String,
    name: String,
    price: toml::Value,
    stock: i64,
    #[serde(default)]
    description: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    image_url: Option<String>,
}

/// The reference shop: three products, ten of each.
pub fn default_catalog() -> Vec<CatalogProduct> {
    [
        (
            "SKU-001",
            "MacBook Pro",
            "Laptops",
            "14-inch, Apple M4 Pro, 24 GB memory, 512 GB storage.\nSpace black.",
            450_000,
        ),
        (
            "SKU-002",
            "iPhone 16",
            "Phones",
            "6.1-inch display, 128 GB.\nUltramarine.",
            110_000,
        ),
        (
            "SKU-003",
            "MacBook Air",
            "Laptops",
            "13-inch, Apple M3, 16 GB memory, 256 GB storage.\nMidnight.",
            150_000,
        ),
    ]
    .into_iter()
    .map(
        |(sku, name, category, description, unit_price)| CatalogProduct {
            sku: sku.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
            category: category.to_owned(),
            image_url: None,
            unit_price,
            currency: Currency::EUR,
            stock: 10,
        },
    )
    .collect()
}

/// Reads and checks a catalogue file.
///
/// # Errors
///
/// [`CatalogError`]: the file cannot be read, or its text is not a valid
/// catalogue (the message names the entry).
pub fn load(path: &Path) -> Result<Vec<CatalogProduct>, CatalogError> {
    let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text).map_err(|message| CatalogError::Invalid {
        path: path.display().to_string(),
        message,
    })
}

/// Parses and checks catalogue text.
///
/// # Errors
///
/// A message naming the first problem: not TOML, no products, or an entry whose
/// sku, name, price, currency or stock breaks a rule.
pub fn parse(text: &str) -> Result<Vec<CatalogProduct>, String> {
    let file: CatalogFile = toml::from_str(text).map_err(|error| error.to_string())?;
    let currency = Currency::new(&file.currency).map_err(|error| error.to_string())?;
    if file.products.is_empty() {
        return Err("it lists no products; add at least one [[products]] table".into());
    }
    let mut seen = HashSet::new();
    let mut products = Vec::with_capacity(file.products.len());
    for (index, entry) in file.products.into_iter().enumerate() {
        let at = format!("product {} ({:?})", index + 1, entry.sku);
        if !is_valid_sku(&entry.sku) {
            return Err(format!(
                "{at}: a sku is 1 to {MAX_SKU_LEN} letters, digits, '-', '_' or '.'"
            ));
        }
        if !seen.insert(entry.sku.clone()) {
            return Err(format!("{at}: the sku appears twice"));
        }
        let name = entry.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(format!("{at}: a name has 1 to 200 characters"));
        }
        let unit_price = match &entry.price {
            toml::Value::String(text) => currency
                .parse_amount(text)
                .map_err(|error| format!("{at}: {error}"))?,
            toml::Value::Integer(_) | toml::Value::Float(_) => {
                return Err(format!(
                    "{at}: write the price as a string such as price = \"4500.00\", so it is never rounded"
                ));
            }
            _ => return Err(format!("{at}: price must be a string such as \"4500.00\"")),
        };
        if unit_price > MAX_UNIT_PRICE {
            return Err(format!(
                "{at}: price is above the largest allowed, {}",
                currency.format(MAX_UNIT_PRICE)
            ));
        }
        if !(0..=MAX_STOCK).contains(&entry.stock) {
            return Err(format!("{at}: stock must be between 0 and {MAX_STOCK}"));
        }
        // The rules of an operator adding it, but for the name, which the
        // file may spell with any characters (clients show shop text safely,
        // and the tests seed hostile names to prove it).
        CatalogChange::AddProduct {
            sku: entry.sku.clone(),
            name: "-".to_owned(),
            description: entry.description.clone(),
            category: entry.category.clone(),
            image_url: entry.image_url.clone(),
            unit_price,
            stock: entry.stock,
        }
        .validate()
        .map_err(|invalid| format!("{at}: {invalid}"))?;
        products.push(CatalogProduct {
            sku: entry.sku,
            name: name.to_owned(),
            description: entry.description,
            category: entry.category.trim().to_owned(),
            image_url: entry.image_url,
            unit_price,
            currency,
            stock: entry.stock,
        });
    }
    Ok(products)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catalog_is_the_reference_shop() {
        let products = default_catalog();
        assert_eq!(products.len(), 3);
        assert_eq!(products[0].sku, "SKU-001");
        assert_eq!(products[0].name, "MacBook Pro");
        assert_eq!(products[0].unit_price, 450_000);
        assert!(
            products
                .iter()
                .all(|p| p.stock == 10 && p.currency == Currency::EUR)
        );
    }

    #[test]
    fn parses_a_catalogue_file_with_exact_prices() {
        let products = parse(
            r#"
            currency = "EUR"
            [[products]]
            sku = "MUG-1"
            name = "Mug"
            price = "12.50"
            stock = 40
            "#,
        )
        .expect("valid");
        assert_eq!(products[0].unit_price, 1_250);
        assert_eq!(products[0].stock, 40);
    }

    #[test]
    fn refuses_catalogues_that_would_corrupt_the_shop() {
        let product = |sku: &str, price: &str, stock: i64| {
            format!(
                "[[products]]\nsku = \"{sku}\"\nname = \"X\"\nprice = {price}\nstock = {stock}\n"
            )
        };
        let cases = [
            (
                format!("currency = \"EUR\"\n{}", product("A", "12.5", 1)),
                "string",
            ),
            (
                format!("currency = \"EUR\"\n{}", product("A", "\"1.999\"", 1)),
                "at most 2 decimals",
            ),
            (
                format!("currency = \"EUR\"\n{}", product("A B", "\"1\"", 1)),
                "sku",
            ),
            (
                format!("currency = \"EUR\"\n{}", product("A", "\"1\"", -1)),
                "stock",
            ),
            (
                format!(
                    "currency = \"EUR\"\n{}{}",
                    product("A", "\"1\"", 1),
                    product("A", "\"1\"", 1)
                ),
                "twice",
            ),
            (
                "currency = \"EUR\"\nproducts = []".to_owned(),
                "no products",
            ),
            ("currency = \"EURO\"\nproducts = []".to_owned(), "currency"),
        ];
        for (text, expected) in cases {
            let error = parse(&text).expect_err("refused");
            assert!(
                error.contains(expected),
                "{error:?} should mention {expected:?}"
            );
        }
    }
}
