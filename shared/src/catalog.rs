//! Running the catalogue: the changes an operator may make to products
//! while the shop runs, their limits, and the audit record each leaves.
//!
//! An operator sends a [`CatalogChange`] (protocol: `admin`); the gateway
//! checks it with [`CatalogChange::validate`] and hands it to the stock
//! service over the bus, which applies it at most once per idempotency key
//! and records an [`AuditEntry`]: who, when, what, the old and the new
//! value.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{MAX_SKU_LEN, is_valid_sku};
use crate::time::Timestamp;

/// Longest product name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest description, in characters (several lines of plain text).
pub const MAX_DESCRIPTION_CHARS: usize = 4_000;
/// Longest category, in characters.
pub const MAX_CATEGORY_CHARS: usize = 64;
/// Longest image URL, in bytes.
pub const MAX_IMAGE_URL_LEN: usize = 2_048;
/// Longest write-off reason, in characters.
pub const MAX_REASON_CHARS: usize = 200;
/// Most units a product may hold, and one restock or write-off may move.
pub const MAX_STOCK: i64 = 1_000_000_000;
/// Largest unit price, in minor units (ten billion EUR): order totals of
/// the largest orders still fit in `i64`.
pub const MAX_UNIT_PRICE: i64 = 1_000_000_000_000;
/// Longest operator name.
pub const MAX_OPERATOR_NAME_LEN: usize = 64;

/// One change an operator makes to the catalogue. In JSON an object whose
/// `action` names the variant, e.g.
/// `{"action":"restock","sku":"SKU-001","quantity":5}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum CatalogChange {
    /// A new product, listed at once with `stock` units (received).
    AddProduct {
        sku: String,
        name: String,
        #[serde(default)]
        description: String,
        #[serde(default)]
        category: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image_url: Option<String>,
        /// Price of one unit in minor units of the shop's currency.
        unit_price: i64,
        #[serde(default)]
        stock: i64,
    },
    /// Changes the fields given; the others stay. An empty `image_url`
    /// removes the image. Orders already reserved keep their prices.
    UpdateProduct {
        sku: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        category: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image_url: Option<String>,
        /// In minor units.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unit_price: Option<i64>,
    },
    /// Units received: available grows by `quantity`.
    Restock { sku: String, quantity: i64 },
    /// Units lost (breakage, theft): available shrinks by `quantity`, which
    /// may not exceed what is available.
    WriteOff {
        sku: String,
        quantity: i64,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    /// No new orders of the product; reserved orders keep their units.
    Withdraw { sku: String },
    /// A withdrawn product is sold again.
    Relist { sku: String },
}

/// Why a [`CatalogChange`] cannot be applied as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidChange(pub String);

impl CatalogChange {
    /// The product the change is about.
    pub fn sku(&self) -> &str {
        match self {
            CatalogChange::AddProduct { sku, .. }
            | CatalogChange::UpdateProduct { sku, .. }
            | CatalogChange::Restock { sku, .. }
            | CatalogChange::WriteOff { sku, .. }
            | CatalogChange::Withdraw { sku }
            | CatalogChange::Relist { sku } => sku,
        }
    }

