//! The gateway's in-memory read models of products and orders, built from
//! the compacted state topics (`products.v1`, `orders.v1`), and the
//! channels that push their changes to connected customers.
//!
//! A gateway replays those topics from the start when it starts, so it
//! holds the current state after any restart; snapshots carry versions, so
//! a redelivered or older snapshot changes nothing.
//!
//! A customer's change channel lives only while something listens to it (a
//! connection, a command awaiting its order, a return page's event
//! stream): the last [`CustomerChanges`] dropped removes it, so customers
//! who said hello and left cost nothing.

use shop_shared::sync::{lock, read, write};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use shop_shared::domain::{Order, Product};
use shop_shared::events::{Envelope, OrderEvent, OrderState, ProductEvent, topic};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::bus::{Handler, HandlerError, Record};

/// How many changes a slow connection may fall behind before it is resent
/// the whole state instead.
const CHANNEL_CAPACITY: usize = 1024;

/// Products and orders as clients see them. Cheap to clone.
#[derive(Clone)]
pub struct ReadModel {
    inner: Arc<Inner>,
}

struct Inner {
    products: RwLock<BTreeMap<String, Product>>,
    orders: RwLock<HashMap<Uuid, Arc<OrderState>>>,
    by_customer: RwLock<HashMap<Uuid, Vec<Uuid>>>,
    product_changes: broadcast::Sender<Product>,
    customer_changes: Mutex<HashMap<Uuid, broadcast::Sender<Arc<OrderState>>>>,
}

impl Default for ReadModel {
    fn default() -> Self {
        ReadModel {
            inner: Arc::new(Inner {
                products: RwLock::default(),
                orders: RwLock::default(),
                by_customer: RwLock::default(),
                product_changes: broadcast::channel(CHANNEL_CAPACITY).0,
                customer_changes: Mutex::default(),
            }),
        }
    }
}

impl ReadModel {
    /// Every product, by sku.
    pub fn products(&self) -> Vec<Product> {
        read(&self.inner.products).values().cloned().collect()
    }

    pub fn product(&self, sku: &str) -> Option<Product> {
        read(&self.inner.products).get(sku).cloned()
    }

    pub fn order(&self, id: Uuid) -> Option<Arc<OrderState>> {
        read(&self.inner.orders).get(&id).cloned()
    }

    /// `customer_id`'s order `id`; another customer's order is `None`, as if
    /// it did not exist.
    pub fn customer_order(&self, customer_id: Uuid, id: Uuid) -> Option<Arc<OrderState>> {
        self.order(id)
            .filter(|state| state.customer_id == customer_id)
    }

    /// `customer_id`'s orders, newest first.
    pub fn customer_orders(&self, customer_id: Uuid) -> Vec<Order> {
        let ids = read(&self.inner.by_customer)
            .get(&customer_id)
            .cloned()
            .unwrap_or_default();
        let orders = read(&self.inner.orders);
        let mut list: Vec<Order> = ids
            .iter()
            .filter_map(|id| orders.get(id).map(|state| state.order.clone()))
            .collect();
        list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        list
    }

    /// Units of `customer_id`'s unpaid (`NEW` or `RESERVED`) orders: what
    /// the customer holds against the hold limit.
    pub fn held_units(&self, customer_id: Uuid) -> u64 {
        // One lock at a time: `apply_order` takes them in the other order.
        let ids = read(&self.inner.by_customer)
            .get(&customer_id)
            .cloned()
            .unwrap_or_default();
        let orders = read(&self.inner.orders);
        ids.iter()
            .filter_map(|id| orders.get(id))
            .filter(|state| !state.order.status.is_final())
            .flat_map(|state| &state.order.lines)
            .map(|line| u64::try_from(line.quantity).unwrap_or(0))
            .sum()
    }

    /// Changes of any product from now on.
    pub fn product_changes(&self) -> broadcast::Receiver<Product> {
        self.inner.product_changes.subscribe()
    }

    /// Changes of `customer_id`'s orders from now on, until dropped.
    pub fn customer_changes(&self, customer_id: Uuid) -> CustomerChanges {
        let receiver = lock(&self.inner.customer_changes)
            .entry(customer_id)
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe();
        CustomerChanges {
            receiver,
            _channel: ChannelUse {
                inner: self.inner.clone(),
                customer_id,
            },
        }
    }

