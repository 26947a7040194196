//! Operators run the catalogue while customers shop: restocks, write-offs,
//! price changes, withdrawals, new products; through the stock service,
//! audited, at most once per idempotency key, and seen live.

use shop_client::{Client, ClientError, Push};
use shop_shared::catalog::CatalogChange;
use shop_shared::domain::{OrderStatus, Product, StockLevels};
use shop_shared::protocol::ErrorCode;

use crate::harness::{Mode, Shop, WAIT, place, reserve, wait_status};

fn restock(sku: &str, quantity: i64) -> CatalogChange {
    CatalogChange::Restock {
        sku: sku.into(),
        quantity,
    }
}

fn reprice(sku: &str, unit_price: i64) -> CatalogChange {
    CatalogChange::UpdateProduct {
        sku: sku.into(),
        name: None,
        description: None,
        category: None,
        image_url: None,
        unit_price: Some(unit_price),
    }
}

fn code_of<T: std::fmt::Debug>(result: Result<T, ClientError>) -> Option<ErrorCode> {
    match result {
        Ok(value) => panic!("expected a refusal, got {value:?}"),
        Err(error) => error.code(),
    }
}

/// The operator's view of `sku`, with its stock levels.
async fn levels(operator: &Client, sku: &str) -> (Product, StockLevels) {
    let product = operator
        .products()
        .await
        .expect("products")
        .into_iter()
        .find(|product| product.sku == sku)
        .expect("the product");
    let stock = product.stock.expect("operators see stock levels");
    (product, stock)
}

