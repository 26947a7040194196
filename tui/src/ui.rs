//! Drawing: `draw(&App)` renders the state and changes nothing.
//!
//! Stock across the top (the selected product's details beside it on a
//! wide terminal), cart and orders below, the focused pane's keys and the
//! status bar on the last lines; help, order detail, payment,
//! confirmations and an operator's questions as boxes on top. Below [`layout::MIN_SIZE`] a screen says
//! the terminal is too small.
//!
//! Money and ids are never cut: their columns are as wide as their widest
//! value, and names take what is left, elided with `…`. Every state shows
//! without colour too (`NO_COLOR`): reverse video for the selection, thick
//! borders, bold and a `▶` for the focused pane, bold for what needs
//! attention.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Cell, Clear, Paragraph, Row, Table, Wrap};
use shop_client::text::{elide, pad_left, pad_right, width};
use shop_client::words;
use shop_shared::domain::{Order, OrderStatus, Product, RefundState};
use shop_shared::money::Money;
use shop_shared::time::countdown;

use crate::app::{AddStep, App, Ask, Connection, Field, NoticeKind, Overlay, Pane, Prompt};
use crate::keys;
use crate::layout::{self, MIN_SIZE, centred};
use crate::qr;

const ACCENT: Color = Color::Cyan;

/// Styles with colour, or, without (`NO_COLOR`), with modifiers only.
#[derive(Debug, Clone, Copy)]
struct Theme {
    color: bool,
}

impl Theme {
    fn of(app: &App) -> Theme {
        Theme { color: app.color }
    }

    /// `colour`, or `modifier` without colours.
    fn pick(&self, colour: Style, modifier: Modifier) -> Style {
        if self.color {
            colour
        } else {
            Style::new().add_modifier(modifier)
        }
    }

    fn accent(&self) -> Style {
        self.pick(Style::new().fg(ACCENT), Modifier::BOLD)
    }

    fn dim(&self) -> Style {
        self.pick(Style::new().fg(Color::DarkGray), Modifier::DIM)
    }

    fn error(&self) -> Style {
        self.pick(Style::new().fg(Color::Red), Modifier::BOLD)
    }

    fn warning(&self) -> Style {
        self.pick(Style::new().fg(Color::Yellow), Modifier::BOLD)
    }

    fn good(&self) -> Style {
        self.pick(Style::new().fg(Color::Green), Modifier::empty())
    }

    fn border(&self, focused: bool) -> Style {
        match (focused, self.color) {
            (true, true) => Style::new().fg(ACCENT).add_modifier(Modifier::BOLD),
            (false, true) => Style::new().fg(Color::DarkGray),
            (true, false) => Style::new().add_modifier(Modifier::BOLD),
            (false, false) => Style::new(),
        }
    }

    /// The selected row: reversed in the focused pane, underlined in the
    /// others.
    fn selected(&self, focused: bool) -> Style {
        if focused {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new().add_modifier(Modifier::UNDERLINED)
        }
    }

    /// A quantity that just changed.
    fn flash(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Black).bg(Color::Yellow),
            Modifier::BOLD | Modifier::ITALIC,
        )
    }

    fn status(&self, status: OrderStatus) -> Style {
        match status {
            OrderStatus::New => self.pick(Style::new().fg(Color::Cyan), Modifier::ITALIC),
            OrderStatus::Reserved => self.pick(Style::new().fg(Color::Yellow), Modifier::BOLD),
            OrderStatus::Paid => self.pick(
                Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
                Modifier::BOLD,
            ),
            OrderStatus::Cancelled => self.pick(Style::new().fg(Color::Red), Modifier::DIM),
        }
    }
}

pub fn draw(app: &App, frame: &mut Frame) {
    let screen = frame.area();
    if layout::too_small(screen) {
        draw_too_small(app, frame, screen);
    } else {
        draw_shop(app, frame, screen);
    }
    if !app.color {
        // Without colours nothing may carry one: a colour change would
        // also end the reverse video and bold around it on terminals
        // whose library writes nothing for colours under NO_COLOR.
        for cell in frame.buffer_mut().content.iter_mut() {
            cell.fg = Color::Reset;
            cell.bg = Color::Reset;
        }
    }
}

fn draw_too_small(app: &App, frame: &mut Frame, screen: Rect) {
    let theme = Theme::of(app);
    let lines = vec![
        Line::from(Span::styled(
            format!("terminal too small (need {}×{})", MIN_SIZE.0, MIN_SIZE.1),
            Style::new().add_modifier(Modifier::BOLD),
        )),
        Line::from(Span::styled(
            format!("now {}×{}", screen.width, screen.height),
            theme.dim(),
        )),
        Line::from(Span::styled("q quits", theme.dim())),
    ];
    let area = centred(screen, screen.width, lines.len() as u16);
    frame.render_widget(
        Paragraph::new(lines).centered().wrap(Wrap { trim: true }),
        area,
    );
}

fn draw_shop(app: &App, frame: &mut Frame, screen: Rect) {
    let areas = layout::areas(screen, app.cart_width(), app.details);
    draw_stock(app, frame, areas.stock);
    if let Some(area) = areas.detail {
        draw_product(app, frame, area);
    }
    if !areas.cart.is_empty() {
        draw_cart(app, frame, areas.cart);
    }
    if !areas.orders.is_empty() {
        draw_orders(app, frame, areas.orders);
    }
    draw_footer(app, frame, areas.footer);
    draw_status(app, frame, areas.status);
    match app.overlay {
        Overlay::None => {}
        Overlay::Help => draw_help(app, frame, screen),
        Overlay::Detail(id) => {
            if let Some(order) = app.order(id) {
                draw_detail(app, order, frame, screen);
            }
        }
        Overlay::Pay(id) => {
            if let Some(order) = app.order(id) {
                draw_pay(app, order, frame, screen);
            }
        }
        Overlay::ConfirmCancel(id) => {
            if let Some(order) = app.order(id) {
                draw_confirm(app, order, frame, screen);
            }
        }
        Overlay::ConfirmOrder => draw_confirm_order(app, frame, screen),
        Overlay::Refused => {
            if let Some(explanation) = &app.refusal {
                draw_refused(app, explanation, frame, screen);
            }
        }
        Overlay::Prompt => {
            if let Some(prompt) = &app.prompt {
                draw_prompt(app, prompt, frame, screen);
            }
        }
    }
}

fn pane_block(app: &App, pane: Pane, title: String) -> Block<'static> {
    let theme = Theme::of(app);
    let focused = app.pane == pane && app.overlay == Overlay::None;
    let (title, kind) = match (focused, app.color) {
        (true, false) => (format!("▶{title}"), BorderType::Thick),
        _ => (title, BorderType::Plain),
    };
    Block::bordered()
        .title(title)
        .border_type(kind)
        .border_style(theme.border(focused))
}

fn highlight(app: &App, pane: Pane) -> Style {
    Theme::of(app).selected(app.pane == pane)
}

/// The rows of `rows` that fit `area`, keeping the selection in view.
fn visible<T>(rows: &[T], selected: usize, area: Rect) -> (usize, &[T]) {
    let shown = layout::visible_rows(area);
    let first = layout::offset(selected, shown).min(rows.len());
    let last = (first + shown).min(rows.len());
    (first, &rows[first..last])
}

/// Column headers; names starting with `>` are right-aligned (numbers).
fn header(names: &[&'static str]) -> Row<'static> {
    Row::new(names.iter().map(|name| match name.strip_prefix('>') {
        Some(name) => Cell::from(Line::from(name).right_aligned()),
        None => Cell::from(*name),
    }))
    .style(Style::new().add_modifier(Modifier::BOLD))
}

/// The width of a column that is never cut: its widest value or header.
fn whole<'a>(header: &str, values: impl IntoIterator<Item = &'a str>) -> u16 {
    let widest = values
        .into_iter()
        .map(width)
        .chain([width(header.trim_start_matches('>'))])
        .max()
        .unwrap_or(0);
    u16::try_from(widest).unwrap_or(u16::MAX)
}

/// What is left in `area` (inside its borders) for the one column that
/// may be elided, after the `whole` columns and a space between columns.
fn rest(area: Rect, whole: &[u16]) -> usize {
    let taken: u16 = whole.iter().sum::<u16>() + whole.len() as u16;
    usize::from(area.width.saturating_sub(2).saturating_sub(taken))
}

fn right(text: String) -> Cell<'static> {
    Cell::from(Line::from(text).right_aligned())
}