    /// Customers with a change channel: those someone listens for now.
    pub fn customer_channels(&self) -> usize {
        lock(&self.inner.customer_changes).len()
    }

    /// Takes a product snapshot unless an equal or newer one is known.
    pub fn apply_product(&self, product: Product) {
        {
            let mut products = write(&self.inner.products);
            if products
                .get(&product.sku)
                .is_some_and(|known| known.version >= product.version)
            {
                return;
            }
            products.insert(product.sku.clone(), product.clone());
        }
        let _ = self.inner.product_changes.send(product);
    }

    /// Takes an order snapshot unless an equal or newer one is known.
    pub fn apply_order(&self, state: OrderState) {
        let state = Arc::new(state);
        let id = state.order.id;
        {
            let mut orders = write(&self.inner.orders);
            match orders.get(&id) {
                Some(known) if known.order.version >= state.order.version => return,
                Some(_) => {}
                None => write(&self.inner.by_customer)
                    .entry(state.customer_id)
                    .or_default()
                    .push(id),
            }
            orders.insert(id, state.clone());
        }
        if let Some(channel) = lock(&self.inner.customer_changes).get(&state.customer_id) {
            let _ = channel.send(state);
        }
    }
}

/// A subscription to one customer's order changes; the customer's channel
/// goes with the last one dropped.
pub struct CustomerChanges {
    // Fields drop in order: the receiver first, so that `ChannelUse` sees
    // whether any other remains.
    receiver: broadcast::Receiver<Arc<OrderState>>,
    _channel: ChannelUse,
}

impl CustomerChanges {
    /// The next change, as [`broadcast::Receiver::recv`] gives it.
    ///
    /// # Errors
    ///
    /// `Lagged` when this subscriber fell more than the channel's capacity
    /// behind (the missed changes are gone; read the current state),
    /// `Closed` when the read model is gone.
    pub async fn recv(&mut self) -> Result<Arc<OrderState>, broadcast::error::RecvError> {
        self.receiver.recv().await
    }

    #[cfg(test)]
    fn try_recv(&mut self) -> Result<Arc<OrderState>, broadcast::error::TryRecvError> {
        self.receiver.try_recv()
    }
}

/// Removes a customer's channel when its last receiver is gone.
struct ChannelUse {
    inner: Arc<Inner>,
    customer_id: Uuid,
}

impl Drop for ChannelUse {
    fn drop(&mut self) {
        // Subscribing happens under this lock too, so no receiver can be
        // added between the count and the removal.
        let mut channels = lock(&self.inner.customer_changes);
        if channels
            .get(&self.customer_id)
            .is_some_and(|channel| channel.receiver_count() == 0)
        {
            channels.remove(&self.customer_id);
        }
    }
}

/// Feeds the read model from the state topics.
pub struct ReadModelHandler {
    pub model: ReadModel,
}

