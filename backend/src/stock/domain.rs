//! The stock service's domain, pure: products and their quantities, where
//! the service stands with each order (reserved, rejected, released, sold),
//! and the transitions between, tested without a database. The handler
//! loads a [`StockBook`] for a batch, applies the commands to it, and
//! writes back what changed.
//!
//! Units only move between available, reserved, sold and written off; only
//! a restock (or a new product's first stock) brings units in, so
//! `available + reserved + sold + written_off = received` for every
//! product, and no product ever has fewer than zero available or reserved.
//!
//! Operators change the catalogue through [`StockBook::change_catalog`]:
//! each change is decided here, with the audit record it leaves.

use std::collections::HashMap;
use std::str::FromStr;

use shop_shared::catalog::{AuditEntry, CatalogChange, FieldChange, MAX_STOCK};
use shop_shared::domain::{Product, StockLevels, UnknownName};
use shop_shared::events::{
    CatalogChangeRefused, CatalogChanged, CatalogOutcome, ChangeCatalog, LineItem, PricedLine,
    ProductEvent, ReserveStock, StockEvent, StockRejected, StockReserved,
};
use shop_shared::money::Currency;
use shop_shared::protocol::ErrorCode;
use shop_shared::time::Timestamp;
use uuid::Uuid;

/// A product with its quantities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductStock {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub image_url: Option<String>,
    /// Price of one unit, in minor units of `currency`.
    pub unit_price: i64,
    pub currency: Currency,
    /// Units that can be reserved.
    pub available: i64,
    /// Units held by unpaid orders.
    pub reserved: i64,
    pub sold: i64,
    pub written_off: i64,
    /// Every unit that came in: the first stock and every restock.
    pub received: i64,
    /// When an operator withdrew it; `None` while listed.
    pub withdrawn_at: Option<Timestamp>,
    /// Moves up with every change customers can see.
    pub version: i64,
}

impl ProductStock {
    /// The product as the bus carries it (customers get it without its
    /// stock levels).
    pub fn view(&self) -> Product {
        Product {
            sku: self.sku.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            category: self.category.clone(),
            image_url: self.image_url.clone(),
            unit_price: self.unit_price,
            currency: self.currency,
            available: self.available,
            listed: self.withdrawn_at.is_none(),
            stock: Some(StockLevels {
                reserved: self.reserved,
                sold: self.sold,
                written_off: self.written_off,
                received: self.received,
            }),
            version: self.version,
        }
    }
}

/// Where the stock service stands with one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStock {
    /// Its units are held.
    Reserved,
    /// There were not enough units; nothing was held.
    Rejected,
    /// Its units went back (or it was cancelled before a reservation came,
    /// which then is not taken).
    Released,
    /// Its units are sold.
    Committed,
}

impl OrderStock {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStock::Reserved => "RESERVED",
            OrderStock::Rejected => "REJECTED",
            OrderStock::Released => "RELEASED",
            OrderStock::Committed => "COMMITTED",
        }
    }
}

impl FromStr for OrderStock {
    type Err = UnknownName;
    fn from_str(text: &str) -> Result<Self, UnknownName> {
        match text {
            "RESERVED" => Ok(OrderStock::Reserved),
            "REJECTED" => Ok(OrderStock::Rejected),
            "RELEASED" => Ok(OrderStock::Released),
            "COMMITTED" => Ok(OrderStock::Committed),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

/// A change to one product's quantities: `available + reserved + sold +
/// written_off` moves by exactly `received`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
    pub written_off: i64,
    pub received: i64,
    /// How many visible changes (the version moves by this much).
    pub versions: i64,
}

/// One line of an order's reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub sku: String,
    pub quantity: i64,
    /// In minor units.
    pub unit_price: i64,
}

/// A message a transition causes.
#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    Stock(StockEvent),
    Product(ProductEvent),
    Catalog(CatalogOutcome),
}

/// What a reserve command came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveOutcome {
    Reserved,
    Rejected,
    /// The order was reserved, rejected or released before: at most once.
    AlreadyDecided,
}

/// A command that would break the stock's rules; the batch is not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StockError {
    #[error("order {order_id} holds units of {sku}, which is not in the catalogue")]
    UnknownProduct { order_id: Uuid, sku: String },
    #[error("order {order_id} moves more units of {sku} than there are")]
    NotEnoughUnits { order_id: Uuid, sku: String },
}

/// The products and orders one batch works on, changed in memory one
/// command at a time.
#[derive(Debug, Default)]
pub struct StockBook {
    products: HashMap<String, ProductStock>,
    states: HashMap<Uuid, OrderStock>,
    reservations: HashMap<Uuid, Vec<Reserved>>,
    /// Operator commands decided before (or earlier in this batch): the
    /// change as asked and what came of it.
    decided: HashMap<Uuid, (CatalogChange, CatalogOutcome)>,
    /// Skus whose descriptive fields changed, in the order they first did.
    described: Vec<String>,
    changes: Changes,
}