    /// The `action` name, as in JSON.
    pub fn action(&self) -> &'static str {
        match self {
            CatalogChange::AddProduct { .. } => "add_product",
            CatalogChange::UpdateProduct { .. } => "update_product",
            CatalogChange::Restock { .. } => "restock",
            CatalogChange::WriteOff { .. } => "write_off",
            CatalogChange::Withdraw { .. } => "withdraw",
            CatalogChange::Relist { .. } => "relist",
        }
    }

    /// Checks every field against its limits, whatever the products are.
    ///
    /// # Errors
    ///
    /// [`InvalidChange`] naming the first field that breaks a rule: a sku
    /// that is not 1 to 64 letters, digits, `-`, `_` or `.`; an empty or
    /// too long name; a description, category or reason that is too long
    /// or holds control characters; an image URL that is not `http(s)://`;
    /// a price or quantity out of range; an update that changes nothing.
    pub fn validate(&self) -> Result<(), InvalidChange> {
        let sku = self.sku();
        if !is_valid_sku(sku) {
            return Err(InvalidChange(format!(
                "a sku is 1 to {MAX_SKU_LEN} letters, digits, '-', '_' or '.'"
            )));
        }
        match self {
            CatalogChange::AddProduct {
                name,
                description,
                category,
                image_url,
                unit_price,
                stock,
                ..
            } => {
                check_name(name)?;
                check_description(description)?;
                check_category(category)?;
                if let Some(url) = image_url {
                    check_image_url(url)?;
                }
                check_price(*unit_price)?;
                if !(0..=MAX_STOCK).contains(stock) {
                    return Err(InvalidChange(format!(
                        "stock must be between 0 and {MAX_STOCK}"
                    )));
                }
            }
            CatalogChange::UpdateProduct {
                name,
                description,
                category,
                image_url,
                unit_price,
                ..
            } => {
                if name.is_none()
                    && description.is_none()
                    && category.is_none()
                    && image_url.is_none()
                    && unit_price.is_none()
                {
                    return Err(InvalidChange(
                        "an update names at least one of name, description, category, image_url, unit_price".into(),
                    ));
                }
                if let Some(name) = name {
                    check_name(name)?;
                }
                if let Some(description) = description {
                    check_description(description)?;
                }
                if let Some(category) = category {
                    check_category(category)?;
                }
                if let Some(url) = image_url.as_deref().filter(|url| !url.is_empty()) {
                    check_image_url(url)?;
                }
                if let Some(price) = unit_price {
                    check_price(*price)?;
                }
            }
            CatalogChange::Restock { quantity, .. } => check_quantity(*quantity)?,
            CatalogChange::WriteOff {
                quantity, reason, ..
            } => {
                check_quantity(*quantity)?;
                if reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control)
                {
                    return Err(InvalidChange(format!(
                        "a reason is at most {MAX_REASON_CHARS} characters on one line"
                    )));
                }
            }
            CatalogChange::Withdraw { .. } | CatalogChange::Relist { .. } => {}
        }
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), InvalidChange> {
    let count = name.trim().chars().count();
    if count == 0 || count > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(InvalidChange(format!(
            "a name is 1 to {MAX_NAME_CHARS} characters on one line"
        )));
    }
    Ok(())
}

fn check_description(description: &str) -> Result<(), InvalidChange> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS
        || description
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(InvalidChange(format!(
            "a description is plain text of at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    Ok(())
}

fn check_category(category: &str) -> Result<(), InvalidChange> {
    if category.chars().count() > MAX_CATEGORY_CHARS || category.chars().any(char::is_control) {
        return Err(InvalidChange(format!(
            "a category is at most {MAX_CATEGORY_CHARS} characters on one line"
        )));
    }
    Ok(())
}

fn check_image_url(url: &str) -> Result<(), InvalidChange> {
    // Schemes are case-insensitive (RFC 3986, section 3.1).
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let scheme_ok = lower.starts_with("https://") || lower.starts_with("http://");
    if !scheme_ok
        || url.len() > MAX_IMAGE_URL_LEN
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(InvalidChange(format!(
            "an image URL is an http:// or https:// URL of at most {MAX_IMAGE_URL_LEN} bytes"
        )));
    }
    Ok(())
}

fn check_price(price: i64) -> Result<(), InvalidChange> {
    if !(0..=MAX_UNIT_PRICE).contains(&price) {
        return Err(InvalidChange(format!(
            "a unit price is between 0 and {MAX_UNIT_PRICE} minor units"
        )));
    }
    Ok(())
}

fn check_quantity(quantity: i64) -> Result<(), InvalidChange> {
    if !(1..=MAX_STOCK).contains(&quantity) {
        return Err(InvalidChange(format!(
            "a quantity is between 1 and {MAX_STOCK}"
        )));
    }
    Ok(())
}

/// Whether `name` may name an operator: 1 to 64 letters, digits, `-`,
/// `_`, `.` or `@`.
pub fn is_valid_operator_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_OPERATOR_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

/// One field a change set: its value before and after, as JSON (a string,
/// an integer in minor units or units, a boolean, or null for none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub old: serde_json::Value,
    pub new: serde_json::Value,
}