async fn an_operator_restocks_while_customers_race_for_the_last_units(mode: Mode) {
    let shop = Shop::start(mode).await;
    let operator = shop.operator("alice").await;
    let customers = futures_util::future::join_all((0..12).map(|_| shop.customer())).await;
    // 12 customers × 2 units of a product with 10, while 6 more arrive.
    let racing = futures_util::future::join_all(
        customers
            .iter()
            .map(|client| place(client, &[("SKU-001", 2)])),
    );
    let restocking = operator.admin("restock-1", restock("SKU-001", 6));
    let (orders, restocked) = tokio::join!(racing, restocking);
    let (entry, _) = restocked.expect("restocked");
    assert_eq!(entry.operator, "alice");
    let written_off = operator
        .admin(
            "breakage-1",
            CatalogChange::WriteOff {
                sku: "SKU-001".into(),
                quantity: 1,
                reason: "dropped".into(),
            },
        )
        .await;
    let mut reserved_units = 0;
    for (client, order) in customers.iter().zip(&orders) {
        let order = client
            .wait_for_order(order.id, WAIT, |order| {
                order.status == OrderStatus::Cancelled || order.checkout_url.is_some()
            })
            .await
            .expect("every order settles");
        if order.status == OrderStatus::Reserved {
            reserved_units += order.lines.iter().map(|line| line.quantity).sum::<i64>();
        }
    }
    assert!(
        reserved_units <= 16,
        "no more than the 10 + 6 units is sold: {reserved_units}"
    );
    assert!(
        reserved_units >= 10,
        "the first 10 units go to racing customers at least"
    );
    // Every order is decided: the operator's view adds up.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (product, stock) = levels(&operator, "SKU-001").await;
        let conserved =
            product.available + stock.reserved + stock.sold + stock.written_off == stock.received;
        assert!(
            conserved,
            "available + reserved + sold + written_off = received: {product:?}"
        );
        if stock.reserved == reserved_units {
            assert_eq!(stock.received, 16);
            let expected_written_off = if written_off.is_ok() { 1 } else { 0 };
            assert_eq!(stock.written_off, expected_written_off, "{written_off:?}");
            assert_eq!(
                product.available,
                16 - reserved_units - expected_written_off
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reserved units never matched the orders: {stock:?}, orders hold {reserved_units}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A write-off larger than what is available is refused; nothing changes.
    let (before, before_stock) = levels(&operator, "SKU-001").await;
    let refused = operator
        .admin(
            "breakage-2",
            CatalogChange::WriteOff {
                sku: "SKU-001".into(),
                quantity: before.available + 1,
                reason: String::new(),
            },
        )
        .await;
    assert_eq!(code_of(refused), Some(ErrorCode::NotEnoughStock));
    let (after, after_stock) = levels(&operator, "SKU-001").await;
    assert_eq!(
        (after.available, after_stock),
        (before.available, before_stock)
    );
}

async fn a_price_change_is_seen_live_and_leaves_reserved_orders_alone(mode: Mode) {
    let shop = Shop::start(mode).await;
    let customer = shop.customer().await;
    let reserved = reserve(&customer, &[("SKU-002", 1)]).await;
    assert_eq!(reserved.total, Some(110_000));
    let mut pushes = customer.subscribe();
    let operator = shop.operator("bob").await;
    let (entry, product) = operator
        .admin("price-1", reprice("SKU-002", 99_900))
        .await
        .expect("repriced");
    assert_eq!(product.unit_price, 99_900);
    assert_eq!(entry.changes.len(), 1);
    assert_eq!(entry.changes[0].field, "unit_price");
    assert_eq!(entry.changes[0].old, serde_json::json!(110_000));
    assert_eq!(entry.changes[0].new, serde_json::json!(99_900));

    let pushed = tokio::time::timeout(WAIT, async {
        loop {
            match pushes.recv().await {
                Ok(Push::Product(product)) if product.sku == "SKU-002" => {
                    if product.unit_price == 99_900 {
                        return product;
                    }
                }
                Ok(_) => {}
                Err(error) => panic!("pushes ended: {error}"),
            }
        }
    })
    .await
    .expect("the connected customer sees the new price live");
    assert_eq!(pushed.stock, None, "customers are not sent stock levels");

    let order = customer
        .order(&reserved.id.to_string())
        .await
        .expect("order");
    assert_eq!(order.status, OrderStatus::Reserved);
    assert_eq!(
        order.total,
        Some(110_000),
        "the reserved order keeps its price"
    );
    assert_eq!(order.lines[0].unit_price, Some(110_000));
    let later = reserve(&customer, &[("SKU-002", 1)]).await;
    assert_eq!(later.total, Some(99_900), "a new order pays the new price");
}

async fn a_customer_token_is_refused_every_operator_command(mode: Mode) {
    let shop = Shop::start(mode).await;
    let customer = shop.customer().await;
    let before = customer.products().await.expect("products");
    let commands = [
        CatalogChange::AddProduct {
            sku: "MUG".into(),
            name: "Mug".into(),
            description: String::new(),
            category: String::new(),
            image_url: None,
            unit_price: 1_250,
            stock: 5,
        },
        reprice("SKU-001", 1),
        restock("SKU-001", 100),
        CatalogChange::WriteOff {
            sku: "SKU-001".into(),
            quantity: 10,
            reason: String::new(),
        },
        CatalogChange::Withdraw {
            sku: "SKU-001".into(),
        },
        CatalogChange::Relist {
            sku: "SKU-001".into(),
        },
    ];
    for (n, command) in commands.into_iter().enumerate() {
        let action = command.action();
        let refused = customer.admin(&format!("k{n}"), command).await;
        assert_eq!(code_of(refused), Some(ErrorCode::Forbidden), "{action}");
    }
    assert_eq!(
        code_of(customer.audit(None).await),
        Some(ErrorCode::Forbidden)
    );
    // A token that only looks like an operator's is no way in either.
    let forged = format!("op1.mallory.{}", "A".repeat(43));
    let refused = Client::connect(&shop.ws_url, Some(&forged)).await;
    assert_eq!(
        refused.err().and_then(|error| error.code()),
        Some(ErrorCode::InvalidToken)
    );

    let operator = shop.operator("carol").await;
    assert!(
        operator.audit(None).await.expect("audit").is_empty(),
        "nothing was changed, so nothing was audited"
    );
    let after = customer.products().await.expect("products");
    assert_eq!(after, before, "every product is as it was");
    // Nor does an operator's session shop.
    assert_eq!(
        code_of(operator.place_order(&[("SKU-001", 1)], "op-order").await),
        Some(ErrorCode::Forbidden)
    );
}

async fn a_replayed_operator_command_applies_once(mode: Mode) {
    let shop = Shop::start(mode).await;
    let operator = shop.operator("dave").await;
    let (first, product) = operator
        .admin("restock-once", restock("SKU-003", 5))
        .await
        .expect("restocked");
    assert_eq!(product.available, 15);
    // The same command again, also from a new connection (a retry after a
    // lost reply): the same answer, applied once.
    let again = shop.operator("dave").await;
    let (second, replayed) = again
        .admin("restock-once", restock("SKU-003", 5))
        .await
        .expect("answered again");
    assert_eq!(second, first, "the same audit record");
    assert_eq!(replayed.available, 15);
    let (now, stock) = levels(&operator, "SKU-003").await;
    assert_eq!((now.available, stock.received), (15, 15), "applied once");
    // Another change under the same key is refused.
    let reused = operator.admin("restock-once", restock("SKU-003", 6)).await;
    assert_eq!(code_of(reused), Some(ErrorCode::IdempotencyKeyReused));
    // Two other changes under one key at once: one is applied, the other
    // is told the key is taken, each on its own connection.
    let (left, right) = tokio::join!(
        operator.admin("raced", restock("SKU-003", 1)),
        again.admin(
            "raced",
            CatalogChange::WriteOff {
                sku: "SKU-003".into(),
                quantity: 5,
                reason: String::new(),
            }
        )
    );
    let applied = [&left, &right]
        .iter()
        .filter(|result| result.is_ok())
        .count();
    assert_eq!(applied, 1, "{left:?} {right:?}");
    let refused = [left, right]
        .into_iter()
        .find_map(Result::err)
        .and_then(|error| error.code());
    assert_eq!(refused, Some(ErrorCode::IdempotencyKeyReused));
    let (_, raced) = levels(&operator, "SKU-003").await;
    let restocked = raced.received == 16;
    assert!(
        restocked || raced.written_off == 5,
        "the applied one is the one answered: {raced:?}"
    );
    // Another operator's key of the same text is another command.
    let erin = shop.operator("erin").await;
    let (_, product) = erin
        .admin("restock-once", restock("SKU-003", 5))
        .await
        .expect("erin's own command");
    let expected = if restocked { 21 } else { 15 };
    assert_eq!(product.available, expected);
    let entries = operator.audit(Some("SKU-003")).await.expect("audit");
    assert_eq!(entries.len(), 3, "{entries:?}");
}

async fn the_audit_log_records_each_change(mode: Mode) {
    let shop = Shop::start(mode).await;
    let operator = shop.operator("frank").await;
    let customer = shop.customer().await;
    let held = reserve(&customer, &[("SKU-001", 1)]).await;
    let changes = [
        CatalogChange::AddProduct {
            sku: "MUG".into(),
            name: "Mug".into(),
            description: "Stoneware.\nHolds 350 ml.".into(),
            category: "Kitchen".into(),
            image_url: Some("https://example.com/mug.png".into()),
            unit_price: 1_250,
            stock: 4,
        },
        reprice("MUG", 1_500),
        restock("MUG", 6),
        CatalogChange::WriteOff {
            sku: "MUG".into(),
            quantity: 2,
            reason: "chipped".into(),
        },
        CatalogChange::Withdraw {
            sku: "SKU-001".into(),
        },
    ];
    for (n, change) in changes.into_iter().enumerate() {
        operator
            .admin(&format!("change-{n}"), change)
            .await
            .expect("applied");
    }
    // A new customer sees the new product, described; the withdrawn one
    // takes no new order, and the order it holds stays.
    let mug = customer
        .products()
        .await
        .expect("products")
        .into_iter()
        .find(|product| product.sku == "MUG")
        .expect("the new product is on sale");
    assert_eq!(
        (mug.available, mug.unit_price, mug.category.as_str()),
        (8, 1_500, "Kitchen")
    );
    assert_eq!(mug.description, "Stoneware.\nHolds 350 ml.");
    assert_eq!(
        code_of(
            customer
                .place_order(&[("SKU-001", 1)], "after-withdrawal")
                .await
        ),
        Some(ErrorCode::ProductWithdrawn)
    );
    let order = customer.order(&held.id.to_string()).await.expect("order");
    assert_eq!(order.status, OrderStatus::Reserved, "left alone");
    let paid = reserve(&customer, &[("MUG", 2)]).await;
    shop.pay(
        paid.checkout_url.as_deref().expect("url"),
        crate::harness::GOOD_CARD,
    )
    .await;
    wait_status(&customer, &paid, OrderStatus::Paid).await;
    operator
        .admin(
            "change-5",
            CatalogChange::Relist {
                sku: "SKU-001".into(),
            },
        )
        .await
        .expect("relisted");
    place(&customer, &[("SKU-001", 1)]).await;

    let entries = operator.audit(None).await.expect("audit");
    let actions: Vec<&str> = entries.iter().map(|entry| entry.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "relist",
            "withdraw",
            "write_off",
            "restock",
            "update_product",
            "add_product"
        ],
        "newest first"
    );
    assert!(entries.iter().all(|entry| entry.operator == "frank"));
    let write_off = &entries[2];
    assert_eq!(write_off.reason, "chipped");
    let fields: Vec<(&str, &serde_json::Value, &serde_json::Value)> = write_off
        .changes
        .iter()
        .map(|change| (change.field.as_str(), &change.old, &change.new))
        .collect();
    assert_eq!(
        fields,
        [
            ("available", &serde_json::json!(10), &serde_json::json!(8)),
            ("written_off", &serde_json::json!(0), &serde_json::json!(2)),
        ]
    );
    let withdraw = &entries[1];
    assert_eq!(withdraw.changes[0].field, "listed");
    assert_eq!(withdraw.changes[0].new, serde_json::json!(false));
    let mugs = operator.audit(Some("MUG")).await.expect("audit of MUG");
    assert_eq!(mugs.len(), 4);
    let (mug, stock) = levels(&operator, "MUG").await;
    assert_eq!(
        (mug.available, stock.sold, stock.written_off, stock.received),
        (6, 2, 2, 10),
        "available + sold + written off = received"
    );
}

crate::in_both_modes!(
    an_operator_restocks_while_customers_race_for_the_last_units,
    a_price_change_is_seen_live_and_leaves_reserved_orders_alone,
    a_customer_token_is_refused_every_operator_command,
    a_replayed_operator_command_applies_once,
    the_audit_log_records_each_change,
);

/// The stock service keeps the audit log in a table of its own, which is
/// the record; the gateway's is a copy from the topic.
#[tokio::test]
async fn the_stock_service_records_each_change_in_its_own_table() {
    let shop = Shop::start(Mode::Embedded).await;
    let operator = shop.operator("grace").await;
    operator
        .admin("r1", restock("SKU-002", 3))
        .await
        .expect("restocked");
    let url = format!(
        "sqlite://{}?mode=ro",
        shop.data_dir().join("stock.sqlite").display()
    );
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("the stock database opens");
    let rows: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT operator, sku, action, changes FROM catalog_audit")
            .fetch_all(&mut db)
            .await
            .expect("catalog_audit");
    assert_eq!(rows.len(), 1);
    let (who, sku, action, changes) = &rows[0];
    assert_eq!(
        (who.as_str(), sku.as_str(), action.as_str()),
        ("grace", "SKU-002", "restock")
    );
    assert!(changes.contains("\"received\""), "{changes}");
}