/// What a batch changed, to write back.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// Orders whose state changed, in the order they first changed.
    pub states: Vec<(Uuid, OrderStock)>,
    pub new_reservations: Vec<(Uuid, Reserved)>,
    /// Per product, by sku.
    pub deltas: Vec<(String, Delta)>,
    /// With the order each is about, in the order they happened.
    pub published: Vec<(Uuid, Published)>,
    /// Products operators added, as first stored.
    pub added: Vec<ProductStock>,
    /// Products whose descriptive fields (name, description, category,
    /// image, price, listing) operators changed, as the book ends with them.
    pub described: Vec<ProductStock>,
    /// Operator commands decided: the change as asked and what came of it.
    pub decided: Vec<(Uuid, CatalogChange, CatalogOutcome)>,
    /// Applied changes' audit records.
    pub audit: Vec<AuditEntry>,
}

impl StockBook {
    /// A book of `products` (by sku), the `states` of the orders the batch
    /// names, and the `reservations` of those that hold units.
    pub fn new(
        products: HashMap<String, ProductStock>,
        states: HashMap<Uuid, OrderStock>,
        reservations: HashMap<Uuid, Vec<Reserved>>,
    ) -> StockBook {
        StockBook {
            products,
            states,
            reservations,
            decided: HashMap::new(),
            described: Vec::new(),
            changes: Changes::default(),
        }
    }

    /// The book, knowing these operator commands decided before.
    pub fn with_decided(mut self, decided: HashMap<Uuid, (CatalogChange, CatalogOutcome)>) -> Self {
        self.decided = decided;
        self
    }

    /// Where the service stands with `order_id`, as changed so far.
    pub fn state(&self, order_id: Uuid) -> Option<OrderStock> {
        self.states.get(&order_id).copied()
    }

    /// A product as changed so far.
    pub fn product(&self, sku: &str) -> Option<&ProductStock> {
        self.products.get(sku)
    }

    /// Reserves every line of the order or none, at most once per order:
    /// an order seen before (reserved, rejected, or released before its
    /// reservation came) is left alone.
    pub fn reserve(&mut self, command: &ReserveStock) -> ReserveOutcome {
        let order_id = command.order_id;
        if self.states.contains_key(&order_id) {
            return ReserveOutcome::AlreadyDecided;
        }
        match decide(&command.lines, &self.products) {
            Reservation::Reject {
                unavailable,
                withdrawn,
            } => {
                self.set_state(order_id, OrderStock::Rejected);
                let event = StockEvent::StockRejected(StockRejected {
                    order_id,
                    unavailable,
                    withdrawn,
                });
                self.changes
                    .published
                    .push((order_id, Published::Stock(event)));
                ReserveOutcome::Rejected
            }
            Reservation::Accept {
                currency,
                mut lines,
            } => {
                self.set_state(order_id, OrderStock::Reserved);
                lines.sort_by(|a, b| a.sku.cmp(&b.sku));
                for line in &lines {
                    let taken = Delta {
                        available: -line.quantity,
                        reserved: line.quantity,
                        versions: 1,
                        ..Delta::default()
                    };
                    // The decision saw enough units of every line.
                    let _ = self.change(order_id, &line.sku, taken);
                    let reserved = Reserved {
                        sku: line.sku.clone(),
                        quantity: line.quantity,
                        unit_price: line.unit_price,
                    };
                    self.reservations
                        .entry(order_id)
                        .or_default()
                        .push(reserved.clone());
                    self.changes.new_reservations.push((order_id, reserved));
                }
                let event = StockEvent::StockReserved(StockReserved {
                    order_id,
                    currency,
                    lines,
                });
                self.changes
                    .published
                    .push((order_id, Published::Stock(event)));
                ReserveOutcome::Reserved
            }
        }
    }

    /// Gives an order's reserved units back. An order never reserved is
    /// marked released, so a reservation arriving late is not taken.
    /// Returns whether units went back.
    ///
    /// # Errors
    ///
    /// A reservation line names a product that is gone, or more units than
    /// it holds.
    pub fn release(&mut self, order_id: Uuid) -> Result<bool, StockError> {
        match self.states.get(&order_id) {
            Some(OrderStock::Reserved) => {}
            None => {
                self.set_state(order_id, OrderStock::Released);
                return Ok(false);
            }
            Some(_) => return Ok(false),
        }
        for line in self.held(order_id) {
            let back = Delta {
                available: line.quantity,
                reserved: -line.quantity,
                versions: 1,
                ..Delta::default()
            };
            self.change(order_id, &line.sku, back)?;
        }
        self.set_state(order_id, OrderStock::Released);
        Ok(true)
    }

    /// Turns an order's reserved units into sold ones; an order not
    /// reserved is left alone. Returns whether units were sold.
    ///
    /// # Errors
    ///
    /// As [`StockBook::release`].
    pub fn commit(&mut self, order_id: Uuid) -> Result<bool, StockError> {
        if self.states.get(&order_id) != Some(&OrderStock::Reserved) {
            return Ok(false);
        }
        for line in self.held(order_id) {
            let sold = Delta {
                reserved: -line.quantity,
                sold: line.quantity,
                versions: 1,
                ..Delta::default()
            };
            self.change(order_id, &line.sku, sold)?;
        }
        self.set_state(order_id, OrderStock::Committed);
        Ok(true)
    }

