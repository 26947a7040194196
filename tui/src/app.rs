//! The state of the terminal shop and how actions change it.
//!
//! Everything that happens (a key, a click, a tick, a push from the shop)
//! arrives as an [`Action`]; [`App::update`] changes the state and returns
//! the [`Effect`]s to carry out (commands for the shop, opening a browser).
//! No I/O happens here, so every transition is tested without a terminal.

use std::collections::HashMap;
use std::time::Duration;

use crossterm::event::Event;
use ratatui::layout::Rect;
use shop_client::text::{visible, width};
use shop_client::words::Clock;
use shop_shared::catalog::{CatalogChange, MAX_STOCK};
use shop_shared::domain::{
    MAX_LINES, MAX_QUANTITY, Order, OrderLines, OrderLinesError, OrderStatus, Product, RefundState,
};
use shop_shared::money::{Currency, Money};
use shop_shared::time::Timestamp;
use uuid::Uuid;

use crate::keys::{self, Who};
use crate::layout::{self, Areas};

/// How long a changed quantity or price stays highlighted.
pub const FLASH: Duration = Duration::from_millis(1500);
/// How long a notice stays in the status bar.
pub const NOTICE: Duration = Duration::from_secs(5);

/// Most characters one paste types: more than any filter or answer needs.
const MAX_PASTED: usize = 200;

/// The panes, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Stock,
    Cart,
    Orders,
}

impl Pane {
    /// The pane's title.
    pub fn name(self) -> &'static str {
        match self {
            Pane::Stock => "Stock",
            Pane::Cart => "Cart",
            Pane::Orders => "My orders",
        }
    }

    fn index(self) -> usize {
        match self {
            Pane::Stock => 0,
            Pane::Cart => 1,
            Pane::Orders => 2,
        }
    }

    fn next(self) -> Pane {
        match self {
            Pane::Stock => Pane::Cart,
            Pane::Cart => Pane::Orders,
            Pane::Orders => Pane::Stock,
        }
    }

    fn previous(self) -> Pane {
        self.next().next()
    }
}

/// What covers the panes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    /// An order's lines and timeline.
    Detail(Uuid),
    /// The checkout link and QR code of an order.
    Pay(Uuid),
    /// "Cancel this order?"
    ConfirmCancel(Uuid),
    /// "Place this order of … for <total>?"
    ConfirmOrder,
    /// Why the shop refused the last order: over one of the customer's
    /// limits ([`App::refusal`]).
    Refused,
    /// An operator's question about the selected product ([`App::prompt`]).
    Prompt,
}

/// What an operator's prompt asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// How many units came in.
    Restock,
    /// How many units are lost, and why (optional).
    WriteOff,
    /// The new unit price, a decimal amount in the product's currency.
    Price,
    /// "Withdraw it?": no new orders.
    Withdraw,
    /// "Sell it again?"
    Relist,
    /// One answer of a new product's, in turn ([`Prompt::draft`]).
    Add(AddStep),
    /// Which text of the product to change: a key, n d c or i.
    EditWhich,
    /// The new value of one text of the product.
    Edit(Field),
}

impl Ask {
    /// Whether the operator types an answer (or, for [`Ask::EditWhich`],
    /// a letter), rather than y or n.
    pub fn takes_text(self) -> bool {
        !matches!(self, Ask::Withdraw | Ask::Relist)
    }
}

/// The questions that add a product, in the order asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddStep {
    Sku,
    Name,
    /// A decimal amount in the shop's currency ([`App::currency`]).
    Price,
    /// Units in stock; none when not said.
    Units,
    /// Optional.
    Category,
    /// Optional, one line.
    Description,
}

impl AddStep {
    pub const ALL: [AddStep; 6] = [
        AddStep::Sku,
        AddStep::Name,
        AddStep::Price,
        AddStep::Units,
        AddStep::Category,
        AddStep::Description,
    ];

    /// The question after this one; none after the last, whose answer
    /// sends the product.
    pub fn next(self) -> Option<AddStep> {
        AddStep::ALL.get(self.number()).copied()
    }

    /// 1 for the first question.
    pub fn number(self) -> usize {
        AddStep::ALL
            .iter()
            .position(|step| *step == self)
            .map_or(0, |at| at + 1)
    }
}

/// A product's text an operator may change with `e`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name,
    Description,
    Category,
    ImageUrl,
}

impl Field {
    pub const ALL: [Field; 4] = [
        Field::Name,
        Field::Description,
        Field::Category,
        Field::ImageUrl,
    ];

    /// The letter that picks it.
    pub fn key(self) -> &'static str {
        match self {
            Field::Name => "n",
            Field::Description => "d",
            Field::Category => "c",
            Field::ImageUrl => "i",
        }
    }

    /// What it is called, as in "the new name".
    pub fn label(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::Description => "description",
            Field::Category => "category",
            Field::ImageUrl => "image URL",
        }
    }

    /// Its value in `product` now; empty for none.
    pub fn of(self, product: &Product) -> &str {
        match self {
            Field::Name => &product.name,
            Field::Description => &product.description,
            Field::Category => &product.category,
            Field::ImageUrl => product.image_url.as_deref().unwrap_or(""),
        }
    }
}

/// A product being added, answer by answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewProduct {
    pub sku: String,
    /// `None` until answered.
    pub name: Option<String>,
    /// In minor units.
    pub unit_price: i64,
    pub stock: i64,
    pub category: String,
    pub description: String,
}

impl NewProduct {
    /// The change adding it, from the answers so far. Until the name is
    /// answered the sku stands in for it, and every later field keeps a
    /// value the shop takes (no price, units, category or description
    /// yet): [`CatalogChange::validate`], which checks the sku first, then
    /// objects only to an answer given.
    pub fn change(&self) -> CatalogChange {
        CatalogChange::AddProduct {
            sku: self.sku.clone(),
            name: self.name.clone().unwrap_or_else(|| self.sku.clone()),
            description: self.description.clone(),
            category: self.category.clone(),
            image_url: None,
            unit_price: self.unit_price,
            stock: self.stock,
        }
    }
}

/// An operator's question about one product, until the shop answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub ask: Ask,
    /// The product asked about; a new product's once its sku is answered.
    pub sku: String,
    /// A new product's answers so far ([`Ask::Add`]).
    pub draft: NewProduct,
    /// What the operator typed; empty for a yes-or-no question.
    pub text: String,
    /// Why the answer was not taken or did not get through, shown under
    /// the question.
    pub problem: Option<String>,
    /// The change last sent and its idempotency key: sending the same
    /// change again (after an answer was lost) reuses the key, so the
    /// shop applies it once; a different answer gets a fresh key.
    pub sent: Option<(CatalogChange, String)>,
    /// Sent; waiting for the shop's answer.
    pub sending: bool,
}

/// The link to the shop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Connecting { attempt: u32 },
    Online { customer_id: Uuid },
    Offline { reason: String, retry_at: Timestamp },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Info,
    Error,
}

/// A message in the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub kind: NoticeKind,
    pub until: Timestamp,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A key, a click or a resize, as the terminal reported it: turned
    /// into one of the actions below by [`crate::keys`].
    Input(Event),
    Up,
    Down,
    First,
    Last,
    PageUp,
    PageDown,
    /// `+`, `a`: one more.
    More,
    /// `-`: one fewer.
    Fewer,
    /// `d`, Delete: drop the cart line.
    Delete,
    NextPane,
    PreviousPane,
    /// Enter.
    Activate,
    /// `o`: place the cart as an order (or, in the pay view, open the link).
    PlaceOrder,
    /// `p`: show the checkout link and QR code of the selected order.
    Pay,
    /// `O`: open the selected order's checkout page in the browser.
    Open,
    /// `c`: cancel the selected order (asks first).
    Cancel,
    Yes,
    No,
    /// Esc.
    Back,
    Help,
    Quit,
    /// `/`: start filtering the stock pane.
    Filter,
    /// A character typed into the filter.
    Type(char),
    /// Backspace in the filter.
    Erase,
    /// A key no binding knows.
    Unknown,
    /// `C`: show the next category only (all, then each in turn).
    Category,
    /// `i`: show or hide the selected product's details.
    Details,
    /// Operators: `r`, asks how many units came in.
    Restock,
    /// Operators: `w`, asks how many units are lost.
    WriteOff,
    /// Operators: `P`, asks the new price.
    Reprice,
    /// Operators: `W`, asks before withdrawing a listed product or
    /// relisting a withdrawn one.
    WithdrawOrRelist,
    /// Operators: `e`, asks which text of the selected product to change,
    /// then its new value. (Operators add a product with `n`, which is
    /// [`Action::No`] when a question is open.)
    Edit,
    Click {
        column: u16,
        row: u16,
    },
    Resize {
        width: u16,
        height: u16,
    },
    Tick(Timestamp),
    // From the connection:
    Connecting {
        attempt: u32,
    },
    Online {
        customer_id: Uuid,
        /// The operator's name, when the session's token was an operator's.
        operator: Option<String>,
        products: Vec<Product>,
        orders: Vec<Order>,
    },
    Offline {
        reason: String,
        retry_in: Duration,
    },
    ProductChanged(Product),
    OrderChanged(Order),
    Placed(Order),
    Cancelled(Order),
    Failed(String),
    /// The shop refused the order over one of the customer's limits (hold
    /// limit, order rate): which limit and how to get under it, in words.
    Refused(String),
    /// The shop applied an operator's change: the product after it.
    Changed {
        change: CatalogChange,
        product: Product,
    },
    /// An operator's change did not go through. `retry`: the answer was
    /// lost (timeout, connection), so the same change may be sent again
    /// with the same key; otherwise the shop refused it.
    ChangeFailed {
        message: String,
        retry: bool,
    },
}

/// Something the terminal loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    PlaceOrder {
        lines: Vec<(String, i64)>,
        idempotency_key: String,
    },
    CancelOrder(Uuid),
    OpenBrowser(String),
    /// An operator's change of the catalogue.
    Admin {
        idempotency_key: String,
        change: CatalogChange,
    },
}