/// The record of one applied change: who made it, when, to what, and
/// every field's old and new value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Names the command: the same operator and idempotency key give the
    /// same id.
    pub command_id: Uuid,
    pub operator: String,
    pub at: Timestamp,
    pub sku: String,
    /// As [`CatalogChange::action`].
    pub action: String,
    pub changes: Vec<FieldChange>,
    /// The product's version after the change: orders the changes of one
    /// product however close in time.
    #[serde(default)]
    pub version: i64,
    /// Why units were written off, if the operator said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl fmt::Display for FieldChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} → {}", self.field, self.old, self.new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(sku: &str) -> CatalogChange {
        CatalogChange::UpdateProduct {
            sku: sku.into(),
            name: None,
            description: None,
            category: None,
            image_url: None,
            unit_price: Some(100),
        }
    }

    #[test]
    fn a_change_reads_from_json_with_its_action() {
        let change: CatalogChange =
            serde_json::from_str(r#"{"action":"restock","sku":"SKU-001","quantity":5}"#)
                .expect("a restock");
        assert_eq!(
            change,
            CatalogChange::Restock {
                sku: "SKU-001".into(),
                quantity: 5
            }
        );
        assert!(
            serde_json::from_str::<CatalogChange>(
                r#"{"action":"restock","sku":"A","quantity":5,"price":1}"#
            )
            .is_err(),
            "unknown fields are refused"
        );
        assert!(serde_json::from_str::<CatalogChange>(r#"{"action":"burn","sku":"A"}"#).is_err());
    }

    #[test]
    fn every_field_out_of_its_limits_is_refused_with_its_name() {
        let refused = |change: CatalogChange| change.validate().expect_err("refused").0;
        assert!(refused(update("A B")).contains("sku"));
        assert!(
            refused(CatalogChange::Restock {
                sku: "A".into(),
                quantity: 0
            })
            .contains("quantity")
        );
        assert!(
            refused(CatalogChange::WriteOff {
                sku: "A".into(),
                quantity: MAX_STOCK + 1,
                reason: String::new()
            })
            .contains("quantity")
        );
        let add = |name: &str, url: Option<&str>, price: i64| CatalogChange::AddProduct {
            sku: "NEW-1".into(),
            name: name.into(),
            description: "line one\nline two".into(),
            category: "Mugs".into(),
            image_url: url.map(str::to_owned),
            unit_price: price,
            stock: 3,
        };
        assert!(
            add("Mug", Some("https://example.com/mug.png"), 1_250)
                .validate()
                .is_ok()
        );
        assert!(refused(add("  ", None, 1)).contains("name"));
        assert!(refused(add("Mug", Some("javascript:alert(1)"), 1)).contains("image URL"));
        assert!(refused(add("Mug", None, -1)).contains("price"));
        assert!(refused(add("Mug", None, MAX_UNIT_PRICE + 1)).contains("price"));
        let nothing = CatalogChange::UpdateProduct {
            sku: "A".into(),
            name: None,
            description: None,
            category: None,
            image_url: None,
            unit_price: None,
        };
        assert!(refused(nothing).contains("at least one"));
    }

    #[test]
    fn operator_names_are_plain() {
        assert!(is_valid_operator_name("alice@shop"));
        assert!(!is_valid_operator_name(""));
        assert!(!is_valid_operator_name("alice smith"));
        assert!(!is_valid_operator_name(&"a".repeat(65)));
    }
}