    /// Decides an operator's change and applies it to the book, at most
    /// once per command id: a command decided before is answered as then
    /// (the same change) or refused as `idempotency_key_reused` (another
    /// change), and changes nothing. `currency` is the shop's, for a new
    /// product; `now` stamps the audit record. A refusal changes nothing
    /// either; it is kept, so a retry gets the same answer.
    pub fn change_catalog(
        &mut self,
        command: &ChangeCatalog,
        currency: Currency,
        now: Timestamp,
    ) -> CatalogOutcome {
        let id = command.command_id;
        if let Some((asked, outcome)) = self.decided.get(&id) {
            let outcome = if *asked == command.change {
                outcome.clone().answering(command.attempt)
            } else {
                refused(
                    command,
                    ErrorCode::IdempotencyKeyReused,
                    "this idempotency key names an earlier change with other fields; use a new key for a new change",
                )
            };
            self.changes
                .published
                .push((id, Published::Catalog(outcome.clone())));
            return outcome;
        }
        let outcome = match self.apply_change(command, currency, now) {
            Ok(mut entry) => {
                let product = self
                    .products
                    .get(&entry.sku)
                    .map(ProductStock::view)
                    .unwrap_or_else(|| unreachable!("a change applied to a product in the book"));
                entry.version = product.version;
                self.changes.audit.push(entry.clone());
                CatalogOutcome::Changed(Box::new(CatalogChanged {
                    attempt: command.attempt,
                    entry,
                    product,
                }))
            }
            Err((code, message)) => refused(command, code, &message),
        };
        self.decided
            .insert(id, (command.change.clone(), outcome.clone()));
        self.changes
            .decided
            .push((id, command.change.clone(), outcome.clone()));
        self.changes
            .published
            .push((id, Published::Catalog(outcome.clone())));
        outcome
    }

    /// Applies one change; its audit record, or why it was refused.
    fn apply_change(
        &mut self,
        command: &ChangeCatalog,
        currency: Currency,
        now: Timestamp,
    ) -> Result<AuditEntry, (ErrorCode, String)> {
        let change = &command.change;
        change
            .validate()
            .map_err(|invalid| (ErrorCode::InvalidChange, invalid.0))?;
        let sku = change.sku().to_owned();
        let mut entry = AuditEntry {
            command_id: command.command_id,
            operator: command.operator.clone(),
            at: now,
            sku: sku.clone(),
            action: change.action().to_owned(),
            changes: Vec::new(),
            version: 0,
            reason: String::new(),
        };
        if let CatalogChange::AddProduct {
            name,
            description,
            category,
            image_url,
            unit_price,
            stock,
            ..
        } = change
        {
            if self.products.contains_key(&sku) {
                return Err((
                    ErrorCode::ProductExists,
                    format!(
                        "the shop has a product {sku} already; change it with update_product (shop admin set)"
                    ),
                ));
            }
            let product = ProductStock {
                sku: sku.clone(),
                name: name.trim().to_owned(),
                description: description.clone(),
                category: category.trim().to_owned(),
                image_url: image_url.clone(),
                unit_price: *unit_price,
                currency,
                available: *stock,
                reserved: 0,
                sold: 0,
                written_off: 0,
                received: *stock,
                withdrawn_at: None,
                version: 1,
            };
            entry.changes = vec![
                field("name", None::<String>, Some(&product.name)),
                field("description", None::<String>, Some(&product.description)),
                field("category", None::<String>, Some(&product.category)),
                field("image_url", None::<String>, product.image_url.as_ref()),
                field("unit_price", None::<i64>, Some(product.unit_price)),
                field("received", None::<i64>, Some(product.received)),
            ];
            entry.changes.retain(|change| change.old != change.new);
            self.changes.published.push((
                command.command_id,
                Published::Product(ProductEvent::ProductUpdated(product.view())),
            ));
            self.changes.added.push(product.clone());
            self.products.insert(sku, product);
            return Ok(entry);
        }
        let Some(product) = self.products.get_mut(&sku) else {
            return Err((
                ErrorCode::UnknownSku,
                format!("the shop has no product {sku}"),
            ));
        };
        let mut moved = Delta::default();
        let mut described = false;
        match change {
            CatalogChange::AddProduct { .. } => {}
            CatalogChange::UpdateProduct {
                name,
                description,
                category,
                image_url,
                unit_price,
                ..
            } => {
                if let Some(name) = name.as_deref().map(str::trim)
                    && name != product.name
                {
                    entry
                        .changes
                        .push(field("name", Some(&product.name), Some(name)));
                    product.name = name.to_owned();
                }
                if let Some(description) = description
                    && *description != product.description
                {
                    entry.changes.push(field(
                        "description",
                        Some(&product.description),
                        Some(description),
                    ));
                    product.description = description.clone();
                }
                if let Some(category) = category.as_deref().map(str::trim)
                    && category != product.category
                {
                    entry
                        .changes
                        .push(field("category", Some(&product.category), Some(category)));
                    product.category = category.to_owned();
                }
                if let Some(url) = image_url {
                    let url = (!url.is_empty()).then(|| url.clone());
                    if url != product.image_url {
                        entry.changes.push(field(
                            "image_url",
                            product.image_url.as_ref(),
                            url.as_ref(),
                        ));
                        product.image_url = url;
                    }
                }
                if let Some(price) = unit_price
                    && *price != product.unit_price
                {
                    entry
                        .changes
                        .push(field("unit_price", Some(product.unit_price), Some(*price)));
                    product.unit_price = *price;
                }
                described = !entry.changes.is_empty();
            }
            CatalogChange::Restock { quantity, .. } => {
                if product.available + quantity > MAX_STOCK {
                    return Err((
                        ErrorCode::InvalidChange,
                        format!(
                            "{sku} would have more than {MAX_STOCK} units available ({} now)",
                            product.available
                        ),
                    ));
                }
                entry.changes = vec![
                    field(
                        "available",
                        Some(product.available),
                        Some(product.available + quantity),
                    ),
                    field(
                        "received",
                        Some(product.received),
                        Some(product.received + quantity),
                    ),
                ];
                moved.available = *quantity;
                moved.received = *quantity;
            }
            CatalogChange::WriteOff {
                quantity, reason, ..
            } => {
                if *quantity > product.available {
                    return Err((
                        ErrorCode::NotEnoughStock,
                        format!(
                            "only {} units of {sku} are available to write off (reserved and sold units cannot be)",
                            product.available
                        ),
                    ));
                }
                entry.changes = vec![
                    field(
                        "available",
                        Some(product.available),
                        Some(product.available - quantity),
                    ),
                    field(
                        "written_off",
                        Some(product.written_off),
                        Some(product.written_off + quantity),
                    ),
                ];
                entry.reason = reason.trim().to_owned();
                moved.available = -quantity;
                moved.written_off = *quantity;
            }
            CatalogChange::Withdraw { .. } => {
                if product.withdrawn_at.is_none() {
                    entry.changes.push(field("listed", Some(true), Some(false)));
                    product.withdrawn_at = Some(now);
                    described = true;
                }
            }
            CatalogChange::Relist { .. } => {
                if product.withdrawn_at.is_some() {
                    entry.changes.push(field("listed", Some(false), Some(true)));
                    product.withdrawn_at = None;
                    described = true;
                }
            }
        }
        if entry.changes.is_empty() {
            return Ok(entry);
        }
        if described && !self.described.contains(&sku) {
            self.described.push(sku.clone());
        }
        moved.versions = 1;
        self.change(command.command_id, &sku, moved)
            .map_err(|error| (ErrorCode::Internal, error.to_string()))?;
        Ok(entry)
    }