/// The whole state of the terminal shop.
#[derive(Debug, Clone)]
pub struct App {
    pub gateway: String,
    pub products: Vec<Product>,
    /// Products whose quantity just changed, highlighted until then.
    pub flashes: HashMap<String, Timestamp>,
    /// Products whose price just changed, highlighted until then.
    pub price_flashes: HashMap<String, Timestamp>,
    /// Newest first.
    pub orders: Vec<Order>,
    /// (sku, quantity), in the order added.
    pub cart: Vec<(String, i64)>,
    pub pane: Pane,
    /// The selected row of each pane.
    pub selected: [usize; 3],
    pub overlay: Overlay,
    pub connection: Connection,
    pub notice: Option<Notice>,
    /// An order is on its way; the cart waits for the answer.
    pub placing: bool,
    /// Why the last order was refused, while [`Overlay::Refused`] shows it.
    pub refusal: Option<String>,
    pub now: Timestamp,
    pub size: (u16, u16),
    pub quit: bool,
    /// What the stock pane shows: products whose sku or name contains it.
    pub filter: String,
    /// Keys go into [`App::filter`] until Enter or Esc.
    pub typing: bool,
    /// Colours; without them (`NO_COLOR`) states show in reverse video,
    /// bold and markers.
    pub color: bool,
    /// The user's time zone.
    pub clock: Clock,
    /// Whether a browser can be opened where the customer is: not over
    /// SSH, where this process runs on the shop's machine. Without one,
    /// `O` and `o` show the pay box, whose link and QR code work anywhere.
    pub browser: bool,
    /// The operator's name when the session's token is an operator's: the
    /// catalogue keys instead of the cart's, stock levels shown.
    pub operator: Option<String>,
    /// The one category the stock pane shows, when chosen (`C`).
    pub category: Option<String>,
    /// Whether the selected product's details show where there is no
    /// room to show them always (`i`).
    pub details: bool,
    /// The operator's question while [`Overlay::Prompt`] shows.
    pub prompt: Option<Prompt>,
}

impl App {
    pub fn new(gateway: &str, now: Timestamp) -> App {
        App {
            gateway: gateway.to_owned(),
            products: Vec::new(),
            flashes: HashMap::new(),
            orders: Vec::new(),
            cart: Vec::new(),
            pane: Pane::Stock,
            selected: [0; 3],
            overlay: Overlay::None,
            connection: Connection::Connecting { attempt: 1 },
            notice: None,
            placing: false,
            refusal: None,
            now,
            size: (80, 24),
            quit: false,
            filter: String::new(),
            typing: false,
            color: true,
            clock: Clock::fixed(0),
            browser: true,
            price_flashes: HashMap::new(),
            operator: None,
            category: None,
            details: false,
            prompt: None,
        }
    }

    /// The products the stock pane shows: all, or those of the chosen
    /// category that the filter names.
    pub fn stock(&self) -> Vec<&Product> {
        let wanted = self.filter.to_lowercase();
        self.products
            .iter()
            .filter(|product| {
                self.category
                    .as_ref()
                    .is_none_or(|category| product.category == *category)
            })
            .filter(|product| {
                wanted.is_empty()
                    || product.sku.to_lowercase().contains(&wanted)
                    || product.name.to_lowercase().contains(&wanted)
            })
            .collect()
    }

    /// Every category of the catalogue, sorted, once each.
    pub fn categories(&self) -> Vec<&str> {
        let mut categories: Vec<&str> = self
            .products
            .iter()
            .map(|product| product.category.as_str())
            .filter(|category| !category.is_empty())
            .collect();
        categories.sort_unstable();
        categories.dedup();
        categories
    }

    pub fn is_operator(&self) -> bool {
        self.operator.is_some()
    }

    /// Whether keys go into a text (the stock filter, an operator's
    /// answer) rather than act.
    pub fn typing(&self) -> bool {
        self.typing
            || (self.overlay == Overlay::Prompt
                && self
                    .prompt
                    .as_ref()
                    .is_some_and(|prompt| prompt.ask.takes_text()))
    }

    pub fn product(&self, sku: &str) -> Option<&Product> {
        self.products.iter().find(|product| product.sku == sku)
    }

    pub fn order(&self, id: Uuid) -> Option<&Order> {
        self.orders.iter().find(|order| order.id == id)
    }

    pub fn in_cart(&self, sku: &str) -> i64 {
        self.cart
            .iter()
            .find(|(line, _)| line == sku)
            .map_or(0, |(_, quantity)| *quantity)
    }

    /// The cart's total, if every line is priced in one currency.
    pub fn cart_total(&self) -> Option<Money> {
        let mut total = 0i64;
        let mut currency = None;
        for (sku, quantity) in &self.cart {
            let product = self.product(sku)?;
            if currency.is_some_and(|known| known != product.currency) {
                return None;
            }
            currency = Some(product.currency);
            total = total.saturating_add(product.unit_price.saturating_mul(*quantity));
        }
        currency.map(|currency| Money::new(total, currency))
    }

    /// Columns the cart pane wants to show its lines whole: names up to
    /// 24 columns, quantities and amounts; 0 when empty.
    pub fn cart_width(&self) -> u16 {
        if self.cart.is_empty() {
            return 0;
        }
        let mut name = 4;
        let mut quantity = 3;
        let mut amount = 6;
        for (sku, count) in &self.cart {
            let product = self.product(sku);
            name = name.max(width(product.map_or(sku.as_str(), |p| p.name.as_str())).min(24));
            quantity = quantity.max(width(&count.to_string()));
            if let Some(product) = product {
                let money = Money::new(product.unit_price.saturating_mul(*count), product.currency);
                amount = amount.max(width(&money.to_string()));
            }
        }
        // Borders and a space between columns.
        u16::try_from(name + quantity + amount + 4).unwrap_or(u16::MAX)
    }

    fn rows(&self, pane: Pane) -> usize {
        match pane {
            Pane::Stock => self.stock().len(),
            Pane::Cart => self.cart.len(),
            Pane::Orders => self.orders.len(),
        }
    }

    pub fn selection(&self, pane: Pane) -> usize {
        self.selected[pane.index()].min(self.rows(pane).saturating_sub(1))
    }

    fn select(&mut self, pane: Pane, row: usize) {
        self.selected[pane.index()] = row.min(self.rows(pane).saturating_sub(1));
    }

    pub fn selected_product(&self) -> Option<&Product> {
        self.stock().get(self.selection(Pane::Stock)).copied()
    }

    pub fn selected_order(&self) -> Option<&Order> {
        self.orders.get(self.selection(Pane::Orders))
    }

    pub fn is_online(&self) -> bool {
        matches!(self.connection, Connection::Online { .. })
    }

    fn tell(&mut self, kind: NoticeKind, text: impl Into<String>) {
        self.notice = Some(Notice {
            text: text.into(),
            kind,
            until: self.now.plus(NOTICE),
        });
    }

    fn too_small(&self) -> bool {
        layout::too_small(Rect::new(0, 0, self.size.0, self.size.1))
    }

    /// Pasted text (the terminal's bracketed paste): typed into the filter
    /// or an answer being typed, and never read as keys anywhere else, so
    /// a pasted sentence cannot place an order.
    fn paste(&mut self, text: &str) -> Vec<Effect> {
        if !self.typing() || self.too_small() {
            self.tell(
                NoticeKind::Info,
                "pasted text is taken only where text is typed (/ filters the stock)",
            );
            return Vec::new();
        }
        let mut effects = Vec::new();
        for c in text.chars().filter(|c| !c.is_control()).take(MAX_PASTED) {
            effects.extend(self.update(Action::Type(c)));
        }
        effects
    }

    /// Applies `action`; returns what must be done outside.
    pub fn update(&mut self, action: Action) -> Vec<Effect> {
        match made_safe(action) {
            Action::Input(Event::Paste(text)) => return self.paste(&text),
            Action::Input(event) => {
                return match crate::keys::action(event, self.typing()) {
                    // Below the minimum size nothing but the "too small"
                    // screen shows: no key may act on what is hidden.
                    Some(action) if self.too_small() && action != Action::Quit => Vec::new(),
                    Some(action) => self.update(action),
                    None => Vec::new(),
                };
            }
            Action::Unknown => self.tell(NoticeKind::Info, "unknown key: press ? for help"),
            Action::Quit => self.quit = true,
            Action::Tick(now) => {
                self.now = now;
                self.flashes.retain(|_, until| *until > now);
                self.price_flashes.retain(|_, until| *until > now);
                if self
                    .notice
                    .as_ref()
                    .is_some_and(|notice| notice.until <= now)
                {
                    self.notice = None;
                }
            }
            Action::Resize { width, height } => self.size = (width, height),
            Action::Help => {
                self.overlay = if self.overlay == Overlay::Help {
                    Overlay::None
                } else {
                    Overlay::Help
                };
            }
            Action::Connecting { attempt } => self.connection = Connection::Connecting { attempt },
            Action::Offline { reason, retry_in } => {
                self.connection = Connection::Offline {
                    reason,
                    retry_at: self.now.plus(retry_in),
                };
                if self.placing {
                    self.placing = false;
                    self.tell(NoticeKind::Error, "the connection dropped before the order was confirmed; check your orders once back online");
                }
            }
            Action::Online {
                customer_id,
                operator,
                products,
                orders,
            } => {
                self.operator = operator;
                self.online(customer_id, products, orders);
            }
            Action::ProductChanged(product) => self.product_changed(product),
            Action::OrderChanged(order) => self.order_changed(order),
            Action::Placed(order) => {
                self.placing = false;
                self.cart.clear();
                let id = order.id;
                let short = order.short_id();
                self.order_changed(order);
                self.pane = Pane::Orders;
                if let Some(row) = self.orders.iter().position(|order| order.id == id) {
                    self.select(Pane::Orders, row);
                }
                self.tell(
                    NoticeKind::Info,
                    format!("order {short} placed; it is reserved in a moment"),
                );
            }
            Action::Cancelled(order) => {
                let short = order.short_id();
                self.order_changed(order);
                self.tell(
                    NoticeKind::Info,
                    format!("order {short} cancelled; its items are back in stock"),
                );
            }
            Action::Failed(reason) => {
                self.placing = false;
                self.tell(NoticeKind::Error, reason);
            }
            Action::Refused(explanation) => {
                // The cart stays, to send again once under the limit.
                self.placing = false;
                self.notice = None;
                self.refusal = Some(explanation);
                self.overlay = Overlay::Refused;
            }
            Action::Changed { change, product } => self.changed(&change, product),
            Action::ChangeFailed { message, retry } => self.change_failed(message, retry),
            Action::Click { column, row } => self.click(column, row),
            other => return self.key(other),
        }
        Vec::new()
    }

    fn online(&mut self, customer_id: Uuid, mut products: Vec<Product>, orders: Vec<Order>) {
        self.connection = Connection::Online { customer_id };
        products.sort_by(|a, b| a.sku.cmp(&b.sku));
        self.products = products;
        self.orders.clear();
        for order in orders {
            self.order_changed(order);
        }
        let known: Vec<String> = self
            .products
            .iter()
            .map(|product| product.sku.clone())
            .collect();
        self.cart.retain(|(sku, _)| known.contains(sku));
    }