fn draw_stock(app: &App, frame: &mut Frame, area: Rect) {
    let theme = Theme::of(app);
    let stock = app.stock();
    let selected = app.selection(Pane::Stock);
    let (first, shown) = visible(&stock, selected, area);
    let prices: Vec<String> = stock
        .iter()
        .map(|product| Money::new(product.unit_price, product.currency).to_string())
        .collect();
    // Customers see what they may buy and what they hold; operators where
    // every unit is.
    let numbers: &[&str] = if app.is_operator() {
        &[">AVAIL", ">RSVD", ">SOLD", ">W/OFF", ">RCVD"]
    } else {
        &[">AVAILABLE", ">IN CART"]
    };
    let counts: Vec<Vec<String>> = stock
        .iter()
        .map(|product| stock_counts(app, product))
        .collect();
    let mut columns = vec![
        whole("SKU", stock.iter().map(|product| product.sku.as_str())),
        whole(">PRICE", prices.iter().map(String::as_str)),
    ];
    for (index, name) in numbers.iter().enumerate() {
        columns.push(whole(name, counts.iter().map(|row| row[index].as_str())));
    }
    let name_width = rest(area, &columns);
    let rows: Vec<Row> = shown
        .iter()
        .enumerate()
        .map(|(index, product)| {
            // The mark of a withdrawn product comes first: a long name is
            // elided, never the mark.
            let name = if product.listed {
                product.name.clone()
            } else {
                format!("withdrawn: {}", product.name)
            };
            let mut price = right(prices[first + index].clone());
            if app.price_flashes.contains_key(&product.sku) {
                price = price.style(theme.flash());
            }
            let mut cells = vec![
                Cell::from(product.sku.clone()),
                Cell::from(elide(&name, name_width).into_owned()),
                price,
            ];
            cells.extend(counts[first + index].iter().cloned().map(right));
            let mut row = Row::new(cells);
            if app.flashes.contains_key(&product.sku) {
                row = row.style(theme.flash());
            } else if product.available == 0 || !product.listed {
                row = row.style(theme.dim());
            }
            if first + index == selected {
                row = row.style(highlight(app, Pane::Stock));
            }
            row
        })
        .collect();
    let mut widths = vec![
        Constraint::Length(columns[0]),
        Constraint::Fill(1),
        Constraint::Length(columns[1]),
    ];
    widths.extend(columns[2..].iter().map(|width| Constraint::Length(*width)));
    let mut names = vec!["SKU", "NAME", ">PRICE"];
    names.extend_from_slice(numbers);
    let title = stock_title(app, stock.len());
    let table = Table::new(rows, widths)
        .header(header(&names))
        .block(pane_block(app, Pane::Stock, title));
    frame.render_widget(table, area);
    if stock.is_empty() {
        let message = match app.connection {
            Connection::Online { .. } if !app.filter.is_empty() || app.category.is_some() => {
                "Nothing matches the filter; Esc clears it."
            }
            Connection::Online { .. } => "No products for sale.",
            _ => "Waiting for the shop…",
        };
        placeholder(app, frame, area, message);
    }
}

/// The numbers of a stock row after the price: available and in the cart,
/// or, for operators, available, reserved, sold, written off, received.
fn stock_counts(app: &App, product: &Product) -> Vec<String> {
    let available = product.available.to_string();
    if app.is_operator() {
        let levels = product.stock.as_ref();
        let level = |pick: fn(&shop_shared::domain::StockLevels) -> i64| {
            levels.map_or_else(|| "-".to_owned(), |levels| pick(levels).to_string())
        };
        return vec![
            available,
            level(|l| l.reserved),
            level(|l| l.sold),
            level(|l| l.written_off),
            level(|l| l.received),
        ];
    }
    let in_cart = app.in_cart(&product.sku);
    let in_cart = if in_cart > 0 {
        in_cart.to_string()
    } else {
        String::new()
    };
    vec![available, in_cart]
}