    /// What changed, deltas in sku order (the order rows are updated in).
    pub fn into_changes(self) -> Changes {
        let mut changes = self.changes;
        changes.described = self
            .described
            .iter()
            .filter_map(|sku| self.products.get(sku).cloned())
            .collect();
        changes.deltas.sort_by(|(a, _), (b, _)| a.cmp(b));
        changes
    }

    fn held(&self, order_id: Uuid) -> Vec<Reserved> {
        self.reservations
            .get(&order_id)
            .cloned()
            .unwrap_or_default()
    }

    fn set_state(&mut self, order_id: Uuid, state: OrderStock) {
        if self.states.insert(order_id, state) == Some(state) {
            return;
        }
        match self
            .changes
            .states
            .iter_mut()
            .find(|(id, _)| *id == order_id)
        {
            Some(entry) => entry.1 = state,
            None => self.changes.states.push((order_id, state)),
        }
    }

    /// Moves units of `sku`, and sends the product's new snapshot when its
    /// version moved.
    fn change(&mut self, order_id: Uuid, sku: &str, moved: Delta) -> Result<(), StockError> {
        let Some(product) = self.products.get_mut(sku) else {
            return Err(StockError::UnknownProduct {
                order_id,
                sku: sku.to_owned(),
            });
        };
        if product.available + moved.available < 0 || product.reserved + moved.reserved < 0 {
            return Err(StockError::NotEnoughUnits {
                order_id,
                sku: sku.to_owned(),
            });
        }
        product.available += moved.available;
        product.reserved += moved.reserved;
        product.sold += moved.sold;
        product.written_off += moved.written_off;
        product.received += moved.received;
        product.version += moved.versions;
        if moved.versions != 0 {
            let view = product.view();
            self.changes.published.push((
                order_id,
                Published::Product(ProductEvent::ProductUpdated(view)),
            ));
        }
        let deltas = &mut self.changes.deltas;
        let index = match deltas.iter().position(|(known, _)| known == sku) {
            Some(index) => index,
            None => {
                deltas.push((sku.to_owned(), Delta::default()));
                deltas.len() - 1
            }
        };
        let delta = &mut deltas[index].1;
        delta.available += moved.available;
        delta.reserved += moved.reserved;
        delta.sold += moved.sold;
        delta.written_off += moved.written_off;
        delta.received += moved.received;
        delta.versions += moved.versions;
        Ok(())
    }
}

/// The refusal of `command`.
fn refused(command: &ChangeCatalog, code: ErrorCode, message: &str) -> CatalogOutcome {
    CatalogOutcome::Refused(CatalogChangeRefused {
        attempt: command.attempt,
        command_id: command.command_id,
        operator: command.operator.clone(),
        sku: command.change.sku().to_owned(),
        code,
        message: message.to_owned(),
    })
}

/// One field's old and new value in an audit record; `None` is null.
fn field<A: serde::Serialize, B: serde::Serialize>(
    name: &str,
    old: Option<A>,
    new: Option<B>,
) -> FieldChange {
    FieldChange {
        field: name.to_owned(),
        old: json(old),
        new: json(new),
    }
}