    fn product_changed(&mut self, product: Product) {
        match self
            .products
            .iter_mut()
            .find(|known| known.sku == product.sku)
        {
            Some(known) if known.version >= product.version => {}
            Some(known) => {
                if known.available != product.available {
                    self.flashes
                        .insert(product.sku.clone(), self.now.plus(FLASH));
                }
                let repriced = (known.unit_price != product.unit_price).then(|| {
                    let old = Money::new(known.unit_price, known.currency);
                    let new = Money::new(product.unit_price, product.currency);
                    format!("{} now costs {new} (was {old})", product.name)
                });
                let sku = product.sku.clone();
                *known = product;
                if let Some(repriced) = repriced {
                    self.price_flashes.insert(sku.clone(), self.now.plus(FLASH));
                    // Said aloud when it changes what the cart would cost.
                    if self.in_cart(&sku) > 0 {
                        self.tell(NoticeKind::Info, repriced);
                    }
                }
            }
            None => {
                self.products.push(product);
                self.products.sort_by(|a, b| a.sku.cmp(&b.sku));
            }
        }
    }

    fn order_changed(&mut self, order: Order) {
        let selected = self.selected_order().map(|order| order.id);
        match self.orders.iter_mut().find(|known| known.id == order.id) {
            Some(known) if known.version >= order.version => return,
            Some(known) => {
                let short = order.short_id();
                let notice = if known.status != order.status && order.status == OrderStatus::Paid {
                    Some(format!("order {short} is paid, thank you"))
                } else if !known.refunded && order.refunded {
                    Some(format!(
                        "order {short}: your payment came after it was cancelled and was refunded"
                    ))
                } else if known.refund != order.refund
                    && let Some(refund) = order.refund.as_ref().filter(|_| !order.refunded)
                {
                    Some(format!("order {short}: {}", refund.describe()))
                } else if known.checkout_delay.is_none()
                    && let Some(wait) = order.provider_wait()
                {
                    Some(format!("order {short}: {wait}"))
                } else {
                    None
                };
                *known = order;
                if let Some(notice) = notice {
                    self.tell(NoticeKind::Info, notice);
                }
            }
            None => self.orders.push(order),
        }
        self.orders
            .sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        if let Some(id) = selected
            && let Some(row) = self.orders.iter().position(|order| order.id == id)
        {
            self.select(Pane::Orders, row);
        }
    }

    /// Keys, by what is on screen.
    fn key(&mut self, action: Action) -> Vec<Effect> {
        match self.overlay {
            Overlay::None => {}
            Overlay::ConfirmCancel(id) => {
                match action {
                    Action::Yes => {
                        self.overlay = Overlay::None;
                        if !self.is_online() {
                            self.tell(
                                NoticeKind::Error,
                                "not connected to the shop; try again once online",
                            );
                            return Vec::new();
                        }
                        return vec![Effect::CancelOrder(id)];
                    }
                    Action::No | Action::Back => self.overlay = Overlay::None,
                    _ => {}
                }
                return Vec::new();
            }
            Overlay::ConfirmOrder => {
                match action {
                    Action::Yes => {
                        self.overlay = Overlay::None;
                        return self.place();
                    }
                    Action::No | Action::Back => self.overlay = Overlay::None,
                    _ => {}
                }
                return Vec::new();
            }
            Overlay::Pay(id) => {
                return match action {
                    Action::PlaceOrder | Action::Open => self.open(id),
                    Action::Back | Action::Activate | Action::Pay => {
                        self.overlay = Overlay::None;
                        Vec::new()
                    }
                    _ => Vec::new(),
                };
            }
            Overlay::Help | Overlay::Detail(_) => {
                if matches!(action, Action::Back | Action::Activate) {
                    self.overlay = Overlay::None;
                }
                return Vec::new();
            }
            Overlay::Refused => {
                if matches!(action, Action::Back | Action::Activate) {
                    self.overlay = Overlay::None;
                    self.refusal = None;
                }
                return Vec::new();
            }
            Overlay::Prompt => return self.prompt_key(action),
        }
        if self.typing {
            match action {
                Action::Type(c) => self.filter.push(c),
                Action::Erase => {
                    self.filter.pop();
                }
                Action::Activate => self.typing = false,
                Action::Back => {
                    self.typing = false;
                    self.filter.clear();
                }
                _ => {}
            }
            self.select(Pane::Stock, 0);
            return Vec::new();
        }
        let page = layout::visible_rows(self.area(self.pane)).max(1);
        let row = self.selection(self.pane);
        match action {
            Action::NextPane => {
                self.uncover();
                self.pane = self.pane.next();
            }
            Action::PreviousPane => {
                self.uncover();
                self.pane = self.pane.previous();
            }
            Action::Up => self.select(self.pane, row.saturating_sub(1)),
            Action::Down => self.select(self.pane, row + 1),
            Action::First => self.select(self.pane, 0),
            Action::Last => self.select(self.pane, usize::MAX),
            Action::PageUp => self.select(self.pane, row.saturating_sub(page)),
            Action::PageDown => self.select(self.pane, row.saturating_add(page)),
            Action::Filter if self.pane == Pane::Stock => {
                self.typing = true;
                self.select(Pane::Stock, 0);
            }
            Action::Back
                if self.pane == Pane::Stock
                    && (!self.filter.is_empty() || self.category.is_some()) =>
            {
                self.filter.clear();
                self.category = None;
                self.select(Pane::Stock, 0);
            }
            Action::Back => self.notice = None,
            Action::Category if self.pane == Pane::Stock => self.next_category(),
            Action::Details if self.pane == Pane::Stock => {
                if layout::details_beside(self.screen()) {
                    self.tell(
                        NoticeKind::Info,
                        "at this width the details always show beside the stock",
                    );
                } else {
                    self.details = !self.details;
                }
            }
            ref action if !keys::whose(self.pane, action).offered_to(self.is_operator()) => {
                let text = match keys::whose(self.pane, action) {
                    Who::Customer => {
                        "an operator's session places no orders: the cart and orders are a \
                         customer's (start shop-tui with a customer's profile)"
                    }
                    _ => "that key is an operator's: press ? for your keys",
                };
                self.tell(NoticeKind::Info, text);
            }
            _ => {
                return match self.pane {
                    Pane::Stock => self.stock_key(action),
                    Pane::Cart => self.cart_key(action),
                    Pane::Orders => self.orders_key(action),
                };
            }
        }
        Vec::new()
    }

    fn stock_key(&mut self, action: Action) -> Vec<Effect> {
        // With no question open, `n` (no) adds a product: an operator's
        // key in this pane, as Enter's meaning is each pane's. A new
        // product needs no selected one.
        if action == Action::No {
            self.ask(Ask::Add(AddStep::Sku), String::new());
            return Vec::new();
        }
        let Some(sku) = self.selected_product().map(|product| product.sku.clone()) else {
            return Vec::new();
        };
        match action {
            Action::More | Action::Activate => self.add(&sku),
            Action::Fewer => self.remove_one(&sku),
            Action::PlaceOrder => self.ask_to_place(),
            Action::Restock => self.ask(Ask::Restock, sku),
            Action::WriteOff => self.ask(Ask::WriteOff, sku),
            Action::Reprice => self.ask(Ask::Price, sku),
            Action::WithdrawOrRelist => {
                let listed = self.product(&sku).is_none_or(|product| product.listed);
                self.ask(if listed { Ask::Withdraw } else { Ask::Relist }, sku);
            }
            Action::Edit => self.ask(Ask::EditWhich, sku),
            _ => self.not_here(),
        }
        Vec::new()
    }

    /// Hides the details where they cover the cart and orders, to go there.
    fn uncover(&mut self) {
        if !layout::details_beside(self.screen()) {
            self.details = false;
        }
    }

    /// Shows only the next category: all, then each in turn.
    fn next_category(&mut self) {
        let categories = self.categories();
        if categories.is_empty() {
            self.tell(NoticeKind::Info, "no product has a category");
            return;
        }
        let next = match &self.category {
            None => categories.first(),
            Some(current) => categories
                .iter()
                .skip_while(|category| **category != current.as_str())
                .nth(1),
        };
        self.category = next.map(|category| (*category).to_owned());
        self.select(Pane::Stock, 0);
    }

    /// Asks the operator about `sku`.
    fn ask(&mut self, ask: Ask, sku: String) {
        self.prompt = Some(Prompt {
            ask,
            sku,
            draft: NewProduct::default(),
            text: String::new(),
            problem: None,
            sent: None,
            sending: false,
        });
        self.overlay = Overlay::Prompt;
    }

    /// Keys while an operator's question shows: the answer's text, Enter
    /// (or y) to send it, Esc (or n) to give up.
    fn prompt_key(&mut self, action: Action) -> Vec<Effect> {
        let Some(prompt) = self.prompt.as_mut() else {
            self.overlay = Overlay::None;
            return Vec::new();
        };
        // While an answer is typed, y and n arrive as text.
        match action {
            Action::Back | Action::No => {
                self.prompt = None;
                self.overlay = Overlay::None;
            }
            Action::Type(c) if !prompt.sending && prompt.ask == Ask::EditWhich => {
                match Field::ALL
                    .into_iter()
                    .find(|field| field.key() == c.to_string())
                {
                    Some(field) => {
                        prompt.ask = Ask::Edit(field);
                        prompt.problem = None;
                    }
                    None => prompt.problem = Some(which_field()),
                }
            }
            Action::Type(c) if !prompt.sending => {
                prompt.text.push(c);
                prompt.problem = None;
            }
            Action::Erase if !prompt.sending => {
                prompt.text.pop();
                prompt.problem = None;
            }
            Action::Activate | Action::Yes if !prompt.sending => return self.send_prompt(),
            _ => {}
        }
        Vec::new()
    }

    /// The change the operator's answer asks for, or why it cannot be.
    fn change(&self, prompt: &Prompt) -> Result<CatalogChange, String> {
        let sku = prompt.sku.clone();
        let quantity = |text: &str| {
            text.parse::<i64>()
                .ok()
                .filter(|quantity| (1..=MAX_STOCK).contains(quantity))
                .ok_or_else(|| format!("a quantity is a whole number from 1 to {MAX_STOCK}"))
        };
        let text = prompt.text.trim();
        let change = match prompt.ask {
            Ask::Restock => CatalogChange::Restock {
                quantity: quantity(text)?,
                sku,
            },
            Ask::WriteOff => {
                let (count, reason) = text.split_once(' ').unwrap_or((text, ""));
                CatalogChange::WriteOff {
                    quantity: quantity(count)?,
                    reason: reason.trim().to_owned(),
                    sku,
                }
            }
            Ask::Price => {
                let currency = self
                    .product(&sku)
                    .map(|product| product.currency)
                    .ok_or("the shop no longer has this product")?;
                let unit_price = currency
                    .parse_amount(text)
                    .map_err(|error| error.to_string())?;
                CatalogChange::UpdateProduct {
                    sku,
                    name: None,
                    description: None,
                    category: None,
                    image_url: None,
                    unit_price: Some(unit_price),
                }
            }
            Ask::Withdraw => CatalogChange::Withdraw { sku },
            Ask::Relist => CatalogChange::Relist { sku },
            Ask::Add(_) => self.take_answer(prompt)?.change(),
            Ask::EditWhich => return Err(which_field()),
            Ask::Edit(field) => {
                let product = self
                    .product(&sku)
                    .ok_or("the shop no longer has this product")?;
                if field.of(product) == text {
                    return Err(format!("that is its {} already", field.label()));
                }
                let set = |wanted: Field| (field == wanted).then(|| text.to_owned());
                CatalogChange::UpdateProduct {
                    name: set(Field::Name),
                    description: set(Field::Description),
                    category: set(Field::Category),
                    image_url: set(Field::ImageUrl),
                    unit_price: None,
                    sku,
                }
            }
        };
        change.validate().map_err(|invalid| invalid.0)?;
        Ok(change)
    }

