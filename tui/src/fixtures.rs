//! Fixed products, orders and times for the tests of the app and its
//! screens.

use shop_shared::domain::{
    CancelReason, Order, OrderLine, OrderStatus, Product, StockLevels, TimelineEntry, TimelineEvent,
};
use shop_shared::money::Currency;
use shop_shared::time::Timestamp;
use uuid::Uuid;

use crate::app::{Action, App};

pub const NOW: Timestamp = Timestamp::from_millis(1_795_000_000_000);
pub const CUSTOMER: Uuid = Uuid::from_u128(0x0fa1_cf64_0000_4000_8000_0000_0000_0001);

pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_millis(NOW.as_millis() + seconds * 1000)
}

pub fn product(sku: &str, name: &str, unit_price: i64, available: i64) -> Product {
    Product {
        sku: sku.into(),
        name: name.into(),
        description: String::new(),
        category: String::new(),
        image_url: None,
        unit_price,
        currency: Currency::EUR,
        available,
        listed: true,
        stock: None,
        version: 1,
    }
}

/// The reference shop's products, with their categories and descriptions.
pub fn catalogue() -> Vec<Product> {
    let described = |mut product: Product, category: &str, description: &str| {
        product.category = category.into();
        product.description = description.into();
        product
    };
    vec![
        described(
            product("SKU-001", "MacBook Pro", 450_000, 10),
            "Laptops",
            "14-inch, Apple M4 Pro, 24 GB memory, 512 GB storage.\nSpace black.",
        ),
        described(
            product("SKU-002", "iPhone 16", 110_000, 10),
            "Phones",
            "6.1-inch display, 128 GB.\nUltramarine.",
        ),
        described(
            product("SKU-003", "MacBook Air", 150_000, 2),
            "Laptops",
            "13-inch, Apple M3, 16 GB memory, 256 GB storage.\nMidnight.",
        ),
    ]
}

/// An app online as the operator `alice`, with stock levels.
pub fn operator() -> App {
    let mut app = App::new("ws://127.0.0.1:8080/ws", NOW);
    let products = catalogue()
        .into_iter()
        .map(|mut product| {
            product.stock = Some(StockLevels {
                reserved: 1,
                sold: 2,
                written_off: 0,
                received: product.available + 3,
            });
            product
        })
        .collect();
    app.update(Action::Online {
        customer_id: CUSTOMER,
        operator: Some("alice".into()),
        products,
        orders: Vec::new(),
    });
    app.notice = None;
    app
}

/// An order created a minute ago, in `status`; `id` tells orders apart.
pub fn order(id: u128, status: OrderStatus) -> Order {
    let id = Uuid::from_u128(((0x6ffc_dd20 + id) << 96) | 0x5e3f_9a4b_6c7d_8e9f_0000 | id);
    let mut timeline = vec![TimelineEntry {
        at: at(-60),
        event: TimelineEvent::Created,
        detail: None,
    }];
    let mut order = Order {
        id,
        status,
        cancel_reason: None,
        lines: vec![OrderLine {
            sku: "SKU-001".into(),
            quantity: 2,
            name: Some("MacBook Pro".into()),
            unit_price: Some(450_000),
            amount: Some(900_000),
        }],
        currency: Some(Currency::EUR),
        total: Some(900_000),
        pay_until: None,
        checkout_url: None,
        refunded: false,
        created_at: at(-60),
        updated_at: at(-59),
        version: 3,
        timeline: Vec::new(),
        checkout_delay: None,
        refund: None,
    };
    match status {
        OrderStatus::Reserved => {
            order.pay_until = Some(at(239));
            order.checkout_url = Some(format!(
                "http://127.0.0.1:8080/checkout/cs_local_{:024x}",
                id.as_u128()
            ));
            timeline.push(TimelineEntry {
                at: at(-59),
                event: TimelineEvent::Reserved,
                detail: Some(format!("pay until {}", at(239))),
            });
            timeline.push(TimelineEntry {
                at: at(-59),
                event: TimelineEvent::CheckoutReady,
                detail: None,
            });
        }
        OrderStatus::Paid => {
            timeline.push(TimelineEntry {
                at: at(-59),
                event: TimelineEvent::Reserved,
                detail: None,
            });
            timeline.push(TimelineEntry {
                at: at(-30),
                event: TimelineEvent::Paid,
                detail: None,
            });
        }
        OrderStatus::Cancelled => {
            order.cancel_reason = Some(CancelReason::NotPaid);
            timeline.push(TimelineEntry {
                at: at(-59),
                event: TimelineEvent::Reserved,
                detail: None,
            });
            timeline.push(TimelineEntry {
                at: at(-1),
                event: TimelineEvent::Cancelled,
                detail: Some(CancelReason::NotPaid.describe().into()),
            });
        }
        OrderStatus::New => {
            order.total = None;
            order.currency = None;
        }
    }
    order.timeline = timeline;
    order
}

/// An app online with the catalogue and `orders`, at [`NOW`].
pub fn online(orders: Vec<Order>) -> App {
    let mut app = App::new("ws://127.0.0.1:8080/ws", NOW);
    app.update(Action::Online {
        customer_id: CUSTOMER,
        operator: None,
        products: catalogue(),
        orders,
    });
    app.notice = None;
    app
}