/// The selected product in full, most needed first so that a small
/// terminal cuts the least: name and category, price and units (and
/// whether it is withdrawn), where every unit is (operators), the
/// description (wrapped), the image's address.
fn draw_product(app: &App, frame: &mut Frame, area: Rect) {
    let theme = Theme::of(app);
    let block = Block::bordered().border_style(theme.border(false));
    let Some(product) = app.selected_product() else {
        frame.render_widget(block.title(" Details "), area);
        placeholder(app, frame, area, "No product selected.");
        return;
    };
    let mut name = vec![Span::styled(
        product.name.clone(),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    if !product.category.is_empty() {
        name.push(Span::styled(
            format!(" · {}", product.category),
            theme.dim(),
        ));
    }
    let mut price = Span::raw(Money::new(product.unit_price, product.currency).to_string());
    if app.price_flashes.contains_key(&product.sku) {
        price = price.style(theme.flash());
    }
    let mut units = vec![
        price,
        Span::raw(format!(" · {} available", product.available)),
    ];
    if !product.listed {
        units.push(Span::styled(" · withdrawn: no new orders", theme.error()));
    }
    let mut lines = vec![Line::from(name), Line::from(units)];
    if let Some(levels) = &product.stock {
        lines.push(Line::from(Span::styled(
            format!(
                "{} reserved · {} sold · {} written off · {} received",
                levels.reserved, levels.sold, levels.written_off, levels.received
            ),
            theme.dim(),
        )));
    }
    lines.extend(
        product
            .description
            .lines()
            .map(|line| Line::from(line.to_owned())),
    );
    if let Some(url) = &product.image_url {
        lines.push(Line::from(vec![
            Span::styled("image ", theme.dim()),
            Span::styled(url.clone(), theme.accent()),
        ]));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .block(block.title(format!(" {} · details ", product.sku)))
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// ` Stock (3) `, or with a category and a filter
/// ` Stock · Laptops · /mac_ (2 of 3) `.
fn stock_title(app: &App, shown: usize) -> String {
    let mut title = " Stock".to_owned();
    if let Some(category) = &app.category {
        title.push_str(&format!(" · {category}"));
    }
    if !app.filter.is_empty() || app.typing {
        let cursor = if app.typing { "_" } else { "" };
        title.push_str(&format!(" · /{}{cursor}", app.filter));
    }
    if app.category.is_none() && app.filter.is_empty() && !app.typing {
        return format!("{title} ({}) ", app.products.len());
    }
    format!("{title} ({shown} of {}) ", app.products.len())
}

fn product_name(product: Option<&Product>, sku: &str) -> String {
    product.map_or_else(|| sku.to_owned(), |product| product.name.clone())
}

/// A cart line's amount, when its product is known.
fn line_amount(product: Option<&Product>, quantity: i64) -> String {
    product
        .map(|product| {
            Money::new(
                product.unit_price.saturating_mul(quantity),
                product.currency,
            )
            .to_string()
        })
        .unwrap_or_default()
}

fn draw_cart(app: &App, frame: &mut Frame, area: Rect) {
    let theme = Theme::of(app);
    let selected = app.selection(Pane::Cart);
    let (first, shown) = visible(&app.cart, selected, area);
    let amounts: Vec<String> = app
        .cart
        .iter()
        .map(|(sku, quantity)| line_amount(app.product(sku), *quantity))
        .collect();
    let quantities: Vec<String> = app.cart.iter().map(|(_, q)| q.to_string()).collect();
    let columns = [
        whole(">QTY", quantities.iter().map(String::as_str)),
        whole(">AMOUNT", amounts.iter().map(String::as_str)),
    ];
    let name_width = rest(area, &columns);
    let rows: Vec<Row> = shown
        .iter()
        .enumerate()
        .map(|(index, (sku, quantity))| {
            let product = app.product(sku);
            let name = product_name(product, sku);
            let short = product.is_some_and(|product| product.available < *quantity);
            let mut row = Row::new(vec![
                Cell::from(elide(&name, name_width).into_owned()),
                right(quantity.to_string()),
                right(amounts[first + index].clone()),
            ]);
            if short {
                row = row.style(theme.error());
            }
            if first + index == selected {
                row = row.style(highlight(app, Pane::Cart));
            }
            row
        })
        .collect();
    let total = match app.cart_total() {
        Some(total) if !app.cart.is_empty() => format!(" Total {total} "),
        _ => String::new(),
    };
    let title = if app.placing {
        " Cart · placing… ".to_owned()
    } else {
        " Cart ".to_owned()
    };
    let block = pane_block(app, Pane::Cart, title).title_bottom(Line::from(total).right_aligned());
    let table = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Length(columns[0]),
            Constraint::Length(columns[1]),
        ],
    )
    .header(header(&["ITEM", ">QTY", ">AMOUNT"]))
    .block(block);
    frame.render_widget(table, area);
    if app.cart.is_empty() {
        let text = if app.is_operator() {
            "An operator's session places no orders: shop with a customer's profile."
        } else {
            "Empty: add items in the stock pane with a or Enter, then press o to order."
        };
        placeholder(app, frame, area, text);
    }
}

fn money(order: &Order) -> String {
    match (order.total, order.currency) {
        (Some(total), Some(currency)) => Money::new(total, currency).to_string(),
        _ => "-".to_owned(),
    }
}

fn time_left(app: &App, order: &Order) -> String {
    match (order.status, order.pay_until) {
        (OrderStatus::Reserved, Some(deadline)) => countdown(deadline, app.now),
        _ => String::new(),
    }
}

fn draw_orders(app: &App, frame: &mut Frame, area: Rect) {
    let theme = Theme::of(app);
    let selected = app.selection(Pane::Orders);
    let (first, shown) = visible(&app.orders, selected, area);
    let totals: Vec<String> = app.orders.iter().map(money).collect();
    let lefts: Vec<String> = app
        .orders
        .iter()
        .map(|order| time_left(app, order))
        .collect();
    let columns = [
        whole("ORDER", ["00000000"]),
        whole(">TOTAL", totals.iter().map(String::as_str)),
        whole(">PAY IN", lefts.iter().map(String::as_str)),
    ];
    let status_width = rest(area, &columns);
    let rows: Vec<Row> = shown
        .iter()
        .enumerate()
        .map(|(index, order)| {
            let status = words::status(order);
            let mut row = Row::new(vec![
                Cell::from(order.short_id()),
                Cell::from(Span::styled(
                    elide(&status, status_width).into_owned(),
                    theme.status(order.status),
                )),
                right(totals[first + index].clone()),
                right(lefts[first + index].clone()),
            ]);
            if first + index == selected {
                row = row.style(highlight(app, Pane::Orders));
            }
            row
        })
        .collect();
    let widths = [
        Constraint::Length(columns[0]),
        Constraint::Fill(1),
        Constraint::Length(columns[1]),
        Constraint::Length(columns[2]),
    ];
    let table = Table::new(rows, widths)
        .header(header(&["ORDER", "STATUS", ">TOTAL", ">PAY IN"]))
        .block(pane_block(
            app,
            Pane::Orders,
            format!(" My orders ({}) ", app.orders.len()),
        ));
    frame.render_widget(table, area);
    if app.orders.is_empty() {
        placeholder(app, frame, area, "No orders yet.");
    }
}

fn placeholder(app: &App, frame: &mut Frame, area: Rect, text: &str) {
    let inner = Rect::new(
        area.x + 2,
        area.y + layout::FIRST_ROW,
        area.width.saturating_sub(4),
        area.height.saturating_sub(layout::FIRST_ROW + 1),
    );
    let paragraph = Paragraph::new(text)
        .style(Theme::of(app).dim())
        .wrap(Wrap { trim: true });
    frame.render_widget(paragraph, inner);
}

/// The keys of what has the focus, from [`keys::BINDINGS`].
fn draw_footer(app: &App, frame: &mut Frame, area: Rect) {
    let theme = Theme::of(app);
    let hints: Vec<(&str, &str)> = match app.overlay {
        Overlay::Prompt if app.prompt.as_ref().is_some_and(|p| p.ask == Ask::EditWhich) => {
            let mut hints: Vec<(&str, &str)> = Field::ALL
                .iter()
                .map(|field| (field.key(), field.label()))
                .collect();
            hints.push(("Esc", "give up"));
            hints
        }
        Overlay::Prompt if app.typing() => {
            let more = app
                .prompt
                .as_ref()
                .is_some_and(|p| matches!(p.ask, Ask::Add(step) if step.next().is_some()));
            vec![
                ("type", "the answer"),
                ("Enter", if more { "next" } else { "send" }),
                ("Esc", "give up"),
            ]
        }
        Overlay::Prompt => vec![("y", "yes"), ("n", "no")],
        _ if app.typing => vec![("type", "to filter"), ("Enter", "keep"), ("Esc", "clear")],
        Overlay::None => keys::footer(app.pane, app.is_operator()),
        Overlay::ConfirmCancel(_) => vec![("y", "cancel the order"), ("n", "keep it")],
        Overlay::ConfirmOrder => vec![("y", "place the order"), ("n", "not now")],
        Overlay::Pay(_) if app.browser => vec![("o", "open in the browser"), ("Esc", "close")],
        Overlay::Pay(_) | Overlay::Help | Overlay::Detail(_) | Overlay::Refused => {
            vec![("Esc", "close")]
        }
    };
    // `? help` always shows: where the hints do not all fit, it says where
    // the others are.
    let mut hints = hints;
    let help = hints
        .iter()
        .position(|(key, _)| *key == "?")
        .map(|at| hints.remove(at));
    let cost = |(key, what): (&str, &str)| width(key) + width(what) + 3;
    let reserve = help.map_or(0, cost);
    let mut spans = Vec::new();
    let mut used = 0;
    for (key, what) in hints {
        if used + cost((key, what)) + reserve > usize::from(area.width) {
            break;
        }
        used += cost((key, what));
        spans.push(Span::styled(format!(" {key}"), theme.accent()));
        spans.push(Span::styled(format!(" {what} "), theme.dim()));
    }
    if let Some((key, what)) = help.filter(|_| reserve <= usize::from(area.width)) {
        spans.push(Span::styled(format!(" {key}"), theme.accent()));
        spans.push(Span::styled(format!(" {what} "), theme.dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_status(app: &App, frame: &mut Frame, area: Rect) {
    let theme = Theme::of(app);
    let mut spans = match &app.connection {
        Connection::Online { customer_id } => {
            let who = match &app.operator {
                Some(name) => format!(" · operator {name}"),
                None => format!(" · customer {}", &customer_id.simple().to_string()[..8]),
            };
            let mut spans = vec![Span::styled("● online", theme.good()), Span::raw(who)];
            if area.width >= 120 {
                spans.push(Span::styled(format!(" · {}", app.gateway), theme.dim()));
            }
            spans
        }
        Connection::Connecting { attempt } => vec![Span::styled(
            format!("◌ connecting to {} (attempt {attempt})…", app.gateway),
            theme.warning(),
        )],
        Connection::Offline { reason, retry_at } => {
            let wait = retry_at.remaining_from(app.now).as_secs();
            vec![Span::styled(
                format!("✕ disconnected: {reason} · retrying in {wait}s"),
                theme.error().add_modifier(Modifier::BOLD),
            )]
        }
    };
    if let Some(notice) = &app.notice {
        let style = match notice.kind {
            NoticeKind::Info => Style::new(),
            NoticeKind::Error => theme.error(),
        };
        spans.push(Span::raw(" │ "));
        spans.push(Span::styled(notice.text.clone(), style));
    }
    // A notice too long for the line wraps onto the footer's line rather
    // than being cut.
    let line = Line::from(spans);
    let rows = line
        .width()
        .div_ceil(usize::from(area.width.max(1)))
        .clamp(1, 2) as u16;
    let area = Rect::new(area.x, (area.y + 1).saturating_sub(rows), area.width, rows);
    frame.render_widget(Clear, area);
    frame.render_widget(Paragraph::new(line).wrap(Wrap { trim: false }), area);
}

fn overlay_block(app: &App, title: String) -> Block<'static> {
    let style = Theme::of(app).border(true);
    Block::bordered()
        .title(title)
        .border_type(if app.color {
            BorderType::Plain
        } else {
            BorderType::Thick
        })
        .border_style(style)
}

/// The keys of the focused pane and of every pane, from
/// [`keys::BINDINGS`].
fn draw_help(app: &App, frame: &mut Frame, screen: Rect) {
    let theme = Theme::of(app);
    let entry = |binding: &keys::Binding| {
        Line::from(vec![
            Span::styled(pad_right(binding.keys, 17), theme.accent()),
            Span::raw(binding.does),
        ])
    };
    // The focused pane's keys first, then those of every pane; the title
    // says which pane. On a terminal too short for all, the movement keys
    // every pane shares give way (the last first), never the pane's own
    // keys, Esc, help or quit; a last line says more keys exist.
    let mut bindings: Vec<&keys::Binding> = keys::help(app.pane, app.is_operator()).collect();
    let room = usize::from(screen.height.saturating_sub(2));
    let mut cut = false;
    while bindings.len() + usize::from(cut) > room {
        let Some(at) = bindings.iter().rposition(|binding| {
            binding.scope == keys::Scope::Everywhere
                && binding.hint.is_none()
                && binding.keys != "Esc"
        }) else {
            break;
        };
        bindings.remove(at);
        cut = true;
    }
    let mut lines: Vec<Line> = bindings.into_iter().map(entry).collect();
    if cut {
        lines.push(Line::from(Span::styled(
            "… more keys on a taller terminal",
            theme.dim(),
        )));
    }
    let area = centred(screen, 62, lines.len() as u16 + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(overlay_block(
            app,
            format!(" Keys in {} · Esc closes ", Pane::name(app.pane)),
        )),
        area,
    );
}

/// Width of the order detail box.
const DETAIL_WIDTH: u16 = 72;

fn draw_detail(app: &App, order: &Order, frame: &mut Frame, screen: Rect) {
    let theme = Theme::of(app);
    let mut lines = vec![
        Line::from(vec![
            Span::raw("Status  "),
            Span::styled(words::status(order), theme.status(order.status)),
        ]),
        Line::from(format!("Total   {}", money(order))),
    ];
    if let Some(reason) = order.cancel_reason {
        lines.push(Line::from(format!("Why     {}", reason.describe())));
    }
    if order.refunded {
        lines.push(Line::from(vec![
            Span::raw("Refund  "),
            Span::styled(
                "a payment that came after the cancellation was given back",
                theme.warning(),
            ),
        ]));
    }
    if let Some(refund) = order.refund.as_ref().filter(|_| !order.refunded) {
        let style = match refund {
            RefundState::Pending { .. } => theme.warning(),
            RefundState::Failed { .. } => theme.error(),
        };
        lines.push(Line::from(vec![
            Span::raw("Refund  "),
            Span::styled(refund.describe(), style),
        ]));
    }
    if let (OrderStatus::Reserved, Some(deadline)) = (order.status, order.pay_until) {
        lines.push(Line::from(format!(
            "Pay in  {} (until {})",
            countdown(deadline, app.now),
            app.clock.when(deadline, app.now, false)
        )));
    }
    if let Some(wait) = order.provider_wait() {
        lines.push(Line::from(vec![
            Span::raw("Pay     "),
            Span::styled(wait, theme.warning()),
        ]));
    }
    lines.push(Line::from(""));
    let amounts: Vec<String> = order
        .lines
        .iter()
        .map(|line| match (line.amount, order.currency) {
            (Some(amount), Some(currency)) => Money::new(amount, currency).to_string(),
            _ => String::new(),
        })
        .collect();
    let amount_width = widest(&amounts);
    let width_inside = usize::from(DETAIL_WIDTH.min(screen.width).saturating_sub(2));
    for (line, amount) in order.lines.iter().zip(&amounts) {
        let quantity = format!("{:>4} × ", line.quantity);
        let name_width = width_inside.saturating_sub(width(&quantity) + amount_width + 1);
        let name = line.name.clone().unwrap_or_else(|| line.sku.clone());
        lines.push(Line::from(format!(
            "{quantity}{} {}",
            pad_right(&elide(&name, name_width), name_width),
            pad_left(amount, amount_width)
        )));
    }
    lines.push(Line::from(""));
    for entry in &order.timeline {
        let mut spans = vec![
            Span::styled(app.clock.when(entry.at, app.now, true), theme.dim()),
            Span::raw(format!("  {}", words::event(entry.event))),
        ];
        if let Some(detail) = &entry.detail {
            spans.push(Span::styled(
                format!("  {}", words::detail(detail, app.clock, app.now)),
                theme.dim(),
            ));
        }
        lines.push(Line::from(spans));
    }
    let title = format!(" Order {} · Esc to close ", order.short_id());
    let paragraph = Paragraph::new(lines)
        .block(overlay_block(app, title))
        .wrap(Wrap { trim: false });
    // Long details (a provider's refusal) wrap: make room for every row.
    let box_width = DETAIL_WIDTH.min(screen.width);
    let height = paragraph.line_count(box_width.saturating_sub(2));
    let area = centred(screen, box_width, u16::try_from(height).unwrap_or(u16::MAX));
    frame.render_widget(Clear, area);
    frame.render_widget(paragraph, area);
}

/// Where the pay box is and what it holds, for drawing it and for writing
/// the hyperlink over its URL.
struct PayBox {
    area: Rect,
    /// The first row of the URL.
    url_row: u16,
    /// The URL, in pieces as wide as the box: it is never cut.
    url: Vec<String>,
    qr: Option<Vec<String>>,
    /// The link names this machine only: a phone cannot open it.
    local_only: bool,
}

/// Under the link when only this machine can open it (long, short).
const LOCAL_ONLY: [&str; 2] = [
    "a phone cannot open this local link: see --public-url",
    "local link: see --public-url",
];

fn pay_box(order: &Order, screen: Rect) -> PayBox {
    let url = order.checkout_url.clone().unwrap_or_default();
    let qr = qr::lines(&url);
    let qr_height = qr.as_ref().map_or(0, |lines| lines.len() as u16);
    let qr_width = qr
        .as_ref()
        .map_or(0, |lines| lines[0].chars().count() as u16);
    let box_width = (width(&url) as u16 + 4)
        .max(qr_width + 4)
        .max(44)
        .min(screen.width);
    let inside = usize::from(box_width.saturating_sub(2)).max(1);
    let chars: Vec<char> = url.chars().collect();
    let pieces: Vec<String> = chars
        .chunks(inside)
        .map(|piece| piece.iter().collect())
        .collect();
    let local_only = shop_client::browser::reachable_only_here(&url);
    // State, URL, hint, the note on a local link, then the code; the code
    // only when it fits.
    let text_rows = 2 + pieces.len() as u16 + u16::from(local_only);
    let fits = qr_height + text_rows + 2 <= screen.height && qr_width + 2 <= screen.width;
    let height = if fits {
        qr_height + text_rows + 2
    } else {
        text_rows + 3
    };
    let area = centred(screen, box_width, height);
    PayBox {
        area,
        url_row: area.y + 2,
        url: pieces,
        qr: qr.filter(|_| fits),
        local_only,
    }
}

/// A piece of a text on screen: (column, row, text).
pub type Placed = (u16, u16, String);

/// The checkout URL on screen, when the pay box shows one: the whole URL
/// and where each piece of it is drawn. The terminal loop writes the
/// pieces again as hyperlinks to the URL.
pub fn pay_link(app: &App, screen: Rect) -> Option<(String, Vec<Placed>)> {
    let Overlay::Pay(id) = app.overlay else {
        return None;
    };
    let order = app.order(id)?;
    let url = order.checkout_url.clone()?;
    if order.status != OrderStatus::Reserved || layout::too_small(screen) {
        return None;
    }
    let geometry = pay_box(order, screen);
    let pieces = geometry
        .url
        .into_iter()
        .zip(geometry.url_row..)
        .map(|(piece, row)| (geometry.area.x + 1, row, piece))
        .collect();
    Some((url, pieces))
}

fn draw_pay(app: &App, order: &Order, frame: &mut Frame, screen: Rect) {
    let geometry = pay_box(order, screen);
    let area = geometry.area;
    frame.render_widget(Clear, area);
    let theme = Theme::of(app);
    let title = format!(" Pay order {} · {} ", order.short_id(), money(order));
    frame.render_widget(overlay_block(app, title), area);
    let inner = Rect::new(
        area.x + 1,
        area.y + 1,
        area.width.saturating_sub(2),
        area.height.saturating_sub(2),
    );
    let state = match order.status {
        OrderStatus::Reserved => Line::from(vec![
            Span::styled("Waiting for payment", theme.status(order.status)),
            Span::raw(format!(" · pay in {}", time_left(app, order))),
        ]),
        OrderStatus::Paid => Line::from(Span::styled(
            "✓ Paid — thank you!",
            theme.status(OrderStatus::Paid),
        )),
        _ => Line::from(Span::styled(
            words::status(order),
            theme.status(order.status),
        )),
    };
    let scannable = geometry.qr.is_some() && !geometry.local_only;
    let hint = match (app.browser, scannable && inner.width >= 62) {
        (true, true) => "o open in the browser · scan the code with a phone · Esc close",
        (true, false) => "o open in the browser · Esc close",
        (false, true) => "click the link or scan the code with a phone · Esc close",
        (false, false) => "click or copy the link · Esc close",
    };
    let hint = Line::from(Span::styled(hint, theme.dim()));
    if order.status != OrderStatus::Reserved {
        frame.render_widget(
            Paragraph::new(vec![
                state,
                Line::from(""),
                Line::from(Span::styled("Esc close", theme.dim())),
            ]),
            inner,
        );
        return;
    }
    let mut lines = vec![state];
    for piece in &geometry.url {
        lines.push(Line::from(Span::styled(
            piece.clone(),
            theme.accent().add_modifier(Modifier::UNDERLINED),
        )));
    }
    lines.push(hint);
    if geometry.local_only {
        let [long, short] = LOCAL_ONLY;
        let note = if width(long) <= usize::from(inner.width) {
            long
        } else {
            short
        };
        lines.push(Line::from(Span::styled(note, theme.dim())));
    }
    match &geometry.qr {
        Some(code) => {
            for row in code {
                lines.push(
                    Line::from(Span::styled(
                        row.clone(),
                        // Dark on light, as scanners expect; without
                        // colours, reversed: dark modules on terminals with
                        // a dark background, the most common.
                        theme.pick(
                            Style::new().fg(Color::Black).bg(Color::White),
                            Modifier::REVERSED,
                        ),
                    ))
                    .centered(),
                );
            }
        }
        // A phone could not open a local link anyway.
        None if geometry.local_only => {}
        None => lines.push(Line::from(Span::styled(
            "(enlarge the terminal to see the QR code)",
            theme.dim(),
        ))),
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn draw_confirm(app: &App, order: &Order, frame: &mut Frame, screen: Rect) {
    let theme = Theme::of(app);
    let lines = vec![
        Line::from(format!(
            "Cancel order {} ({})?",
            order.short_id(),
            money(order)
        )),
        Line::from("Its items go back to the shop."),
        Line::from(""),
        Line::from(vec![
            Span::styled("y", theme.error().add_modifier(Modifier::BOLD)),
            Span::raw(" cancel it   "),
            Span::styled("n", theme.good().add_modifier(Modifier::BOLD)),
            Span::raw(" / Esc keep it"),
        ]),
    ];
    let area = centred(screen, 44, 6);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(overlay_block(app, " Cancel? ".into())),
        area,
    );
}

/// Why the shop refused an order, wrapped to fit.
fn draw_refused(app: &App, explanation: &str, frame: &mut Frame, screen: Rect) {
    let mut lines: Vec<Line> = explanation.lines().map(Line::from).collect();
    lines.push(Line::from(""));
    lines.push(Line::from(vec![
        Span::styled("Esc", Theme::of(app).accent().add_modifier(Modifier::BOLD)),
        Span::raw(" close; the cart is kept"),
    ]));
    let area = centred(screen, 60, 12);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(overlay_block(app, " Order not placed ".into())),
        area,
    );
}

/// An operator's question about a product: what is asked, the answer
/// typed so far (or y / n), and why an answer did not go through.
fn draw_prompt(app: &App, prompt: &Prompt, frame: &mut Frame, screen: Rect) {
    let theme = Theme::of(app);
    let name = product_name(app.product(&prompt.sku), &prompt.sku);
    let product = app.product(&prompt.sku);
    let (title, question, hint) = match prompt.ask {
        Ask::Restock => (
            " Restock ",
            format!("How many units of {name} came in?"),
            "a whole number",
        ),
        Ask::WriteOff => (
            " Write off ",
            format!(
                "How many units of {name} are lost? ({} available)",
                product.map_or(0, |p| p.available)
            ),
            "a number, then why if you like: 2 broken in transit",
        ),
        Ask::Price => (
            " Change the price ",
            format!(
                "New price of {name} (now {})?",
                product.map_or_else(String::new, |p| Money::new(p.unit_price, p.currency)
                    .to_string())
            ),
            "an amount such as 1500.00",
        ),
        Ask::Withdraw => (
            " Withdraw? ",
            format!("Withdraw {name}? It takes no new orders; reserved orders stay."),
            "",
        ),
        Ask::Relist => (" Relist? ", format!("Sell {name} again?"), ""),
        Ask::Add(step) => (
            " New product ",
            add_question(app, prompt, step),
            add_hint(app, step),
        ),
        Ask::EditWhich => (
            " Edit ",
            format!("Change what of {name}?"),
            "a letter; Esc gives up",
        ),
        Ask::Edit(field) => (
            " Edit ",
            format!("New {} of {name}?", field.label()),
            match field {
                Field::Name => "one line",
                Field::Description => "one line; empty removes it",
                Field::Category => "such as Laptops; empty removes it",
                Field::ImageUrl => "an http:// or https:// URL; empty removes it",
            },
        ),
    };
    let box_width = 56.min(screen.width);
    let inside = usize::from(box_width.saturating_sub(2));
    let mut lines = vec![Line::from(question)];
    let title = match prompt.ask {
        Ask::Add(step) => format!(
            " New product · {} of {} ",
            step.number(),
            AddStep::ALL.len()
        ),
        _ => title.to_owned(),
    };
    if let Some(so_far) = new_so_far(app, prompt) {
        lines.push(Line::from(Span::styled(
            elide(&so_far, inside).into_owned(),
            theme.dim(),
        )));
    } else if let (Ask::Edit(field), Some(product)) = (prompt.ask, product) {
        // One line of the value now, whatever its length.
        let now = field.of(product);
        let now = match now.split_once('\n') {
            Some((first, _)) => format!("{first} …"),
            None if now.is_empty() => "none".to_owned(),
            None => now.to_owned(),
        };
        lines.push(Line::from(Span::styled(
            elide(&format!("now: {now}"), inside).into_owned(),
            theme.dim(),
        )));
    } else {
        lines.push(Line::from(""));
    }
    if prompt.ask == Ask::EditWhich {
        let mut choices = Vec::new();
        for field in Field::ALL {
            choices.push(Span::styled(
                field.key(),
                theme.accent().add_modifier(Modifier::BOLD),
            ));
            choices.push(Span::raw(format!(" {}  ", field.label())));
        }
        lines.push(Line::from(choices));
        lines.push(Line::from(Span::styled(hint, theme.dim())));
    } else if prompt.ask.takes_text() {
        let cursor = if prompt.sending { "" } else { "_" };
        lines.push(Line::from(vec![
            Span::styled("> ", theme.accent()),
            Span::styled(
                format!("{}{cursor}", prompt.text),
                Style::new().add_modifier(Modifier::BOLD),
            ),
        ]));
        lines.push(Line::from(Span::styled(hint, theme.dim())));
    } else {
        lines.push(Line::from(vec![
            Span::styled("y", theme.good().add_modifier(Modifier::BOLD)),
            Span::raw(" yes   "),
            Span::styled("n", theme.error().add_modifier(Modifier::BOLD)),
            Span::raw(" / Esc no"),
        ]));
    }
    if prompt.sending {
        lines.push(Line::from(Span::styled("sending…", theme.warning())));
    } else if let Some(problem) = &prompt.problem {
        lines.push(Line::from(Span::styled(problem.clone(), theme.error())));
    }
    let paragraph = Paragraph::new(lines)
        .block(overlay_block(app, title))
        .wrap(Wrap { trim: false });
    let height = paragraph.line_count(box_width.saturating_sub(2));
    let area = centred(screen, box_width, u16::try_from(height).unwrap_or(u16::MAX));
    frame.render_widget(Clear, area);
    frame.render_widget(paragraph, area);
}

/// A new product's question at `step`.
fn add_question(app: &App, prompt: &Prompt, step: AddStep) -> String {
    let name = prompt.draft.name.as_deref().unwrap_or(&prompt.draft.sku);
    match step {
        AddStep::Sku => "The new product's sku?".to_owned(),
        AddStep::Name => format!("The name of {}?", prompt.draft.sku),
        AddStep::Price => format!("The price of one {name}, in {}?", app.currency()),
        AddStep::Units => format!("How many units of {name} are in stock?"),
        AddStep::Category => format!("The category of {name}?"),
        AddStep::Description => format!("A description of {name}?"),
    }
}

fn add_hint(app: &App, step: AddStep) -> &'static str {
    match step {
        AddStep::Sku => "letters, digits, - _ or .: such as SKU-042",
        AddStep::Name => "one line",
        AddStep::Price if app.currency().decimals() == 0 => "an amount such as 1500",
        AddStep::Price => "an amount such as 1500.00",
        AddStep::Units => "a whole number; Enter alone: none yet",
        AddStep::Category => "such as Laptops; Enter alone: none",
        AddStep::Description => "one line; Enter alone: none. Enter adds the product",
    }
}

/// A new product's answers so far, on one line: `SKU-042 · Mug ·
/// 12.50 EUR · 5 units · Kitchen`; none before the first.
fn new_so_far(app: &App, prompt: &Prompt) -> Option<String> {
    let Ask::Add(step) = prompt.ask else {
        return None;
    };
    let draft = &prompt.draft;
    let mut parts = Vec::new();
    for answered in AddStep::ALL.into_iter().take(step.number() - 1) {
        let part = match answered {
            AddStep::Sku => draft.sku.clone(),
            AddStep::Name => draft.name.clone().unwrap_or_default(),
            AddStep::Price => Money::new(draft.unit_price, app.currency()).to_string(),
            AddStep::Units => format!("{} units", draft.stock),
            AddStep::Category if draft.category.is_empty() => "no category".to_owned(),
            AddStep::Category => draft.category.clone(),
            AddStep::Description => continue,
        };
        parts.push(part);
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// "Place this order?": every line, the total, y or n.
fn draw_confirm_order(app: &App, frame: &mut Frame, screen: Rect) {
    let theme = Theme::of(app);
    let box_width = 52.min(screen.width);
    let inside = usize::from(box_width.saturating_sub(2));
    let amounts: Vec<String> = app
        .cart
        .iter()
        .map(|(sku, quantity)| line_amount(app.product(sku), *quantity))
        .collect();
    let amount_width = widest(&amounts);
    let mut lines = Vec::new();
    for ((sku, quantity), amount) in app.cart.iter().zip(&amounts) {
        let quantity = format!("{quantity:>4} × ");
        let name_width = inside.saturating_sub(width(&quantity) + amount_width + 1);
        let name = product_name(app.product(sku), sku);
        lines.push(Line::from(format!(
            "{quantity}{} {}",
            pad_right(&elide(&name, name_width), name_width),
            pad_left(amount, amount_width)
        )));
    }
    let total = app
        .cart_total()
        .map_or_else(|| "-".to_owned(), |total| total.to_string());
    lines.push(Line::from(Span::styled(
        pad_left(&format!("Total {total}"), inside),
        Style::new().add_modifier(Modifier::BOLD),
    )));
    lines.push(Line::from(""));
    lines.push(Line::from(vec![
        Span::styled("y", theme.good().add_modifier(Modifier::BOLD)),
        Span::raw(" place the order   "),
        Span::styled("n", theme.error().add_modifier(Modifier::BOLD)),
        Span::raw(" / Esc not now"),
    ]));
    let area = centred(screen, box_width, lines.len() as u16 + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(overlay_block(app, " Place this order? ".into())),
        area,
    );
}

/// The display width of the widest of `texts`, in terminal columns.
fn widest(texts: &[String]) -> usize {
    texts.iter().map(|text| width(text)).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::style::Color;
    use shop_shared::domain::{OrderStatus, TimelineEntry, TimelineEvent};

    use super::*;
    use crate::app::{Action, App};
    use crate::fixtures::{NOW, at, online, order, product};

    fn render(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
        terminal.draw(|frame| draw(app, frame)).expect("draws");
        terminal
    }

    /// Every screen the tests look at, by name.
    fn screens() -> Vec<(&'static str, App)> {
        let empty = App::new("ws://127.0.0.1:8080/ws", NOW);

        let catalogue = online(Vec::new());

        let mut cart = online(Vec::new());
        for action in [
            Action::More,
            Action::More,
            Action::Down,
            Action::More,
            Action::NextPane,
        ] {
            cart.update(action);
        }

        let mut reserved = online(vec![order(1, OrderStatus::Reserved)]);
        reserved.update(Action::NextPane);
        reserved.update(Action::NextPane);
        reserved.notice = None;

        let mut paid = online(vec![order(1, OrderStatus::Paid)]);
        paid.pane = crate::app::Pane::Orders;

        let mut cancelled = online(vec![order(1, OrderStatus::Cancelled)]);
        cancelled.pane = crate::app::Pane::Orders;

        let mut help = online(Vec::new());
        help.update(Action::Help);

        let mut disconnected = online(vec![order(1, OrderStatus::Reserved)]);
        disconnected.update(Action::Offline {
            reason: "the connection to the shop closed".into(),
            retry_in: Duration::from_secs(4),
        });

        let mut pay = reserved.clone();
        pay.update(Action::Pay);

        let mut detail = reserved.clone();
        detail.update(Action::Activate);

        let mut confirm = reserved.clone();
        confirm.update(Action::Cancel);

        let mut over_limit = cart.clone();
        over_limit.update(Action::PlaceOrder);
        over_limit.update(Action::Yes);
        over_limit.update(Action::Refused(crate::network::refusal_text(
            shop_shared::protocol::ErrorCode::HoldLimit,
            "a customer may hold at most 100 units in unpaid orders at once; you hold 90, \
             so this order of 20 would go 10 over (10 more fit). Pay or cancel an unpaid \
             order, or order fewer units",
        )));

        // A payment that arrived after the order was cancelled, refunded:
        // pushed live while the customer looks at the order.
        let mut refunded = online(vec![order(1, OrderStatus::Cancelled)]);
        refunded.pane = crate::app::Pane::Orders;
        refunded.update(Action::Activate);
        let mut late = order(1, OrderStatus::Cancelled);
        late.refunded = true;
        late.version += 2;
        late.timeline.push(TimelineEntry {
            at: at(0),
            event: TimelineEvent::Refunded,
            detail: Some("9,000.00 EUR refunded".into()),
        });
        refunded.update(Action::OrderChanged(late));
        refunded.notice = None;

        // A shop whose names are long, wide, alike or hostile, and an
        // order of 115,620.00 EUR.
        let mut big = App::new("ws://127.0.0.1:8080/ws", NOW);
        big.update(Action::Online {
            customer_id: crate::fixtures::CUSTOMER,
            operator: None,
            products: vec![
                product("SKU-001", "MacBook Pro", 450_000, 30),
                product("SKU-003", "MacBook Air", 150_000, 30),
                product(
                    "EVIL",
                    "Mug\x1b[2J\x1b]0;pwned\x07\nline two\u{202e}",
                    1_250,
                    9,
                ),
                product(
                    "WIDE",
                    "世界の時計 (ワールドクロック) デラックス版",
                    11_562_000,
                    3,
                ),
            ],
            orders: vec![{
                let mut large = order(1, OrderStatus::Reserved);
                large.total = Some(11_562_000);
                large.lines[0].name = Some("世界の時計\x1b[31m".into());
                large
            }],
        });
        // 3 × MacBook Pro, 6 × MacBook Air, 1 × the 115,620.00 EUR one, 1 mug.
        let mut actions = vec![Action::Down];
        actions.extend(std::iter::repeat_n(Action::More, 3));
        actions.push(Action::Down);
        actions.extend(std::iter::repeat_n(Action::More, 6));
        actions.extend([Action::Down, Action::More, Action::First, Action::More]);
        actions.push(Action::NextPane);
        for action in actions {
            big.update(action);
        }
        big.notice = None;

        let mut confirm_order = big.clone();
        confirm_order.update(Action::PlaceOrder);

        let mut filtered = online(Vec::new());
        for action in [
            Action::Filter,
            Action::Type('a'),
            Action::Type('i'),
            Action::Type('r'),
        ] {
            filtered.update(action);
        }

        // A customer looking at the iPhone's details (asked for with i
        // where they do not always show), an operator having just cut its
        // price and withdrawn the MacBook Air.
        let mut product_details = online(Vec::new());
        let mut repriced = product_details
            .product("SKU-002")
            .cloned()
            .expect("product");
        repriced.unit_price = 99_900;
        repriced.image_url = Some("https://example.com/iphone-16.png".into());
        repriced.version = 2;
        let mut withdrawn = product_details
            .product("SKU-003")
            .cloned()
            .expect("product");
        withdrawn.listed = false;
        withdrawn.version = 2;
        for action in [
            Action::ProductChanged(repriced),
            Action::ProductChanged(withdrawn),
            Action::Down,
            Action::Details,
        ] {
            product_details.update(action);
        }
        product_details.notice = None;

        let mut category = online(Vec::new());
        category.update(Action::Category);

        let operator = crate::fixtures::operator();

        let mut operator_restock = crate::fixtures::operator();
        operator_restock.update(Action::Restock);
        operator_restock.update(Action::Type('5'));

        let mut operator_withdraw = crate::fixtures::operator();
        operator_withdraw.update(Action::Down);
        operator_withdraw.update(Action::WithdrawOrRelist);

        // An operator adding a mug: the price refused (three decimals).
        let mut operator_add = crate::fixtures::operator();
        operator_add.update(Action::No);
        for answer in ["SKU-042", "Mug", "12.345"] {
            for c in answer.chars() {
                operator_add.update(Action::Type(c));
            }
            operator_add.update(Action::Activate);
        }

        // An operator choosing what to edit of the iPhone, and then
        // renaming it.
        let mut operator_edit_which = crate::fixtures::operator();
        operator_edit_which.update(Action::Down);
        operator_edit_which.update(Action::Edit);
        let mut operator_edit = operator_edit_which.clone();
        for c in "niPhone 16e".chars() {
            operator_edit.update(Action::Type(c));
        }

        vec![
            ("product_details", product_details),
            ("operator_add", operator_add),
            ("operator_edit_which", operator_edit_which),
            ("operator_edit", operator_edit),
            ("category", category),
            ("operator", operator),
            ("operator_restock", operator_restock),
            ("operator_withdraw", operator_withdraw),
            ("empty", empty),
            ("big_names_and_totals", big),
            ("confirm_order", confirm_order),
            ("filtered", filtered),
            ("catalogue", catalogue),
            ("cart", cart),
            ("reserved_with_countdown", reserved),
            ("paid", paid),
            ("cancelled", cancelled),
            ("help", help),
            ("disconnected", disconnected),
            ("pay", pay),
            ("detail", detail),
            ("confirm_cancel", confirm),
            ("over_hold_limit", over_limit),
            ("refunded_detail", refunded),
        ]
    }

    /// The text of `terminal`, then every run of cells with a modifier
    /// (reverse video, bold…), so that a snapshot shows the style too.
    fn text_and_style(terminal: &Terminal<TestBackend>) -> String {
        let buffer = terminal.backend().buffer();
        let mut out = rows(terminal);
        out.push_str("-- styles --\n");
        for y in 0..buffer.area.height {
            let mut x = 0;
            while x < buffer.area.width {
                let modifier = buffer[(x, y)].modifier;
                let start = x;
                while x < buffer.area.width && buffer[(x, y)].modifier == modifier {
                    x += 1;
                }
                if !modifier.is_empty() {
                    out.push_str(&format!("row {y} cols {start}-{}: {modifier:?}\n", x - 1));
                }
            }
        }
        out
    }

    const SIZES: [(u16, u16); 3] = [(60, 16), (80, 24), (120, 35)];

    #[test]
    fn screens_in_colour() {
        for (name, app) in screens() {
            for (width, height) in SIZES {
                insta::assert_snapshot!(
                    format!("{name}_{width}x{height}"),
                    render(&app, width, height).backend().to_string()
                );
            }
        }
    }

    #[test]
    fn screens_without_colour_show_every_state_by_style() {
        for (name, mut app) in screens() {
            app.color = false;
            for (width, height) in SIZES {
                let terminal = render(&app, width, height);
                let buffer = terminal.backend().buffer();
                assert!(
                    buffer
                        .content
                        .iter()
                        .all(|cell| cell.fg == Color::Reset && cell.bg == Color::Reset),
                    "{name} at {width}x{height}: no colour at all with NO_COLOR"
                );
                insta::assert_snapshot!(
                    format!("{name}_{width}x{height}_no_color"),
                    text_and_style(&terminal)
                );
            }
        }
    }

    #[test]
    fn without_colour_the_selection_and_the_focused_pane_still_show() {
        let mut app = online(Vec::new());
        app.color = false;
        for (width, height) in SIZES {
            let terminal = render(&app, width, height);
            let buffer = terminal.backend().buffer();
            let areas =
                crate::layout::areas(Rect::new(0, 0, width, height), app.cart_width(), false);
            let first = areas.stock.y + crate::layout::FIRST_ROW;
            assert!(
                buffer[(2, first)].modifier.contains(Modifier::REVERSED),
                "the selected row at {width}x{height}"
            );
            assert!(!buffer[(2, first + 1)].modifier.contains(Modifier::REVERSED));
            let corner = &buffer[(areas.stock.x, areas.stock.y)];
            assert_eq!(corner.symbol(), "┏", "the focused pane is drawn thick");
            assert!(corner.modifier.contains(Modifier::BOLD));
            assert_eq!(buffer[(areas.cart.x, areas.cart.y)].symbol(), "┌");
            assert!(rows(&terminal).contains("▶ Stock"), "and marked");
        }
    }

    #[test]
    fn money_and_ids_are_never_cut_and_names_are_elided_first() {
        let app = screens()
            .into_iter()
            .find(|(name, _)| *name == "big_names_and_totals")
            .map(|(_, app)| app)
            .expect("the screen");
        for (width, height) in SIZES {
            let text = rows(&render(&app, width, height));
            assert!(text.contains("115,620.00 EUR"), "{width}x{height}:\n{text}");
            assert!(text.contains("6ffcdd21"), "{width}x{height}:\n{text}");
            assert!(text.contains("13,500.00 EUR"), "{width}x{height}:\n{text}");
            if width >= 80 {
                let cart: Vec<&str> = text
                    .lines()
                    .filter(|line| line.contains(" EUR") && line.matches('│').count() >= 3)
                    .collect();
                for (name, amount) in [
                    ("MacBook Pro", "13,500.00 EUR"),
                    ("MacBook Air", "9,000.00 EUR"),
                ] {
                    assert!(
                        cart.iter()
                            .any(|line| line.contains(name) && line.contains(amount)),
                        "alike names stay apart in the cart at {width}x{height}:\n{text}"
                    );
                }
                assert!(text.contains("世界の時計"), "{text}");
            }
            assert!(text.contains('…'), "a long name is elided: {text}");
            assert!(text.contains("Mug␛[2J␛]0;pwned"), "{text}");
            assert!(
                !text.contains('\x1b') && !text.contains('\u{202e}'),
                "{text}"
            );
        }
    }

    #[test]
    fn a_terminal_below_the_minimum_says_so() {
        let app = online(Vec::new());
        for (width, height) in [(59, 16), (60, 15), (40, 10)] {
            let text = rows(&render(&app, width, height));
            assert!(
                text.contains("terminal too small"),
                "{width}x{height}: {text}"
            );
            assert!(text.contains("need 60×16"), "{width}x{height}: {text}");
        }
        let text = rows(&render(&app, 60, 16));
        assert!(!text.contains("too small"), "{text}");
        insta::assert_snapshot!("too_small_50x12", rows(&render(&app, 50, 12)));
    }

    #[test]
    fn the_help_and_the_footer_come_from_the_key_bindings() {
        let mut app = online(Vec::new());
        for (pane, expected) in [
            (Pane::Stock, &["a add", "/ filter", "o order", "? help"][..]),
            (
                Pane::Cart,
                &["a more", "- fewer", "d remove", "o order"][..],
            ),
            (Pane::Orders, &["Enter details", "p pay", "c cancel"][..]),
        ] {
            app.pane = pane;
            app.overlay = Overlay::None;
            let footer = rows(&render(&app, 120, 35));
            let footer = footer.lines().nth(33).unwrap_or_default().to_owned();
            for hint in expected {
                assert!(footer.contains(hint), "{pane:?}: {footer}");
            }
            app.update(Action::Help);
            let help = rows(&render(&app, 120, 35));
            for binding in keys::help(pane, false) {
                assert!(
                    help.contains(binding.keys) && help.contains(binding.does),
                    "{pane:?} help lacks {}: {help}",
                    binding.keys
                );
            }
        }
    }

    #[test]
    fn an_operators_help_lists_the_catalogue_keys_and_not_the_carts() {
        let mut app = crate::fixtures::operator();
        app.update(Action::Help);
        let help = rows(&render(&app, 120, 35));
        for binding in keys::help(Pane::Stock, true) {
            assert!(help.contains(binding.does), "{help}");
        }
        assert!(help.contains("restock: add units"), "{help}");
        assert!(!help.contains("add one to the cart"), "{help}");
        // At the smallest size too, every key of the stock pane shows.
        let small = rows(&render(&app, 60, 16));
        for binding in keys::help(Pane::Stock, true).filter(|b| b.scope != keys::Scope::Everywhere)
        {
            assert!(small.contains(binding.does), "{small}");
        }
        assert!(
            small.contains("add a product (asks sku, name, price…)"),
            "{small}"
        );
    }

    #[test]
    fn the_order_question_shows_every_line_and_the_total() {
        let (_, app) = screens()
            .into_iter()
            .find(|(name, _)| *name == "confirm_order")
            .expect("the screen");
        let text = rows(&render(&app, 80, 24));
        assert!(text.contains("Place this order?"), "{text}");
        assert!(text.contains("Total 138,132.50 EUR"), "{text}");
        assert!(text.contains("y place the order"), "{text}");
    }

    #[test]
    fn screens_survive_tiny_terminals() {
        for (_, app) in screens() {
            for (width, height) in [(20, 5), (40, 10), (1, 1)] {
                render(&app, width, height);
            }
        }
    }

    #[test]
    fn a_changed_quantity_is_highlighted_and_the_selection_reversed() {
        let mut app = online(Vec::new());
        let mut sold = product("SKU-002", "iPhone 16", 110_000, 7);
        sold.version = 2;
        app.update(Action::ProductChanged(sold));
        let terminal = render(&app, 80, 24);
        let buffer = terminal.backend().buffer();
        let stock = crate::layout::areas(Rect::new(0, 0, 80, 24), 0, false).stock;
        let first = stock.y + crate::layout::FIRST_ROW;
        assert!(
            buffer[(2, first)].modifier.contains(Modifier::REVERSED),
            "the selected row"
        );
        assert_eq!(buffer[(2, first + 1)].bg, Color::Yellow, "the changed row");
        assert_eq!(buffer[(2, first + 2)].bg, Color::Reset, "an unchanged row");
        app.update(Action::Tick(at(2)));
        let terminal = render(&app, 80, 24);
        assert_eq!(
            terminal.backend().buffer()[(2, first + 1)].bg,
            Color::Reset,
            "the highlight fades"
        );
    }

    #[test]
    fn a_changed_price_is_highlighted_in_its_cell_and_the_details() {
        let mut app = online(Vec::new());
        let mut repriced = product("SKU-002", "iPhone 16", 99_900, 10);
        repriced.version = 2;
        app.update(Action::ProductChanged(repriced));
        app.update(Action::Down);
        let terminal = render(&app, 120, 35);
        let text = rows(&terminal);
        let buffer = terminal.backend().buffer();
        let areas = crate::layout::areas(Rect::new(0, 0, 120, 35), 0, false);
        let row = areas.stock.y + crate::layout::FIRST_ROW + 1;
        let line = text.lines().nth(usize::from(row)).unwrap_or_default();
        let found = line.find("999.00 EUR").expect("the new price");
        let price = u16::try_from(line[..found].chars().count()).expect("a column");
        assert_eq!(buffer[(price, row)].bg, Color::Yellow, "{line}");
        assert_ne!(buffer[(2, row + 1)].bg, Color::Yellow, "another row");
        assert!(text.contains("999.00 EUR · 10 available"), "{text}");
        app.update(Action::Tick(at(2)));
        let terminal = render(&app, 120, 35);
        assert_ne!(terminal.backend().buffer()[(price, row)].bg, Color::Yellow);
    }

    /// The text of every row of `terminal`, as a terminal shows it: the
    /// cell a wide character covers is skipped.
    fn rows(terminal: &Terminal<TestBackend>) -> String {
        let buffer = terminal.backend().buffer();
        let area = buffer.area;
        let mut out = String::new();
        for y in area.y..area.y + area.height {
            let mut x = area.x;
            while x < area.x + area.width {
                let symbol = buffer[(x, y)].symbol();
                out.push_str(symbol);
                x += u16::try_from(width(symbol).max(1)).unwrap_or(1);
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn provider_trouble_shows_in_the_orders_pane_and_in_the_detail() {
        let mut waiting = order(1, OrderStatus::Reserved);
        waiting.checkout_url = None;
        waiting.checkout_delay = Some("payment provider unavailable: HTTP 503".into());
        let mut app = online(vec![waiting]);
        app.pane = crate::app::Pane::Orders;
        let text = rows(&render(&app, 120, 40));
        assert!(text.contains("RESERVED (waiting for provider)"), "{text}");
        app.update(Action::Activate);
        let text = rows(&render(&app, 120, 40));
        assert!(
            text.contains("Pay     waiting for the payment provider: payment provider"),
            "{text}"
        );

        let mut refusing = order(1, OrderStatus::Cancelled);
        refusing.refund = Some(shop_shared::domain::RefundState::Pending {
            reason: Some("charge disputed".into()),
        });
        let mut app = online(vec![refusing]);
        app.pane = crate::app::Pane::Orders;
        let text = rows(&render(&app, 120, 40));
        assert!(
            text.contains("CANCELLED (unpaid, refund pending)"),
            "{text}"
        );
        app.update(Action::Activate);
        let text = rows(&render(&app, 120, 40));
        assert!(
            text.contains("refund pending (charge disputed; retrying)"),
            "{text}"
        );
    }

    #[test]
    fn without_a_browser_here_the_pay_box_does_not_offer_to_open_one() {
        let mut app = online(vec![order(1, OrderStatus::Reserved)]);
        app.browser = false;
        app.pane = crate::app::Pane::Orders;
        app.update(Action::Pay);
        let shown = rows(&render(&app, 120, 35));
        assert!(shown.contains("click or copy the link"), "{shown}");
        assert!(!shown.contains("open in the browser"), "{shown}");
    }

    #[test]
    fn the_pay_link_is_where_the_url_is_drawn_whole_even_when_narrow() {
        let mut app = online(vec![order(1, OrderStatus::Reserved)]);
        app.pane = crate::app::Pane::Orders;
        app.update(Action::Pay);
        for (width, height) in SIZES {
            let screen = Rect::new(0, 0, width, height);
            let (url, pieces) = pay_link(&app, screen).expect("a link");
            let terminal = render(&app, width, height);
            let buffer = terminal.backend().buffer();
            let drawn: String = pieces
                .iter()
                .map(|(column, row, piece)| {
                    (*column..*column + piece.chars().count() as u16)
                        .map(|x| buffer[(x, *row)].symbol().to_owned())
                        .collect::<String>()
                })
                .collect();
            assert_eq!(drawn, url, "at {width}x{height}");
        }
    }
}