    /// The shop's currency: that of its products (one for all), EUR for a
    /// shop with none yet, as `shop admin add` takes it.
    pub fn currency(&self) -> Currency {
        self.products
            .first()
            .map_or(Currency::EUR, |product| product.currency)
    }

    /// A new product with the answer to the question showing, or why the
    /// answer is not taken.
    fn take_answer(&self, prompt: &Prompt) -> Result<NewProduct, String> {
        let mut draft = prompt.draft.clone();
        let Ask::Add(step) = prompt.ask else {
            return Ok(draft);
        };
        let text = prompt.text.trim();
        match step {
            AddStep::Sku => {
                if let Some(known) = self.product(text) {
                    return Err(format!(
                        "the shop has {} already: {}",
                        known.sku, known.name
                    ));
                }
                draft.sku = text.to_owned();
            }
            AddStep::Name => draft.name = Some(text.to_owned()),
            AddStep::Price => {
                draft.unit_price = self
                    .currency()
                    .parse_amount(text)
                    .map_err(|error| error.to_string())?;
            }
            AddStep::Units if text.is_empty() => draft.stock = 0,
            AddStep::Units => {
                draft.stock = text
                    .parse()
                    .map_err(|_| format!("units are a whole number from 0 to {MAX_STOCK}"))?;
            }
            AddStep::Category => draft.category = text.to_owned(),
            AddStep::Description => draft.description = text.to_owned(),
        }
        draft.change().validate().map_err(|invalid| invalid.0)?;
        Ok(draft)
    }

    /// Sends the operator's answer, with the key of the same change sent
    /// before if there was one; a new product's answer before the last
    /// is kept and the next question asked.
    fn send_prompt(&mut self) -> Vec<Effect> {
        let Some(prompt) = self.prompt.clone() else {
            return Vec::new();
        };
        if let Ask::Add(step) = prompt.ask
            && let Some(next) = step.next()
        {
            match self.take_answer(&prompt) {
                Ok(draft) => {
                    if let Some(prompt) = self.prompt.as_mut() {
                        prompt.sku.clone_from(&draft.sku);
                        prompt.draft = draft;
                        prompt.ask = Ask::Add(next);
                        prompt.text.clear();
                        prompt.problem = None;
                    }
                }
                Err(problem) => self.set_problem(problem),
            }
            return Vec::new();
        }
        let change = match self.change(&prompt) {
            Ok(change) => change,
            Err(problem) => {
                self.set_problem(problem);
                return Vec::new();
            }
        };
        if !self.is_online() {
            self.set_problem("not connected to the shop; Enter sends it once online".into());
            return Vec::new();
        }
        let idempotency_key = match prompt.sent {
            Some((sent, key)) if sent == change => key,
            _ => Uuid::new_v4().to_string(),
        };
        if let Some(prompt) = self.prompt.as_mut() {
            prompt.sent = Some((change.clone(), idempotency_key.clone()));
            prompt.sending = true;
            prompt.problem = None;
        }
        vec![Effect::Admin {
            idempotency_key,
            change,
        }]
    }

    fn set_problem(&mut self, problem: String) {
        if let Some(prompt) = self.prompt.as_mut() {
            prompt.problem = Some(problem);
        }
    }

    /// The shop applied an operator's change: the question closes and the
    /// status bar says what changed.
    fn changed(&mut self, change: &CatalogChange, product: Product) {
        if self.prompt.as_ref().is_some_and(|prompt| prompt.sending) {
            self.prompt = None;
            if self.overlay == Overlay::Prompt {
                self.overlay = Overlay::None;
            }
        }
        let name = product.name.clone();
        let sku = product.sku.clone();
        let money = Money::new(product.unit_price, product.currency);
        let available = product.available;
        let category = product.category.clone();
        self.product_changed(product);
        let text = match change {
            CatalogChange::Restock { quantity, .. } => {
                format!("restocked {quantity} × {name}: {available} available")
            }
            CatalogChange::WriteOff { quantity, .. } => {
                format!("wrote off {quantity} × {name}: {available} available")
            }
            CatalogChange::UpdateProduct {
                unit_price: Some(_),
                ..
            } => format!("{name} now costs {money}"),
            CatalogChange::UpdateProduct { name: Some(_), .. } => {
                // By sku: the shop's push of the new name may come first.
                format!("{sku} is now called {name}")
            }
            CatalogChange::UpdateProduct {
                description: Some(description),
                ..
            } if description.is_empty() => format!("{name} has no description now"),
            CatalogChange::UpdateProduct {
                category: Some(_), ..
            } if category.is_empty() => format!("{name} has no category now"),
            CatalogChange::UpdateProduct {
                category: Some(_), ..
            } => format!("{name} is in {category} now"),
            CatalogChange::UpdateProduct {
                image_url: Some(url),
                ..
            } if url.is_empty() => format!("{name} has no image now"),
            CatalogChange::UpdateProduct {
                image_url: Some(_), ..
            } => format!("{name} has a new image URL"),
            CatalogChange::UpdateProduct {
                description: Some(_),
                ..
            } => format!("{name} has a new description"),
            CatalogChange::UpdateProduct { .. } => format!("{name} changed"),
            CatalogChange::Withdraw { .. } => {
                format!("{name} withdrawn: it takes no new orders")
            }
            CatalogChange::Relist { .. } => format!("{name} is on sale again"),
            CatalogChange::AddProduct { .. } => {
                // The new product is selected, to look at or edit at once.
                if let Some(row) = self.stock().iter().position(|known| known.sku == sku) {
                    self.select(Pane::Stock, row);
                }
                format!("{name} added: {available} available")
            }
        };
        self.tell(NoticeKind::Info, text);
    }

    /// An operator's change did not go through: a lost answer keeps the
    /// question open to send again (with the same key); a refusal closes
    /// it and says why.
    fn change_failed(&mut self, message: String, retry: bool) {
        match self.prompt.as_mut() {
            Some(prompt) if retry && prompt.sending => {
                prompt.sending = false;
                prompt.problem = Some(format!("{message}; Enter sends it again"));
            }
            _ => {
                if self.prompt.as_ref().is_some_and(|prompt| prompt.sending) {
                    self.prompt = None;
                    if self.overlay == Overlay::Prompt {
                        self.overlay = Overlay::None;
                    }
                }
                self.tell(NoticeKind::Error, message);
            }
        }
    }

    fn cart_key(&mut self, action: Action) -> Vec<Effect> {
        let Some(sku) = self
            .cart
            .get(self.selection(Pane::Cart))
            .map(|(sku, _)| sku.clone())
        else {
            if matches!(action, Action::Activate | Action::PlaceOrder) {
                self.tell(
                    NoticeKind::Error,
                    "the cart is empty: add items in the stock pane with Enter or a",
                );
            }
            return Vec::new();
        };
        match action {
            Action::More => self.add(&sku),
            Action::Fewer => self.remove_one(&sku),
            Action::Delete => self.cart.retain(|(line, _)| *line != sku),
            Action::Activate | Action::PlaceOrder => self.ask_to_place(),
            _ => self.not_here(),
        }
        let row = self.selection(Pane::Cart);
        self.select(Pane::Cart, row);
        Vec::new()
    }

    fn orders_key(&mut self, action: Action) -> Vec<Effect> {
        if action == Action::PlaceOrder {
            self.ask_to_place();
            return Vec::new();
        }
        let Some(order) = self.selected_order().cloned() else {
            return Vec::new();
        };
        match action {
            Action::Activate => self.overlay = Overlay::Detail(order.id),
            Action::Pay => match (order.status, &order.checkout_url) {
                (OrderStatus::Reserved, Some(_)) => self.overlay = Overlay::Pay(order.id),
                (OrderStatus::Paid, _) => self.tell(
                    NoticeKind::Info,
                    format!("order {} is paid already", order.short_id()),
                ),
                (OrderStatus::Cancelled, _) => {
                    self.tell(
                        NoticeKind::Error,
                        format!("order {} is cancelled", order.short_id()),
                    );
                }
                _ => self.tell(
                    NoticeKind::Info,
                    format!("order {} has no checkout page yet", order.short_id()),
                ),
            },
            Action::Open => return self.open(order.id),
            Action::Cancel => {
                if order.status.is_final() {
                    self.tell(
                        NoticeKind::Error,
                        format!(
                            "order {} is {} and can no longer be cancelled",
                            order.short_id(),
                            order.status
                        ),
                    );
                } else {
                    self.overlay = Overlay::ConfirmCancel(order.id);
                }
            }
            _ => self.not_here(),
        }
        Vec::new()
    }

    /// A key bound elsewhere, meaning nothing in this pane.
    fn not_here(&mut self) {
        self.tell(
            NoticeKind::Info,
            format!(
                "that key does nothing in {}: press ? for help",
                self.pane.name()
            ),
        );
    }

    fn screen(&self) -> Rect {
        Rect::new(0, 0, self.size.0, self.size.1)
    }

    /// Where things are on the screen now.
    pub fn areas(&self) -> Areas {
        layout::areas(self.screen(), self.cart_width(), self.details)
    }

    /// Where `pane` is on the screen.
    fn area(&self, pane: Pane) -> Rect {
        let areas = self.areas();
        match pane {
            Pane::Stock => areas.stock,
            Pane::Cart => areas.cart,
            Pane::Orders => areas.orders,
        }
    }

    /// Shows the cart's total and asks before placing it, if it could be
    /// placed; says why not otherwise.
    fn ask_to_place(&mut self) {
        if self.can_place() {
            self.overlay = Overlay::ConfirmOrder;
        }
    }