#[async_trait]
impl Handler for ReadModelHandler {
    async fn handle(&self, batch: &[Arc<Record>]) -> Result<(), HandlerError> {
        for record in batch {
            match &*record.topic {
                topic::ORDERS => {
                    let OrderEvent::OrderUpdated(state) =
                        Envelope::<OrderEvent>::from_json(&record.payload)?.message;
                    self.model.apply_order(state);
                }
                topic::PRODUCTS => {
                    let ProductEvent::ProductUpdated(product) =
                        Envelope::<ProductEvent>::from_json(&record.payload)?.message;
                    self.model.apply_product(product);
                }
                other => {
                    return Err(HandlerError::Malformed(format!(
                        "the gateway does not read {other}"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use shop_shared::domain::OrderStatus;
    use shop_shared::money::Currency;
    use shop_shared::time::Timestamp;

    use super::*;

    fn product(version: i64, available: i64) -> Product {
        Product {
            sku: "A".into(),
            name: "A".into(),
            unit_price: 100,
            currency: Currency::EUR,
            available,
            version,
        }
    }

    fn order(customer: Uuid, version: i64, status: OrderStatus) -> OrderState {
        OrderState {
            customer_id: customer,
            checkout_session_id: None,
            order: Order {
                id: Uuid::from_u128(5),
                status,
                cancel_reason: None,
                lines: vec![],
                currency: None,
                total: None,
                pay_until: None,
                checkout_url: None,
                refunded: false,
                created_at: Timestamp::from_millis(0),
                updated_at: Timestamp::from_millis(0),
                version,
                timeline: vec![],
                checkout_delay: None,
                refund: None,
            },
        }
    }

    #[test]
    fn older_or_repeated_snapshots_change_nothing() {
        let model = ReadModel::default();
        let mut changes = model.product_changes();
        model.apply_product(product(2, 7));
        model.apply_product(product(1, 9));
        model.apply_product(product(2, 7));
        assert_eq!(model.product("A").map(|p| p.available), Some(7));
        assert!(changes.try_recv().is_ok());
        assert!(
            changes.try_recv().is_err(),
            "only the first snapshot was news"
        );
    }

    #[test]
    fn a_customer_holds_the_units_of_their_unpaid_orders_only() {
        let model = ReadModel::default();
        let alice = Uuid::from_u128(1);
        let with_lines = |id: u128, version: i64, status: OrderStatus, quantity: i64| {
            let mut state = order(alice, version, status);
            state.order.id = Uuid::from_u128(id);
            state.order.lines = vec![shop_shared::domain::OrderLine {
                sku: "A".into(),
                quantity,
                name: None,
                unit_price: None,
                amount: None,
            }];
            state
        };
        model.apply_order(with_lines(10, 1, OrderStatus::New, 3));
        model.apply_order(with_lines(11, 1, OrderStatus::Reserved, 4));
        model.apply_order(with_lines(12, 1, OrderStatus::Paid, 50));
        model.apply_order(with_lines(13, 1, OrderStatus::Cancelled, 60));
        assert_eq!(model.held_units(alice), 7);
        model.apply_order(with_lines(11, 2, OrderStatus::Paid, 4));
        assert_eq!(model.held_units(alice), 3, "a paid order holds nothing");
    }

    #[test]
    fn orders_reach_only_their_customer() {
        let model = ReadModel::default();
        let (alice, bob) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut alice_changes = model.customer_changes(alice);
        let mut bob_changes = model.customer_changes(bob);
        model.apply_order(order(alice, 1, OrderStatus::New));
        model.apply_order(order(alice, 2, OrderStatus::Reserved));
        assert_eq!(
            alice_changes.try_recv().map(|s| s.order.version).ok(),
            Some(1)
        );
        assert_eq!(
            alice_changes.try_recv().map(|s| s.order.version).ok(),
            Some(2)
        );
        assert!(bob_changes.try_recv().is_err());
        assert_eq!(model.customer_orders(alice).len(), 1);
        assert!(model.customer_orders(bob).is_empty());
        assert!(model.customer_order(bob, Uuid::from_u128(5)).is_none());
        assert_eq!(model.held_units(bob), 0);
        assert_eq!(
            model
                .customer_order(alice, Uuid::from_u128(5))
                .map(|s| s.order.status),
            Some(OrderStatus::Reserved)
        );
    }

    #[test]
    fn a_customer_channel_lives_only_while_someone_listens() {
        let model = ReadModel::default();
        let (alice, bob) = (Uuid::from_u128(1), Uuid::from_u128(2));
        for _ in 0..1000 {
            drop(model.customer_changes(Uuid::new_v4()));
        }
        assert_eq!(
            model.customer_channels(),
            0,
            "hello and leave costs nothing"
        );

        let connection = model.customer_changes(alice);
        let mut command = model.customer_changes(alice);
        let _bob = model.customer_changes(bob);
        assert_eq!(model.customer_channels(), 2);
        drop(connection);
        assert_eq!(model.customer_channels(), 2, "a command still listens");
        model.apply_order(order(alice, 1, OrderStatus::New));
        assert_eq!(
            command.try_recv().map(|s| s.order.version).ok(),
            Some(1),
            "the remaining listener still hears"
        );
        drop(command);
        assert_eq!(model.customer_channels(), 1, "only bob's is left");
        model.apply_order(order(alice, 2, OrderStatus::Reserved));
        assert_eq!(model.customer_channels(), 1, "orders alone keep no channel");
        assert_eq!(model.customer_orders(alice).len(), 1, "the order is kept");
    }
}