fn json<T: serde::Serialize>(value: Option<T>) -> serde_json::Value {
    value
        .and_then(|value| serde_json::to_value(value).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// What the stock service answers to a reservation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Every line can be reserved, at these prices.
    Accept {
        currency: Currency,
        lines: Vec<PricedLine>,
    },
    /// These skus are missing or have too few units, or were withdrawn
    /// from sale; nothing is reserved.
    Reject {
        unavailable: Vec<String>,
        withdrawn: Vec<String>,
    },
}

/// Decides on `lines` given the current `products` (by sku).
pub fn decide(lines: &[LineItem], products: &HashMap<String, ProductStock>) -> Reservation {
    let withdrawn: Vec<String> = lines
        .iter()
        .filter(|line| {
            products
                .get(&line.sku)
                .is_some_and(|product| product.withdrawn_at.is_some())
        })
        .map(|line| line.sku.clone())
        .collect();
    let unavailable: Vec<String> = lines
        .iter()
        .filter(|line| !withdrawn.contains(&line.sku))
        .filter(|line| {
            products
                .get(&line.sku)
                .is_none_or(|product| line.quantity <= 0 || product.available < line.quantity)
        })
        .map(|line| line.sku.clone())
        .collect();
    if !unavailable.is_empty() || !withdrawn.is_empty() {
        return Reservation::Reject {
            unavailable,
            withdrawn,
        };
    }
    let priced: Vec<PricedLine> = lines
        .iter()
        .filter_map(|line| {
            products.get(&line.sku).map(|product| PricedLine {
                sku: line.sku.clone(),
                name: product.name.clone(),
                quantity: line.quantity,
                unit_price: product.unit_price,
            })
        })
        .collect();
    let currency = lines
        .first()
        .and_then(|line| products.get(&line.sku))
        .map_or(Currency::EUR, |product| product.currency);
    if priced.iter().any(|line| {
        products
            .get(&line.sku)
            .is_some_and(|product| product.currency != currency)
    }) {
        // One order is paid in one currency; a mixed catalogue cannot sell
        // these products together.
        return Reservation::Reject {
            unavailable: lines.iter().map(|line| line.sku.clone()).collect(),
            withdrawn: Vec::new(),
        };
    }
    Reservation::Accept {
        currency,
        lines: priced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn products(stock: &[(&str, i64)]) -> HashMap<String, ProductStock> {
        stock
            .iter()
            .map(|(sku, available)| {
                (
                    (*sku).to_owned(),
                    ProductStock {
                        sku: (*sku).to_owned(),
                        name: format!("{sku} name"),
                        description: String::new(),
                        category: String::new(),
                        image_url: None,
                        unit_price: 1_000,
                        currency: Currency::EUR,
                        available: *available,
                        reserved: 0,
                        sold: 0,
                        written_off: 0,
                        received: *available,
                        withdrawn_at: None,
                        version: 1,
                    },
                )
            })
            .collect()
    }

    fn line(sku: &str, quantity: i64) -> LineItem {
        LineItem {
            sku: sku.into(),
            quantity,
        }
    }

    #[test]
    fn accepts_when_every_line_has_enough_units_and_prices_them() {
        let decision = decide(
            &[line("A", 2), line("B", 1)],
            &products(&[("A", 2), ("B", 5)]),
        );
        let Reservation::Accept { currency, lines } = decision else {
            panic!("{decision:?}")
        };
        assert_eq!(currency, Currency::EUR);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].unit_price, 1_000);
        assert_eq!(lines[1].name, "B name");
    }

    #[test]
    fn rejects_everything_when_one_line_is_short_and_names_it() {
        let decision = decide(
            &[line("A", 1), line("B", 6)],
            &products(&[("A", 2), ("B", 5)]),
        );
        assert_eq!(
            decision,
            Reservation::Reject {
                unavailable: vec!["B".into()],
                withdrawn: Vec::new(),
            }
        );
    }

    #[test]
    fn unknown_skus_and_non_positive_quantities_are_unavailable() {
        let decision = decide(&[line("Z", 1), line("A", 0)], &products(&[("A", 2)]));
        assert_eq!(
            decision,
            Reservation::Reject {
                unavailable: vec!["Z".into(), "A".into()],
                withdrawn: Vec::new(),
            }
        );
    }

    // The order's lifecycle in the book: given a state, when a command
    // comes, then these units move and these messages go.

    fn order(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn reserve_command(order_id: Uuid, lines: &[(&str, i64)]) -> ReserveStock {
        ReserveStock {
            order_id,
            lines: lines.iter().map(|(sku, n)| line(sku, *n)).collect(),
        }
    }

    /// A book holding products A (2 units) and B (5 units), and order 1
    /// with 1 A and 2 B reserved.
    fn book_with_order_one_reserved() -> StockBook {
        let mut products = products(&[("A", 1), ("B", 3)]);
        for (sku, held) in [("A", 1), ("B", 2)] {
            let product = products.get_mut(sku).expect("product");
            product.reserved = held;
            product.received += held;
        }
        StockBook::new(
            products,
            HashMap::from([(order(1), OrderStock::Reserved)]),
            HashMap::from([(
                order(1),
                vec![
                    Reserved {
                        sku: "A".into(),
                        quantity: 1,
                        unit_price: 1_000,
                    },
                    Reserved {
                        sku: "B".into(),
                        quantity: 2,
                        unit_price: 1_000,
                    },
                ],
            )]),
        )
    }

    fn units(book: &StockBook, sku: &str) -> (i64, i64, i64) {
        let product = book.product(sku).expect("product");
        (product.available, product.reserved, product.sold)
    }

    fn stock_events(changes: &Changes) -> Vec<&StockEvent> {
        changes
            .published
            .iter()
            .filter_map(|(_, published)| match published {
                Published::Stock(event) => Some(event),
                Published::Product(_) | Published::Catalog(_) => None,
            })
            .collect()
    }

    #[test]
    fn given_a_new_order_when_every_line_has_units_then_they_are_held_and_stock_reserved_goes_out()
    {
        let mut book = StockBook::new(
            products(&[("A", 2), ("B", 5)]),
            HashMap::new(),
            HashMap::new(),
        );
        let outcome = book.reserve(&reserve_command(order(7), &[("B", 2), ("A", 2)]));
        assert_eq!(outcome, ReserveOutcome::Reserved);
        assert_eq!(book.state(order(7)), Some(OrderStock::Reserved));
        assert_eq!(units(&book, "A"), (0, 2, 0));
        assert_eq!(units(&book, "B"), (3, 2, 0));
        let changes = book.into_changes();
        assert_eq!(changes.states, vec![(order(7), OrderStock::Reserved)]);
        assert_eq!(changes.new_reservations.len(), 2);
        let skus: Vec<&str> = changes.deltas.iter().map(|(sku, _)| sku.as_str()).collect();
        assert_eq!(skus, ["A", "B"], "rows are updated in sku order");
        let [StockEvent::StockReserved(reserved)] = stock_events(&changes)[..] else {
            panic!("one StockReserved: {:?}", changes.published)
        };
        let lines: Vec<(&str, i64)> = reserved
            .lines
            .iter()
            .map(|line| (line.sku.as_str(), line.quantity))
            .collect();
        assert_eq!(lines, [("A", 2), ("B", 2)]);
        let products = changes
            .published
            .iter()
            .filter(|(_, p)| matches!(p, Published::Product(_)))
            .count();
        assert_eq!(products, 2, "each product's new quantity is published");
    }

    #[test]
    fn given_a_new_order_when_a_line_is_short_then_nothing_is_held_and_stock_rejected_names_it() {
        let mut book = StockBook::new(
            products(&[("A", 2), ("B", 5)]),
            HashMap::new(),
            HashMap::new(),
        );
        let outcome = book.reserve(&reserve_command(order(7), &[("A", 1), ("B", 6)]));
        assert_eq!(outcome, ReserveOutcome::Rejected);
        assert_eq!(book.state(order(7)), Some(OrderStock::Rejected));
        assert_eq!(units(&book, "A"), (2, 0, 0));
        let changes = book.into_changes();
        assert!(changes.deltas.is_empty() && changes.new_reservations.is_empty());
        assert_eq!(
            stock_events(&changes),
            [&StockEvent::StockRejected(StockRejected {
                order_id: order(7),
                unavailable: vec!["B".into()],
                withdrawn: Vec::new(),
            })]
        );
    }

    #[test]
    fn given_a_reserved_order_when_reserve_comes_again_then_nothing_changes() {
        let mut book = book_with_order_one_reserved();
        let outcome = book.reserve(&reserve_command(order(1), &[("A", 1)]));
        assert_eq!(outcome, ReserveOutcome::AlreadyDecided);
        assert_eq!(units(&book, "A"), (1, 1, 0));
        assert_eq!(book.into_changes(), Changes::default());
    }

    #[test]
    fn given_a_reserved_order_when_released_then_its_units_are_available_again() {
        let mut book = book_with_order_one_reserved();
        assert_eq!(book.release(order(1)), Ok(true));
        assert_eq!(book.state(order(1)), Some(OrderStock::Released));
        assert_eq!(units(&book, "A"), (2, 0, 0));
        assert_eq!(units(&book, "B"), (5, 0, 0));
        let changes = book.into_changes();
        assert_eq!(changes.states, vec![(order(1), OrderStock::Released)]);
        assert!(stock_events(&changes).is_empty(), "the order service asked");
    }

    #[test]
    fn given_a_released_order_when_released_or_committed_again_then_nothing_changes() {
        let mut book = book_with_order_one_reserved();
        book.release(order(1)).expect("released");
        assert_eq!(book.release(order(1)), Ok(false));
        assert_eq!(book.commit(order(1)), Ok(false));
        assert_eq!(book.state(order(1)), Some(OrderStock::Released));
        assert_eq!(units(&book, "A"), (2, 0, 0));
    }

    #[test]
    fn given_an_unseen_order_when_released_then_a_late_reservation_is_not_taken() {
        let mut book = StockBook::new(products(&[("A", 2)]), HashMap::new(), HashMap::new());
        assert_eq!(book.release(order(9)), Ok(false));
        assert_eq!(book.state(order(9)), Some(OrderStock::Released));
        let outcome = book.reserve(&reserve_command(order(9), &[("A", 1)]));
        assert_eq!(outcome, ReserveOutcome::AlreadyDecided);
        assert_eq!(units(&book, "A"), (2, 0, 0));
        assert_eq!(
            book.into_changes().states,
            vec![(order(9), OrderStock::Released)]
        );
    }

    #[test]
    fn given_a_reserved_order_when_committed_then_its_units_are_sold() {
        let mut book = book_with_order_one_reserved();
        assert_eq!(book.commit(order(1)), Ok(true));
        assert_eq!(book.state(order(1)), Some(OrderStock::Committed));
        assert_eq!(units(&book, "A"), (1, 0, 1));
        assert_eq!(units(&book, "B"), (3, 0, 2));
        let changes = book.into_changes();
        let sold: Vec<i64> = changes
            .published
            .iter()
            .filter_map(|(_, published)| match published {
                Published::Product(ProductEvent::ProductUpdated(product)) => {
                    product.stock.map(|stock| stock.sold)
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            sold,
            [1, 2],
            "operators see the sale (the gateway tells customers nothing: available did not change)"
        );
        assert_eq!(changes.deltas[0].1.sold, 1);
    }

    #[test]
    fn given_a_sold_order_when_released_then_the_sale_stands() {
        let mut book = book_with_order_one_reserved();
        book.commit(order(1)).expect("sold");
        assert_eq!(book.release(order(1)), Ok(false));
        assert_eq!(units(&book, "B"), (3, 0, 2));
    }

    #[test]
    fn given_a_rejected_order_when_committed_then_nothing_is_sold() {
        let mut book = StockBook::new(
            products(&[("A", 2)]),
            HashMap::from([(order(3), OrderStock::Rejected)]),
            HashMap::new(),
        );
        assert_eq!(book.commit(order(3)), Ok(false));
        assert_eq!(book.state(order(3)), Some(OrderStock::Rejected));
        assert_eq!(book.into_changes(), Changes::default());
    }

    #[test]
    fn given_a_reservation_of_a_product_that_is_gone_when_released_then_it_is_an_error() {
        let mut book = StockBook::new(
            HashMap::new(),
            HashMap::from([(order(4), OrderStock::Reserved)]),
            HashMap::from([(
                order(4),
                vec![Reserved {
                    sku: "GONE".into(),
                    quantity: 1,
                    unit_price: 1,
                }],
            )]),
        );
        assert_eq!(
            book.release(order(4)),
            Err(StockError::UnknownProduct {
                order_id: order(4),
                sku: "GONE".into()
            })
        );
    }

    #[test]
    fn given_fewer_reserved_units_than_a_reservation_holds_when_released_then_it_is_an_error() {
        let mut book = book_with_order_one_reserved();
        book.products.get_mut("B").expect("B").reserved = 1;
        assert_eq!(
            book.release(order(1)),
            Err(StockError::NotEnoughUnits {
                order_id: order(1),
                sku: "B".into()
            })
        );
    }

    #[test]
    fn order_states_are_stored_by_their_names() {
        for state in [
            OrderStock::Reserved,
            OrderStock::Rejected,
            OrderStock::Released,
            OrderStock::Committed,
        ] {
            assert_eq!(state.as_str().parse::<OrderStock>(), Ok(state));
        }
        assert!("SOLD".parse::<OrderStock>().is_err());
    }

    fn operator(n: u128, change: CatalogChange) -> ChangeCatalog {
        ChangeCatalog {
            command_id: Uuid::from_u128(n),
            attempt: Uuid::from_u128(1_000 + n),
            operator: "alice".into(),
            change,
        }
    }

    fn conserved(product: &ProductStock) -> bool {
        product.available + product.reserved + product.sold + product.written_off
            == product.received
    }

    fn refusal_code(outcome: &CatalogOutcome) -> Option<ErrorCode> {
        match outcome {
            CatalogOutcome::Refused(refused) => Some(refused.code),
            CatalogOutcome::Changed(_) => None,
        }
    }

    #[test]
    fn given_a_product_when_restocked_and_written_off_then_units_are_conserved_and_audited() {
        let mut book = book_with_order_one_reserved();
        let now = Timestamp::from_millis(5_000);
        let restock = operator(
            10,
            CatalogChange::Restock {
                sku: "B".into(),
                quantity: 7,
            },
        );
        let CatalogOutcome::Changed(changed) = book.change_catalog(&restock, Currency::EUR, now)
        else {
            panic!("restocked")
        };
        assert_eq!(changed.entry.operator, "alice");
        assert_eq!(changed.entry.at, now);
        assert_eq!(
            changed.entry.changes[0],
            FieldChange {
                field: "available".into(),
                old: 3.into(),
                new: 10.into()
            }
        );
        let write_off = operator(
            11,
            CatalogChange::WriteOff {
                sku: "B".into(),
                quantity: 4,
                reason: "dropped".into(),
            },
        );
        let outcome = book.change_catalog(&write_off, Currency::EUR, now);
        assert_eq!(refusal_code(&outcome), None);
        let product = book.product("B").expect("B");
        assert_eq!((product.available, product.written_off), (6, 4));
        assert!(conserved(product), "{product:?}");
        let changes = book.into_changes();
        assert_eq!(changes.audit.len(), 2);
        assert_eq!(changes.audit[1].reason, "dropped");
        assert_eq!(changes.decided.len(), 2);
    }

    #[test]
    fn a_write_off_of_more_than_is_available_is_refused_and_changes_nothing() {
        let mut book = book_with_order_one_reserved();
        let before = book.product("B").cloned();
        // B has 3 available and 2 reserved: reserved units cannot go.
        let outcome = book.change_catalog(
            &operator(
                12,
                CatalogChange::WriteOff {
                    sku: "B".into(),
                    quantity: 4,
                    reason: String::new(),
                },
            ),
            Currency::EUR,
            Timestamp::from_millis(1),
        );
        assert_eq!(refusal_code(&outcome), Some(ErrorCode::NotEnoughStock));
        assert_eq!(book.product("B").cloned(), before);
        let changes = book.into_changes();
        assert!(changes.deltas.is_empty() && changes.audit.is_empty());
        assert_eq!(changes.decided.len(), 1, "the refusal is kept for a retry");
    }

    #[test]
    fn the_same_command_again_applies_once_and_another_change_under_its_key_is_refused() {
        let mut book = book_with_order_one_reserved();
        let restock = operator(
            13,
            CatalogChange::Restock {
                sku: "B".into(),
                quantity: 5,
            },
        );
        let first = book.change_catalog(&restock, Currency::EUR, Timestamp::from_millis(1));
        let retry = ChangeCatalog {
            attempt: Uuid::from_u128(99),
            ..restock.clone()
        };
        let again = book.change_catalog(&retry, Currency::EUR, Timestamp::from_millis(2));
        assert_eq!(
            again,
            first.clone().answering(retry.attempt),
            "answered the same, to the retry"
        );
        assert_eq!(
            book.product("B").map(|p| p.available),
            Some(8),
            "applied once"
        );
        let other = operator(
            13,
            CatalogChange::Restock {
                sku: "B".into(),
                quantity: 6,
            },
        );
        let refused = book.change_catalog(&other, Currency::EUR, Timestamp::from_millis(3));
        assert_eq!(
            refusal_code(&refused),
            Some(ErrorCode::IdempotencyKeyReused)
        );
        assert_eq!(book.product("B").map(|p| p.available), Some(8));
    }

    #[test]
    fn a_price_change_leaves_reserved_orders_at_their_price_and_withdrawal_stops_new_ones() {
        let mut book = book_with_order_one_reserved();
        let reprice = operator(
            14,
            CatalogChange::UpdateProduct {
                sku: "A".into(),
                name: None,
                description: None,
                category: None,
                image_url: None,
                unit_price: Some(2_500),
            },
        );
        book.change_catalog(&reprice, Currency::EUR, Timestamp::from_millis(1));
        assert_eq!(book.product("A").map(|p| p.unit_price), Some(2_500));
        assert_eq!(
            book.held(order(1)).first().map(|line| line.unit_price),
            Some(1_000),
            "the reserved order keeps the price it was reserved at"
        );
        let withdraw = operator(15, CatalogChange::Withdraw { sku: "A".into() });
        book.change_catalog(&withdraw, Currency::EUR, Timestamp::from_millis(2));
        assert!(!book.product("A").expect("A").view().listed);
        let outcome = book.reserve(&reserve_command(order(2), &[("A", 1)]));
        assert_eq!(
            outcome,
            ReserveOutcome::Rejected,
            "a withdrawn product takes no order"
        );
        assert!(
            book.release(order(1)).expect("released"),
            "the reserved order is left alone"
        );
        let changes = book.into_changes();
        assert_eq!(
            changes
                .described
                .iter()
                .map(|p| p.sku.as_str())
                .collect::<Vec<_>>(),
            ["A"]
        );
        assert!(
            stock_events(&changes).contains(&&StockEvent::StockRejected(StockRejected {
                order_id: order(2),
                unavailable: Vec::new(),
                withdrawn: vec!["A".into()],
            })),
            "the rejection names the withdrawal, not a shortage"
        );
    }

    #[test]
    fn an_added_product_is_new_and_a_second_add_of_its_sku_is_refused() {
        let mut book = StockBook::new(products(&[]), HashMap::new(), HashMap::new());
        let add = |n: u128| {
            operator(
                n,
                CatalogChange::AddProduct {
                    sku: "MUG".into(),
                    name: "Mug".into(),
                    description: String::new(),
                    category: "Kitchen".into(),
                    image_url: None,
                    unit_price: 1_250,
                    stock: 4,
                },
            )
        };
        let CatalogOutcome::Changed(changed) =
            book.change_catalog(&add(16), Currency::EUR, Timestamp::from_millis(1))
        else {
            panic!("added")
        };
        assert_eq!(changed.product.available, 4);
        assert_eq!(changed.product.category, "Kitchen");
        assert!(conserved(book.product("MUG").expect("MUG")));
        let second = book.change_catalog(&add(17), Currency::EUR, Timestamp::from_millis(2));
        assert_eq!(refusal_code(&second), Some(ErrorCode::ProductExists));
        let unknown = book.change_catalog(
            &operator(18, CatalogChange::Relist { sku: "NOPE".into() }),
            Currency::EUR,
            Timestamp::from_millis(3),
        );
        assert_eq!(refusal_code(&unknown), Some(ErrorCode::UnknownSku));
        assert_eq!(book.into_changes().added.len(), 1);
    }
}