    /// Whether the cart can go out as an order now; says why not.
    fn can_place(&mut self) -> bool {
        if self.placing {
            return false;
        }
        if self.cart.is_empty() {
            self.tell(
                NoticeKind::Error,
                "the cart is empty: add items in the stock pane with Enter or a",
            );
            return false;
        }
        if !self.is_online() {
            self.tell(
                NoticeKind::Error,
                "not connected to the shop; the order can be placed once online",
            );
            return false;
        }
        if let Some(withdrawn) = self
            .cart
            .iter()
            .filter_map(|(sku, _)| self.product(sku))
            .find(|product| !product.listed)
        {
            let text = format!(
                "{} was withdrawn by the shop and takes no new orders: take it out of the cart (d in Cart)",
                withdrawn.name
            );
            self.tell(NoticeKind::Error, text);
            return false;
        }
        if let Some((sku, quantity)) = self.cart.iter().find(|(sku, quantity)| {
            self.product(sku)
                .is_some_and(|product| product.available < *quantity)
        }) {
            let available = self.product(sku).map_or(0, |product| product.available);
            self.tell(
                NoticeKind::Error,
                format!("only {available} of {sku} left, {quantity} in the cart: lower the quantity first"),
            );
            return false;
        }
        true
    }

    /// One more of `sku` in the cart, if the shop has it and would take the
    /// cart as an order.
    fn add(&mut self, sku: &str) {
        let Some(product) = self.product(sku).cloned() else {
            return;
        };
        if !product.listed {
            let text = format!(
                "{} is withdrawn by the shop: it takes no new orders",
                product.name
            );
            self.tell(NoticeKind::Error, text);
            return;
        }
        let wanted = self.in_cart(sku) + 1;
        if wanted > product.available {
            let text = match product.available {
                0 => format!("{} is sold out", product.name),
                n => format!("only {n} × {} available", product.name),
            };
            self.tell(NoticeKind::Error, text);
            return;
        }
        let mut cart = self.cart.clone();
        match cart.iter_mut().find(|(line, _)| line == sku) {
            Some((_, quantity)) => *quantity = wanted,
            None => cart.push((sku.to_owned(), wanted)),
        }
        let lines = cart.iter().map(|(sku, quantity)| (sku.as_str(), *quantity));
        if let Err(error) = OrderLines::parse(lines) {
            let text = match error {
                OrderLinesError::InvalidQuantity { .. } => {
                    format!("at most {MAX_QUANTITY} of one item per order")
                }
                OrderLinesError::TooMany(_) => {
                    format!("an order has at most {MAX_LINES} different items")
                }
                other => other.to_string(),
            };
            self.tell(NoticeKind::Error, text);
            return;
        }
        self.cart = cart;
        self.tell(
            NoticeKind::Info,
            format!("{wanted} × {} in the cart · o to order", product.name),
        );
    }

    /// One fewer of `sku` in the cart, saying how many are left.
    fn remove_one(&mut self, sku: &str) {
        let Some((_, quantity)) = self.cart.iter_mut().find(|(line, _)| line == sku) else {
            return;
        };
        *quantity -= 1;
        let left = *quantity;
        self.cart.retain(|(_, quantity)| *quantity > 0);
        let name = self
            .product(sku)
            .map_or(sku.to_owned(), |product| product.name.clone());
        let text = if left == 0 {
            format!("{name} is out of the cart")
        } else {
            format!("{left} × {name} in the cart · o to order")
        };
        self.tell(NoticeKind::Info, text);
    }

    /// Sends the cart, once the customer said yes.
    fn place(&mut self) -> Vec<Effect> {
        if !self.can_place() {
            return Vec::new();
        }
        self.placing = true;
        self.tell(NoticeKind::Info, "placing the order…");
        vec![Effect::PlaceOrder {
            lines: self.cart.clone(),
            idempotency_key: Uuid::new_v4().to_string(),
        }]
    }

    fn open(&mut self, id: Uuid) -> Vec<Effect> {
        match self.order(id) {
            Some(order) if order.status == OrderStatus::Reserved => match &order.checkout_url {
                Some(_) if !self.browser => {
                    self.overlay = Overlay::Pay(id);
                    self.tell(
                        NoticeKind::Info,
                        "the browser is on your side: click the link or scan the code",
                    );
                    Vec::new()
                }
                Some(url) => {
                    let url = url.clone();
                    self.tell(
                        NoticeKind::Info,
                        "opening the checkout page in your browser",
                    );
                    vec![Effect::OpenBrowser(url)]
                }
                None => {
                    self.tell(NoticeKind::Info, "no checkout page yet; a moment");
                    Vec::new()
                }
            },
            Some(order) => {
                self.tell(
                    NoticeKind::Error,
                    format!(
                        "order {} is {}: nothing to pay",
                        order.short_id(),
                        order.status
                    ),
                );
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// A click selects the row under it (and focuses its pane).
    fn click(&mut self, column: u16, row: u16) {
        if self.overlay != Overlay::None {
            return;
        }
        let areas = self.areas();
        for (pane, area) in [
            (Pane::Stock, areas.stock),
            (Pane::Cart, areas.cart),
            (Pane::Orders, areas.orders),
        ] {
            if !area.contains(ratatui::layout::Position { x: column, y: row }) {
                continue;
            }
            self.pane = pane;
            let first = area.y + layout::FIRST_ROW;
            if row >= first {
                let visible = layout::visible_rows(area);
                let offset = layout::offset(self.selection(pane), visible);
                let clicked = offset + usize::from(row - first);
                if clicked < self.rows(pane) {
                    self.select(pane, clicked);
                }
            }
        }
    }
}

/// What `e` asks first.
fn which_field() -> String {
    let keys: Vec<String> = Field::ALL
        .iter()
        .map(|field| format!("{} {}", field.key(), field.label()))
        .collect();
    format!("press {} (Esc gives up)", keys.join(", "))
}

/// `action` with the shop's text made safe to show: control characters in
/// names, links, details and messages become visible
/// ([`shop_client::text::visible`]), so nothing the shop sends can drive
/// the terminal. Done here, at the edge, so every screen draws safe text.
fn made_safe(action: Action) -> Action {
    fn text(value: &mut String) {
        if let std::borrow::Cow::Owned(shown) = visible(value) {
            *value = shown;
        }
    }
    fn product(product: &mut Product) {
        text(&mut product.sku);
        text(&mut product.name);
        text(&mut product.category);
        product.image_url.iter_mut().for_each(text);
        // Line breaks of a description are its own; nothing else passes.
        if visible(&product.description) != product.description {
            product.description = product
                .description
                .split('\n')
                .map(|line| visible(line).into_owned())
                .collect::<Vec<_>>()
                .join("\n");
        }
    }
    fn order(order: &mut Order) {
        for line in &mut order.lines {
            text(&mut line.sku);
            line.name.iter_mut().for_each(text);
        }
        order.checkout_url.iter_mut().for_each(text);
        order.checkout_delay.iter_mut().for_each(text);
        match &mut order.refund {
            Some(RefundState::Pending { reason }) => reason.iter_mut().for_each(text),
            Some(RefundState::Failed { reason }) => text(reason),
            None => {}
        }
        for entry in &mut order.timeline {
            entry.detail.iter_mut().for_each(text);
        }
    }
    match action {
        Action::Online {
            customer_id,
            mut operator,
            mut products,
            mut orders,
        } => {
            operator.iter_mut().for_each(text);
            products.iter_mut().for_each(product);
            orders.iter_mut().for_each(order);
            Action::Online {
                customer_id,
                operator,
                products,
                orders,
            }
        }
        Action::Changed {
            change,
            product: mut changed,
        } => {
            product(&mut changed);
            Action::Changed {
                change,
                product: changed,
            }
        }
        Action::ChangeFailed { mut message, retry } => {
            text(&mut message);
            Action::ChangeFailed { message, retry }
        }
        Action::ProductChanged(mut changed) => {
            product(&mut changed);
            Action::ProductChanged(changed)
        }
        Action::OrderChanged(mut changed) => {
            order(&mut changed);
            Action::OrderChanged(changed)
        }
        Action::Placed(mut placed) => {
            order(&mut placed);
            Action::Placed(placed)
        }
        Action::Cancelled(mut cancelled) => {
            order(&mut cancelled);
            Action::Cancelled(cancelled)
        }
        Action::Failed(mut message) => {
            text(&mut message);
            Action::Failed(message)
        }
        Action::Refused(mut message) => {
            // Line breaks of the explanation are the TUI's own.
            message = message
                .split('\n')
                .map(|line| visible(line).into_owned())
                .collect::<Vec<_>>()
                .join("\n");
            Action::Refused(message)
        }
        Action::Offline {
            mut reason,
            retry_in,
        } => {
            text(&mut reason);
            Action::Offline { reason, retry_in }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use shop_shared::domain::OrderStatus;

    use super::*;
    use crate::fixtures::{self, NOW, at, online, order, product};

    fn keys(app: &mut App, actions: &[Action]) -> Vec<Effect> {
        actions
            .iter()
            .flat_map(|action| app.update(action.clone()))
            .collect()
    }

    #[test]
    fn the_cart_refuses_more_than_is_available_and_says_why() {
        let mut app = online(Vec::new());
        app.update(Action::Down);
        app.update(Action::Down);
        assert_eq!(
            app.selected_product().map(|p| p.sku.as_str()),
            Some("SKU-003")
        );
        keys(&mut app, &[Action::More, Action::More, Action::More]);
        assert_eq!(app.cart, vec![("SKU-003".to_owned(), 2)]);
        let notice = app.notice.clone().expect("a notice");
        assert_eq!(notice.kind, NoticeKind::Error);
        assert_eq!(notice.text, "only 2 × MacBook Air available");
        app.update(Action::Fewer);
        assert_eq!(app.cart, vec![("SKU-003".to_owned(), 1)]);
        app.update(Action::Fewer);
        assert!(app.cart.is_empty(), "the line goes at zero");
    }

    #[test]
    fn the_cart_stops_at_the_most_one_order_may_hold_and_says_why() {
        let mut app = App::new("ws://127.0.0.1:8080/ws", NOW);
        let products = (0..=MAX_LINES)
            .map(|n| product(&format!("SKU-{n:03}"), &format!("Item {n}"), 100, 5_000))
            .collect();
        app.update(Action::Online {
            customer_id: fixtures::CUSTOMER,
            operator: None,
            products,
            orders: Vec::new(),
        });
        for _ in 0..=MAX_QUANTITY {
            app.update(Action::More);
        }
        assert_eq!(app.cart, vec![("SKU-000".to_owned(), MAX_QUANTITY)]);
        let notice = app.notice.clone().expect("a notice");
        assert_eq!(notice.kind, NoticeKind::Error);
        assert_eq!(notice.text, "at most 1000 of one item per order");
        for _ in 1..=MAX_LINES {
            app.update(Action::Down);
            app.update(Action::More);
        }
        assert_eq!(app.cart.len(), MAX_LINES);
        assert!(!app.cart.iter().any(|(sku, _)| sku == "SKU-020"));
        let notice = app.notice.clone().expect("a notice");
        assert_eq!(notice.kind, NoticeKind::Error);
        assert_eq!(notice.text, "an order has at most 20 different items");
    }

    #[test]
    fn the_cart_totals_its_lines_and_edits_quantities_in_its_pane() {
        let mut app = online(Vec::new());
        keys(
            &mut app,
            &[Action::More, Action::Down, Action::Activate, Action::More],
        );
        assert_eq!(
            app.cart,
            vec![("SKU-001".to_owned(), 1), ("SKU-002".to_owned(), 2)]
        );
        assert_eq!(
            app.cart_total(),
            Some(Money::new(
                450_000 + 220_000,
                shop_shared::money::Currency::EUR
            ))
        );
        keys(
            &mut app,
            &[Action::NextPane, Action::More, Action::Down, Action::Delete],
        );
        assert_eq!(app.pane, Pane::Cart);
        assert_eq!(app.cart, vec![("SKU-001".to_owned(), 2)]);
    }

    #[test]
    fn placing_sends_the_cart_once_and_the_answer_clears_it() {
        let mut app = online(Vec::new());
        assert!(
            keys(&mut app, &[Action::PlaceOrder]).is_empty(),
            "an empty cart places nothing"
        );
        assert!(
            app.notice
                .as_ref()
                .is_some_and(|n| n.text.contains("cart is empty"))
        );
        app.update(Action::More);
        let effects = keys(
            &mut app,
            &[
                Action::PlaceOrder,
                Action::Yes,
                Action::PlaceOrder,
                Action::Yes,
            ],
        );
        assert_eq!(
            effects.len(),
            1,
            "a second press while placing does nothing"
        );
        let Effect::PlaceOrder {
            lines,
            idempotency_key,
        } = &effects[0]
        else {
            panic!("{effects:?}")
        };
        assert_eq!(lines, &vec![("SKU-001".to_owned(), 1)]);
        assert!(!idempotency_key.is_empty());
        assert!(app.placing);
        let placed = order(7, OrderStatus::New);
        app.update(Action::Placed(placed.clone()));
        assert!(!app.placing && app.cart.is_empty());
        assert_eq!(app.pane, Pane::Orders);
        assert_eq!(app.selected_order().map(|o| o.id), Some(placed.id));
    }

    /// Enter in the cart, or `o` anywhere, with the keys a user presses.
    fn press(app: &mut App, keys: &str) -> Vec<Effect> {
        use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
        keys.chars()
            .flat_map(|key| {
                let code = match key {
                    '\n' => KeyCode::Enter,
                    '\t' => KeyCode::Tab,
                    '\x1b' => KeyCode::Esc,
                    '\u{8}' => KeyCode::Backspace,
                    c => KeyCode::Char(c),
                };
                app.update(Action::Input(Event::Key(KeyEvent::new(
                    code,
                    KeyModifiers::NONE,
                ))))
            })
            .collect()
    }

    #[test]
    fn placing_an_order_shows_the_total_and_asks_first_from_every_pane() {
        let mut app = online(Vec::new());
        press(&mut app, "aa");
        assert!(press(&mut app, "o").is_empty(), "o asks first");
        assert_eq!(app.overlay, Overlay::ConfirmOrder);
        assert!(press(&mut app, "n").is_empty());
        assert_eq!(app.overlay, Overlay::None);
        assert_eq!(app.cart.len(), 1, "no keeps the cart");
        assert!(
            press(&mut app, "\t\n").is_empty(),
            "Enter in the cart asks too"
        );
        assert_eq!(app.overlay, Overlay::ConfirmOrder);
        assert!(press(&mut app, "\x1b").is_empty());
        assert!(
            press(&mut app, "\to").is_empty(),
            "o in the orders pane asks too"
        );
        let effects = press(&mut app, "y");
        assert!(
            matches!(&effects[..], [Effect::PlaceOrder { lines, .. }] if lines == &vec![("SKU-001".to_owned(), 2)]),
            "{effects:?}"
        );
    }

    #[test]
    fn below_the_minimum_size_no_key_acts_on_the_hidden_screen_but_q() {
        let mut app = online(Vec::new());
        press(&mut app, "ao");
        assert_eq!(app.overlay, Overlay::ConfirmOrder);
        app.update(Action::Resize {
            width: 40,
            height: 10,
        });
        assert!(
            press(&mut app, "y").is_empty(),
            "no order from a hidden question"
        );
        press(&mut app, "\t-");
        assert_eq!(app.cart, vec![("SKU-001".to_owned(), 1)]);
        press(&mut app, "q");
        assert!(app.quit);
    }

    #[test]
    fn pasted_text_is_never_read_as_keys_and_fills_the_filter() {
        let paste =
            |app: &mut App, text: &str| app.update(Action::Input(Event::Paste(text.into())));
        let mut app = online(Vec::new());
        // Every letter of it is a key of the shop: a, o, y would order.
        let effects = paste(&mut app, "Hi, as we discussed today: you pay only once.");
        assert!(effects.is_empty(), "{effects:?}");
        assert!(app.cart.is_empty(), "{:?}", app.cart);
        assert_eq!(app.overlay, Overlay::None);
        assert_eq!(
            app.notice.as_ref().map(|notice| notice.text.as_str()),
            Some("pasted text is taken only where text is typed (/ filters the stock)")
        );
        press(&mut app, "/");
        paste(&mut app, "Mac\nBook");
        assert_eq!(app.filter, "MacBook", "typed, without the line break");
    }

    #[test]
    fn h_and_l_never_change_quantities_and_unknown_keys_point_to_help() {
        let mut app = online(Vec::new());
        press(&mut app, "a");
        press(&mut app, "lhhl");
        assert_eq!(app.cart, vec![("SKU-001".to_owned(), 1)]);
        assert_eq!(app.pane, Pane::Stock, "h and l move between panes");
        press(&mut app, "z");
        assert_eq!(
            app.notice.as_ref().map(|notice| notice.text.as_str()),
            Some("unknown key: press ? for help")
        );
        press(&mut app, "p");
        assert_eq!(
            app.notice.as_ref().map(|notice| notice.text.as_str()),
            Some("that key does nothing in Stock: press ? for help")
        );
        press(&mut app, "aa-");
        assert_eq!(
            app.notice.as_ref().map(|notice| notice.text.as_str()),
            Some("2 × MacBook Pro in the cart · o to order"),
            "the count said is the count in the cart"
        );
    }

    #[test]
    fn slash_filters_the_stock_by_sku_or_name_and_esc_clears_it() {
        let mut app = online(Vec::new());
        press(&mut app, "/air");
        let shown: Vec<&str> = app.stock().iter().map(|p| p.sku.as_str()).collect();
        assert_eq!(shown, vec!["SKU-003"]);
        press(&mut app, "\n");
        assert!(
            !app.typing,
            "Enter keeps the filter and gives the keys back"
        );
        press(&mut app, "a");
        assert_eq!(
            app.cart,
            vec![("SKU-003".to_owned(), 1)],
            "a adds the filtered product"
        );
        press(&mut app, "\x1b");
        assert_eq!(app.stock().len(), 3, "Esc clears the filter");
        press(&mut app, "/sku-002\n");
        assert_eq!(
            app.selected_product().map(|p| p.name.as_str()),
            Some("iPhone 16")
        );
        press(&mut app, "/\x1b");
        assert_eq!(app.stock().len(), 3);
    }

    #[test]
    fn g_and_shift_g_go_to_the_first_and_last_row_and_pages_move() {
        use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
        let mut app = online(Vec::new());
        press(&mut app, "G");
        assert_eq!(app.selection(Pane::Stock), 2);
        press(&mut app, "g");
        assert_eq!(app.selection(Pane::Stock), 0);
        app.update(Action::Input(Event::Key(KeyEvent::new(
            KeyCode::PageDown,
            KeyModifiers::NONE,
        ))));
        assert_eq!(app.selection(Pane::Stock), 2);
        app.update(Action::Input(Event::Key(KeyEvent::new(
            KeyCode::PageUp,
            KeyModifiers::NONE,
        ))));
        assert_eq!(app.selection(Pane::Stock), 0);
    }

    #[test]
    fn an_order_over_a_limit_is_explained_and_the_cart_kept_to_send_again() {
        let mut app = online(Vec::new());
        app.update(Action::More);
        assert_eq!(keys(&mut app, &[Action::PlaceOrder, Action::Yes]).len(), 1);
        app.update(Action::Refused(
            "At most 2 orders a minute; wait 30 s.".into(),
        ));
        assert_eq!(app.overlay, Overlay::Refused);
        assert!(!app.placing);
        assert_eq!(app.cart, vec![("SKU-001".to_owned(), 1)]);
        assert!(
            keys(&mut app, &[Action::PlaceOrder]).is_empty(),
            "keys go to the explanation while it shows"
        );
        app.update(Action::Back);
        assert_eq!(app.overlay, Overlay::None);
        assert_eq!(app.refusal, None);
        assert_eq!(
            keys(&mut app, &[Action::PlaceOrder, Action::Yes]).len(),
            1,
            "the kept cart goes out again"
        );
    }

    #[test]
    fn nothing_is_placed_while_offline_and_a_lost_answer_is_reported() {
        let mut app = online(Vec::new());
        app.update(Action::More);
        app.update(Action::Offline {
            reason: "connection refused".into(),
            retry_in: std::time::Duration::from_secs(2),
        });
        assert!(keys(&mut app, &[Action::PlaceOrder]).is_empty());
        assert!(matches!(app.connection, Connection::Offline { .. }));
        assert_eq!(app.cart.len(), 1, "the cart is kept for later");
        let mut app = online(Vec::new());
        app.update(Action::More);
        app.update(Action::PlaceOrder);
        app.update(Action::Yes);
        app.update(Action::Offline {
            reason: "lost".into(),
            retry_in: std::time::Duration::from_secs(1),
        });
        assert!(!app.placing);
        assert!(
            app.notice
                .as_ref()
                .is_some_and(|n| n.kind == NoticeKind::Error)
        );
    }

    #[test]
    fn pushes_keep_the_newest_version_and_a_payment_is_announced() {
        let reserved = order(1, OrderStatus::Reserved);
        let mut app = online(vec![reserved.clone()]);
        let mut paid = order(1, OrderStatus::Paid);
        paid.version = 4;
        app.update(Action::OrderChanged(paid));
        assert_eq!(app.orders[0].status, OrderStatus::Paid);
        assert!(
            app.notice
                .as_ref()
                .is_some_and(|n| n.text.contains("is paid"))
        );
        app.update(Action::OrderChanged(reserved));
        assert_eq!(
            app.orders[0].status,
            OrderStatus::Paid,
            "an older version changes nothing"
        );
    }

    #[test]
    fn a_late_payment_refunded_is_announced() {
        let mut app = online(vec![order(1, OrderStatus::Cancelled)]);
        let mut refunded = order(1, OrderStatus::Cancelled);
        refunded.refunded = true;
        refunded.version = 5;
        app.update(Action::OrderChanged(refunded));
        assert!(app.orders[0].refunded);
        assert!(
            app.notice
                .as_ref()
                .is_some_and(|n| n.text.contains("was refunded")),
            "{:?}",
            app.notice
        );
    }

    #[test]
    fn a_changed_quantity_is_highlighted_briefly() {
        let mut app = online(Vec::new());
        let mut sold = product("SKU-002", "iPhone 16", 110_000, 7);
        sold.version = 2;
        app.update(Action::ProductChanged(sold));
        assert_eq!(app.product("SKU-002").map(|p| p.available), Some(7));
        assert!(app.flashes.contains_key("SKU-002"));
        app.update(Action::Tick(NOW.plus(FLASH)));
        assert!(app.flashes.is_empty(), "the highlight fades");
    }

    #[test]
    fn cancelling_asks_first_and_only_unpaid_orders() {
        let mut paid = order(2, OrderStatus::Paid);
        paid.created_at = at(-600);
        let mut app = online(vec![order(1, OrderStatus::Reserved), paid]);
        app.update(Action::NextPane);
        app.update(Action::NextPane);
        let reserved = app.selected_order().map(|o| o.id).expect("an order");
        assert_eq!(
            app.order(reserved).map(|o| o.status),
            Some(OrderStatus::Reserved),
            "newest first"
        );
        assert!(keys(&mut app, &[Action::Cancel]).is_empty());
        assert_eq!(app.overlay, Overlay::ConfirmCancel(reserved));
        assert!(keys(&mut app, &[Action::No]).is_empty());
        assert_eq!(app.overlay, Overlay::None);
        let effects = keys(&mut app, &[Action::Cancel, Action::Yes]);
        assert_eq!(effects, vec![Effect::CancelOrder(reserved)]);
        app.update(Action::Down);
        assert!(keys(&mut app, &[Action::Cancel]).is_empty());
        assert_eq!(
            app.overlay,
            Overlay::None,
            "a paid order is not offered for cancelling"
        );
        assert!(
            app.notice
                .as_ref()
                .is_some_and(|n| n.text.contains("can no longer be cancelled"))
        );
    }

    #[test]
    fn paying_shows_the_link_and_opens_it_on_request() {
        let reserved = order(1, OrderStatus::Reserved);
        let mut app = online(vec![reserved.clone()]);
        app.pane = Pane::Orders;
        app.update(Action::Pay);
        assert_eq!(app.overlay, Overlay::Pay(reserved.id));
        let effects = app.update(Action::PlaceOrder);
        assert_eq!(
            effects,
            vec![Effect::OpenBrowser(
                reserved.checkout_url.clone().expect("url")
            )]
        );
        app.update(Action::Back);
        assert_eq!(app.overlay, Overlay::None);
        assert_eq!(
            app.update(Action::Open),
            vec![Effect::OpenBrowser(reserved.checkout_url.expect("url"))]
        );
    }

    #[test]
    fn without_a_browser_here_opening_shows_the_pay_box_instead() {
        let reserved = order(1, OrderStatus::Reserved);
        let mut app = online(vec![reserved.clone()]);
        app.browser = false;
        app.pane = Pane::Orders;
        assert_eq!(app.update(Action::Open), Vec::new());
        assert_eq!(app.overlay, Overlay::Pay(reserved.id));
        assert_eq!(app.update(Action::PlaceOrder), Vec::new());
        assert!(
            app.notice
                .as_ref()
                .is_some_and(|n| n.text.contains("click the link or scan the code"))
        );
    }

    #[test]
    fn a_click_focuses_the_pane_and_selects_the_row_under_it() {
        let mut app = online(vec![
            order(1, OrderStatus::Paid),
            order(2, OrderStatus::Reserved),
        ]);
        app.update(Action::Resize {
            width: 80,
            height: 24,
        });
        let areas = crate::layout::areas(
            ratatui::layout::Rect::new(0, 0, 80, 24),
            app.cart_width(),
            false,
        );
        app.update(Action::Click {
            column: areas.orders.x + 3,
            row: areas.orders.y + crate::layout::FIRST_ROW + 1,
        });
        assert_eq!(app.pane, Pane::Orders);
        assert_eq!(app.selection(Pane::Orders), 1);
        app.update(Action::Click {
            column: 5,
            row: areas.stock.y + crate::layout::FIRST_ROW + 2,
        });
        assert_eq!((app.pane, app.selection(Pane::Stock)), (Pane::Stock, 2));
    }

    fn admin(effects: &[Effect]) -> (String, CatalogChange) {
        match effects {
            [
                Effect::Admin {
                    idempotency_key,
                    change,
                },
            ] => (idempotency_key.clone(), change.clone()),
            other => panic!("one change expected: {other:?}"),
        }
    }

    fn notice(app: &App) -> String {
        app.notice
            .as_ref()
            .map(|notice| notice.text.clone())
            .unwrap_or_default()
    }

    #[test]
    fn an_operator_restocks_and_a_retry_of_the_same_answer_keeps_its_key() {
        let mut app = fixtures::operator();
        let (key, change) = admin(&press(&mut app, "r5\n"));
        assert_eq!(
            change,
            CatalogChange::Restock {
                sku: "SKU-001".into(),
                quantity: 5
            }
        );
        assert!(app.prompt.as_ref().is_some_and(|p| p.sending));
        assert!(
            press(&mut app, "\n").is_empty(),
            "nothing twice while sending"
        );
        app.update(Action::ChangeFailed {
            message: "no answer from the shop".into(),
            retry: true,
        });
        assert_eq!(
            app.overlay,
            Overlay::Prompt,
            "the question stays to send again"
        );
        let (again, _) = admin(&press(&mut app, "\n"));
        assert_eq!(again, key, "the same change, the same key: applied once");
        app.update(Action::ChangeFailed {
            message: "no answer".into(),
            retry: true,
        });
        let (other, change) = admin(&press(&mut app, "0\u{8}0\n"));
        assert_ne!(other, key, "another answer is another change");
        assert!(matches!(
            change,
            CatalogChange::Restock { quantity: 50, .. }
        ));
        let mut restocked = app.product("SKU-001").cloned().expect("product");
        restocked.available = 60;
        restocked.version = 2;
        app.update(Action::Changed {
            change,
            product: restocked,
        });
        assert_eq!(app.overlay, Overlay::None);
        assert_eq!(app.product("SKU-001").map(|p| p.available), Some(60));
        assert_eq!(notice(&app), "restocked 50 × MacBook Pro: 60 available");
    }

    #[test]
    fn a_refused_write_off_closes_the_question_and_says_why() {
        let mut app = fixtures::operator();
        let (_, change) = admin(&press(&mut app, "w2 dropped in transit\n"));
        assert_eq!(
            change,
            CatalogChange::WriteOff {
                sku: "SKU-001".into(),
                quantity: 2,
                reason: "dropped in transit".into()
            }
        );
        app.update(Action::ChangeFailed {
            message: "the shop refused: only 10 available (not_enough_stock)".into(),
            retry: false,
        });
        assert_eq!(app.overlay, Overlay::None);
        assert_eq!(app.prompt, None);
        let shown = app.notice.clone().expect("a notice");
        assert_eq!(shown.kind, NoticeKind::Error);
        assert!(shown.text.contains("not_enough_stock"), "{shown:?}");
        assert!(press(&mut app, "w0\n").is_empty(), "zero is no quantity");
        assert!(
            app.prompt
                .as_ref()
                .and_then(|p| p.problem.as_deref())
                .is_some_and(|problem| problem.contains("whole number")),
            "{:?}",
            app.prompt
        );
    }

    #[test]
    fn a_price_is_asked_as_a_decimal_amount_in_the_shops_currency() {
        let mut app = fixtures::operator();
        assert!(press(&mut app, "P12.345\n").is_empty());
        assert!(
            app.prompt.as_ref().is_some_and(|p| p.problem.is_some()),
            "three decimals are not euros"
        );
        press(&mut app, "\x1b");
        assert_eq!(app.overlay, Overlay::None, "Esc gives up");
        let (_, change) = admin(&press(&mut app, "P1500.50\n"));
        assert!(
            matches!(
                change,
                CatalogChange::UpdateProduct {
                    unit_price: Some(150_050),
                    name: None,
                    ..
                }
            ),
            "{change:?}"
        );
    }

    #[test]
    fn withdrawing_asks_first_and_a_withdrawn_product_is_offered_for_relisting() {
        let mut app = fixtures::operator();
        assert!(press(&mut app, "Wn").is_empty());
        assert_eq!(app.overlay, Overlay::None, "n keeps it listed");
        let (_, change) = admin(&press(&mut app, "Wy"));
        assert_eq!(
            change,
            CatalogChange::Withdraw {
                sku: "SKU-001".into()
            }
        );
        let mut withdrawn = app.product("SKU-001").cloned().expect("product");
        withdrawn.listed = false;
        withdrawn.version = 2;
        app.update(Action::Changed {
            change,
            product: withdrawn,
        });
        assert_eq!(
            notice(&app),
            "MacBook Pro withdrawn: it takes no new orders"
        );
        press(&mut app, "W");
        assert_eq!(app.prompt.as_ref().map(|p| p.ask), Some(Ask::Relist));
    }

    fn problem(app: &App) -> String {
        app.prompt
            .as_ref()
            .and_then(|prompt| prompt.problem.clone())
            .unwrap_or_default()
    }

    fn asked(app: &App) -> Option<Ask> {
        app.prompt.as_ref().map(|prompt| prompt.ask)
    }

    #[test]
    fn an_operator_adds_a_product_one_question_at_a_time_and_a_retry_keeps_its_key() {
        let mut app = fixtures::operator();
        assert!(press(&mut app, "n").is_empty());
        assert_eq!(asked(&app), Some(Ask::Add(AddStep::Sku)));
        for (answer, next) in [
            ("SKU-042\n", AddStep::Name),
            ("Mug\n", AddStep::Price),
            ("12.50\n", AddStep::Units),
            ("5\n", AddStep::Category),
            ("Kitchen\n", AddStep::Description),
        ] {
            assert!(press(&mut app, answer).is_empty(), "{answer}: asks on");
            assert_eq!(asked(&app), Some(Ask::Add(next)), "after {answer}");
            assert_eq!(problem(&app), "");
        }
        let (key, change) = admin(&press(&mut app, "Holds a pint\n"));
        assert_eq!(
            change,
            CatalogChange::AddProduct {
                sku: "SKU-042".into(),
                name: "Mug".into(),
                description: "Holds a pint".into(),
                category: "Kitchen".into(),
                image_url: None,
                unit_price: 1_250,
                stock: 5,
            }
        );
        assert!(
            press(&mut app, "\n").is_empty(),
            "nothing twice while sending"
        );
        app.update(Action::ChangeFailed {
            message: "no answer from the shop".into(),
            retry: true,
        });
        assert_eq!(asked(&app), Some(Ask::Add(AddStep::Description)));
        let (again, resent) = admin(&press(&mut app, "\n"));
        assert_eq!(again, key, "the same product, the same key: added once");
        assert_eq!(resent, change);
        let mut added = product("SKU-042", "Mug", 1_250, 5);
        added.category = "Kitchen".into();
        app.update(Action::Changed {
            change,
            product: added,
        });
        assert_eq!(app.overlay, Overlay::None);
        assert_eq!(notice(&app), "Mug added: 5 available");
        assert_eq!(
            app.selected_product().map(|p| p.sku.as_str()),
            Some("SKU-042"),
            "the new product is selected"
        );
    }

    #[test]
    fn adding_a_product_asks_again_after_a_refused_answer_and_esc_gives_up() {
        let mut app = fixtures::operator();
        press(&mut app, "nSKU 1\n");
        assert_eq!(asked(&app), Some(Ask::Add(AddStep::Sku)), "stays");
        assert!(
            problem(&app).starts_with("a sku is 1 to 64"),
            "{}",
            problem(&app)
        );
        press(&mut app, "\u{8}\u{8}-1\n");
        assert_eq!(asked(&app), Some(Ask::Add(AddStep::Name)));
        press(&mut app, "\u{8}\u{8}\u{8}\u{8}\u{8}\u{8}\n");
        assert!(
            problem(&app).starts_with("a name is 1 to"),
            "{}",
            problem(&app)
        );
        press(&mut app, "Mug\n12.345\n");
        assert_eq!(asked(&app), Some(Ask::Add(AddStep::Price)));
        assert!(problem(&app).contains("EUR"), "{}", problem(&app));
        press(&mut app, "\u{8}\n-3\n");
        assert_eq!(asked(&app), Some(Ask::Add(AddStep::Units)));
        assert!(
            problem(&app).starts_with("stock must be between 0"),
            "{}",
            problem(&app)
        );
        press(&mut app, "\u{8}\u{8}\n");
        assert_eq!(
            app.prompt
                .as_ref()
                .map(|p| (p.draft.unit_price, p.draft.stock)),
            Some((1_234, 0)),
            "Enter alone: no units yet"
        );
        assert!(press(&mut app, "\x1b").is_empty());
        assert_eq!((app.overlay, app.prompt.is_none()), (Overlay::None, true));
        press(&mut app, "nSKU-001\n");
        assert_eq!(problem(&app), "the shop has SKU-001 already: MacBook Pro");
        press(&mut app, "\x1b");
        let mut customer = online(Vec::new());
        assert!(press(&mut customer, "n").is_empty());
        assert_eq!(customer.overlay, Overlay::None);
        assert_eq!(
            notice(&customer),
            "that key is an operator's: press ? for your keys"
        );
    }

    #[test]
    fn an_operator_renames_the_selected_product_and_a_retry_keeps_its_key() {
        let mut app = fixtures::operator();
        press(&mut app, "e");
        assert_eq!(asked(&app), Some(Ask::EditWhich));
        press(&mut app, "x");
        assert!(
            problem(&app).starts_with("press n name, d description"),
            "{}",
            problem(&app)
        );
        press(&mut app, "n");
        assert_eq!(asked(&app), Some(Ask::Edit(Field::Name)));
        assert!(press(&mut app, "MacBook Pro\n").is_empty());
        assert_eq!(problem(&app), "that is its name already");
        let (key, change) = admin(&press(&mut app, " M4\n"));
        assert_eq!(
            change,
            CatalogChange::UpdateProduct {
                sku: "SKU-001".into(),
                name: Some("MacBook Pro M4".into()),
                description: None,
                category: None,
                image_url: None,
                unit_price: None,
            },
            "only the name"
        );
        app.update(Action::ChangeFailed {
            message: "no answer from the shop".into(),
            retry: true,
        });
        assert_eq!(asked(&app), Some(Ask::Edit(Field::Name)));
        let (again, _) = admin(&press(&mut app, "\n"));
        assert_eq!(again, key, "the same change, the same key: applied once");
        let mut renamed = app.product("SKU-001").cloned().expect("product");
        renamed.name = "MacBook Pro M4".into();
        renamed.version = 2;
        app.update(Action::Changed {
            change,
            product: renamed,
        });
        assert_eq!(app.overlay, Overlay::None);
        assert_eq!(notice(&app), "SKU-001 is now called MacBook Pro M4");
        assert_eq!(
            app.product("SKU-001").map(|p| p.name.as_str()),
            Some("MacBook Pro M4")
        );
    }

    #[test]
    fn an_edit_refuses_a_bad_value_on_its_question_and_an_empty_image_url_removes_it() {
        let mut app = fixtures::operator();
        assert!(press(&mut app, "en\n").is_empty(), "no name is no name");
        assert!(
            problem(&app).starts_with("a name is 1 to"),
            "{}",
            problem(&app)
        );
        press(&mut app, "\x1b");
        assert_eq!((app.overlay, app.prompt.is_none()), (Overlay::None, true));
        assert!(press(&mut app, "eiftp://example.com/a.png\n").is_empty());
        assert_eq!(asked(&app), Some(Ask::Edit(Field::ImageUrl)), "stays");
        assert!(
            problem(&app).starts_with("an image URL is"),
            "{}",
            problem(&app)
        );
        press(&mut app, "\x1b");
        let mut pictured = app.product("SKU-001").cloned().expect("product");
        pictured.image_url = Some("https://example.com/mbp.png".into());
        pictured.version = 2;
        app.update(Action::ProductChanged(pictured.clone()));
        let (_, change) = admin(&press(&mut app, "ei\n"));
        assert!(
            matches!(&change, CatalogChange::UpdateProduct { image_url: Some(url), name: None, description: None, category: None, unit_price: None, .. } if url.is_empty()),
            "{change:?}"
        );
        pictured.image_url = None;
        pictured.version = 3;
        app.update(Action::Changed {
            change,
            product: pictured,
        });
        assert_eq!(notice(&app), "MacBook Pro has no image now");
        let (_, change) = admin(&press(&mut app, "ecDesks\n"));
        assert!(
            matches!(&change, CatalogChange::UpdateProduct { category: Some(c), name: None, .. } if c == "Desks"),
            "{change:?}"
        );
    }

    #[test]
    fn operators_are_not_offered_the_cart_nor_customers_the_catalogue_keys() {
        let mut app = fixtures::operator();
        assert!(press(&mut app, "a").is_empty());
        assert!(app.cart.is_empty());
        assert!(
            notice(&app).contains("an operator's session places no orders"),
            "{}",
            notice(&app)
        );
        press(&mut app, "\t\to");
        assert_eq!(app.overlay, Overlay::None);
        assert!(notice(&app).contains("places no orders"));
        let mut customer = online(Vec::new());
        assert!(press(&mut customer, "r").is_empty());
        assert_eq!(customer.overlay, Overlay::None);
        assert_eq!(
            notice(&customer),
            "that key is an operator's: press ? for your keys"
        );
    }

    #[test]
    fn a_withdrawn_product_is_not_added_and_blocks_an_order_holding_it() {
        let mut app = online(Vec::new());
        press(&mut app, "a");
        let mut withdrawn = app.product("SKU-001").cloned().expect("product");
        withdrawn.listed = false;
        withdrawn.version = 2;
        app.update(Action::ProductChanged(withdrawn));
        press(&mut app, "a");
        assert_eq!(app.cart, vec![("SKU-001".to_owned(), 1)]);
        assert_eq!(
            notice(&app),
            "MacBook Pro is withdrawn by the shop: it takes no new orders"
        );
        press(&mut app, "o");
        assert_eq!(
            app.overlay,
            Overlay::None,
            "no order of a withdrawn product"
        );
        assert!(notice(&app).contains("was withdrawn"), "{}", notice(&app));
    }

    #[test]
    fn a_changed_price_is_highlighted_and_said_when_in_the_cart() {
        let mut app = online(Vec::new());
        let mut repriced = app.product("SKU-002").cloned().expect("product");
        repriced.unit_price = 99_900;
        repriced.version = 2;
        app.update(Action::ProductChanged(repriced.clone()));
        assert!(app.price_flashes.contains_key("SKU-002"));
        assert!(
            !app.flashes.contains_key("SKU-002"),
            "the quantity is the same"
        );
        assert_eq!(app.notice, None, "not in the cart: only highlighted");
        press(&mut app, "ja");
        repriced.unit_price = 100_000;
        repriced.version = 3;
        app.update(Action::ProductChanged(repriced));
        assert_eq!(
            notice(&app),
            "iPhone 16 now costs 1,000.00 EUR (was 999.00 EUR)"
        );
        app.update(Action::Tick(NOW.plus(FLASH)));
        assert!(app.price_flashes.is_empty(), "the highlight fades");
    }

    #[test]
    fn shift_c_shows_one_category_at_a_time_and_esc_all_again() {
        let mut app = online(Vec::new());
        press(&mut app, "C");
        assert_eq!(app.category.as_deref(), Some("Laptops"));
        let shown: Vec<&str> = app.stock().iter().map(|p| p.sku.as_str()).collect();
        assert_eq!(shown, vec!["SKU-001", "SKU-003"]);
        press(&mut app, "C");
        assert_eq!(app.category.as_deref(), Some("Phones"));
        press(&mut app, "C");
        assert_eq!(app.category, None, "after the last, all again");
        press(&mut app, "CC\x1b");
        assert_eq!((app.category.as_deref(), app.stock().len()), (None, 3));
    }

    #[test]
    fn i_shows_the_details_over_the_cart_and_tab_hides_them_to_go_there() {
        let mut app = online(Vec::new());
        press(&mut app, "i");
        assert!(app.details);
        assert!(app.areas().detail.is_some() && app.areas().cart.is_empty());
        press(&mut app, "\t");
        assert!(!app.details);
        assert_eq!(app.pane, Pane::Cart);
    }

    #[test]
    fn a_description_keeps_its_lines_and_nothing_else_that_drives_the_terminal() {
        let mut app = online(Vec::new());
        let mut hostile = app.product("SKU-001").cloned().expect("product");
        hostile.description = "one\x1b[2J\ntwo\u{202e}".into();
        hostile.category = "Lap\ntops".into();
        hostile.version = 2;
        app.update(Action::ProductChanged(hostile));
        let shown = app.product("SKU-001").expect("product");
        assert_eq!(shown.description, "one␛[2J\ntwo\\u{202e}");
        assert_eq!(shown.category, "Lap␊tops");
    }

    #[test]
    fn a_resync_drops_cart_lines_the_shop_no_longer_sells() {
        let mut app = online(Vec::new());
        app.update(Action::More);
        app.update(Action::Online {
            customer_id: fixtures::CUSTOMER,
            operator: None,
            products: vec![product("SKU-002", "iPhone 16", 110_000, 10)],
            orders: Vec::new(),
        });
        assert!(app.cart.is_empty());
        assert_eq!(app.products.len(), 1);
        let _ = at(0);
    }
}
