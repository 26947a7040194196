//! Drawing: `draw(&App)` renders the state and changes nothing.
//!
//! Stock across the top, cart and orders below, the status bar on the last
//! line; help, order detail, payment and confirmation as boxes on top.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Table, Wrap};
use shop_shared::domain::{Order, OrderStatus};
use shop_shared::money::Money;
use shop_shared::time::countdown;

use crate::app::{App, Connection, NoticeKind, Overlay, Pane};
use crate::layout::{self, centred};
use crate::qr;

/// Every key, for the help box.
pub const KEYS: &[(&str, &str)] = &[
    ("Tab / Shift-Tab", "next / previous pane"),
    ("↑ ↓  or  k j", "move the selection (a click selects too)"),
    ("Enter, a, +, →", "stock: add one to the cart"),
    ("-, ←", "stock and cart: one fewer"),
    ("d, Delete", "cart: remove the line"),
    ("o", "place the cart as an order"),
    ("Enter", "orders: show the order in full"),
    ("p", "orders: pay (link and QR code)"),
    ("O", "orders: open the checkout in the browser"),
    ("c", "orders: cancel (asks first)"),
    ("Esc", "close a box"),
    ("?", "this help"),
    ("q, Ctrl-C", "quit"),
];

const ACCENT: Color = Color::Cyan;

pub fn draw(app: &App, frame: &mut Frame) {
    let screen = frame.area();
    let areas = layout::areas(screen);
    draw_stock(app, frame, areas.stock);
    draw_cart(app, frame, areas.cart);
    draw_orders(app, frame, areas.orders);
    draw_status(app, frame, areas.status);
    match app.overlay {
        Overlay::None => {}
        Overlay::Help => draw_help(frame, screen),
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
                draw_confirm(order, frame, screen);
            }
        }
        Overlay::Refused => {
            if let Some(explanation) = &app.refusal {
                draw_refused(explanation, frame, screen);
            }
        }
    }
}

fn pane_block(app: &App, pane: Pane, title: String) -> Block<'static> {
    let focused = app.pane == pane && app.overlay == Overlay::None;
    let style = if focused {
        Style::new().fg(ACCENT).add_modifier(Modifier::BOLD)
    } else {
        Style::new().fg(Color::DarkGray)
    };
    Block::bordered().title(title).border_style(style)
}

fn highlight(app: &App, pane: Pane) -> Style {
    if app.pane == pane {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new().add_modifier(Modifier::UNDERLINED)
    }
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

fn draw_stock(app: &App, frame: &mut Frame, area: Rect) {
    let selected = app.selection(Pane::Stock);
    let (first, shown) = visible(&app.products, selected, area);
    let rows: Vec<Row> = shown
        .iter()
        .enumerate()
        .map(|(index, product)| {
            let in_cart = app.in_cart(&product.sku);
            let available = Cell::from(Line::from(product.available.to_string()).right_aligned());
            let mut row = Row::new(vec![
                Cell::from(product.sku.clone()),
                Cell::from(product.name.clone()),
                Cell::from(
                    Line::from(Money::new(product.unit_price, product.currency).to_string())
                        .right_aligned(),
                ),
                available,
                Cell::from(
                    Line::from(if in_cart > 0 {
                        in_cart.to_string()
                    } else {
                        String::new()
                    })
                    .right_aligned(),
                ),
            ]);
            if app.flashes.contains_key(&product.sku) {
                row = row.style(Style::new().fg(Color::Black).bg(Color::Yellow));
            } else if product.available == 0 {
                row = row.style(Style::new().fg(Color::DarkGray));
            }
            if first + index == selected {
                row = row.style(highlight(app, Pane::Stock));
            }
            row
        })
        .collect();
    let widths = [
        Constraint::Length(10),
        Constraint::Min(10),
        Constraint::Length(14),
        Constraint::Length(9),
        Constraint::Length(7),
    ];
    let title = format!(" Stock ({}) ", app.products.len());
    let empty = app.products.is_empty();
    let table = Table::new(rows, widths)
        .header(header(&["SKU", "NAME", ">PRICE", ">AVAILABLE", ">IN CART"]))
        .block(pane_block(app, Pane::Stock, title));
    frame.render_widget(table, area);
    if empty {
        let message = match app.connection {
            Connection::Online { .. } => "No products for sale.",
            _ => "Waiting for the shop…",
        };
        placeholder(frame, area, message);
    }
}

fn draw_cart(app: &App, frame: &mut Frame, area: Rect) {
    let selected = app.selection(Pane::Cart);
    let (first, shown) = visible(&app.cart, selected, area);
    let rows: Vec<Row> = shown
        .iter()
        .enumerate()
        .map(|(index, (sku, quantity))| {
            let product = app.product(sku);
            let name = product.map_or_else(|| sku.clone(), |product| product.name.clone());
            let amount = product
                .map(|product| {
                    Money::new(
                        product.unit_price.saturating_mul(*quantity),
                        product.currency,
                    )
                    .to_string()
                })
                .unwrap_or_default();
            let short = product.is_some_and(|product| product.available < *quantity);
            let mut row = Row::new(vec![
                Cell::from(name),
                Cell::from(Line::from(quantity.to_string()).right_aligned()),
                Cell::from(Line::from(amount).right_aligned()),
            ]);
            if short {
                row = row.style(Style::new().fg(Color::Red));
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
            Constraint::Min(6),
            Constraint::Length(4),
            Constraint::Length(13),
        ],
    )
    .header(header(&["ITEM", ">QTY", ">AMOUNT"]))
    .block(block);
    frame.render_widget(table, area);
    if app.cart.is_empty() {
        placeholder(
            frame,
            area,
            "Empty: add items in the stock pane with Enter or a, then press o to order.",
        );
    }
}

/// `CANCELLED (unpaid)`: the reason in a word, to fit the pane at 80
/// columns; the detail view says it in full.
fn status_label(order: &Order) -> String {
    match (order.status, order.cancel_reason) {
        (OrderStatus::Cancelled, _) if order.refunded => "CANCELLED (refunded)".to_owned(),
        (OrderStatus::Cancelled, _) if order.refund.is_some() => match order.refund {
            Some(shop_shared::domain::RefundState::Failed { .. }) => {
                "CANCELLED (refund failed)".to_owned()
            }
            _ => "CANCELLED (refund pending)".to_owned(),
        },
        (OrderStatus::Reserved, _) if order.checkout_delay.is_some() => {
            "RESERVED (provider down)".to_owned()
        }
        (OrderStatus::Cancelled, Some(reason)) => {
            let reason = match reason {
                shop_shared::domain::CancelReason::OutOfStock => "sold out",
                shop_shared::domain::CancelReason::NotPaid => "unpaid",
                shop_shared::domain::CancelReason::ByCustomer => "by you",
                shop_shared::domain::CancelReason::PaymentFailed => "failed",
                shop_shared::domain::CancelReason::ProviderUnavailable => "no checkout",
            };
            format!("CANCELLED ({reason})")
        }
        (status, _) => status.to_string(),
    }
}

fn status_style(status: OrderStatus) -> Style {
    match status {
        OrderStatus::New => Style::new().fg(Color::Cyan),
        OrderStatus::Reserved => Style::new().fg(Color::Yellow),
        OrderStatus::Paid => Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
        OrderStatus::Cancelled => Style::new().fg(Color::Red),
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
    let selected = app.selection(Pane::Orders);
    let (first, shown) = visible(&app.orders, selected, area);
    let rows: Vec<Row> = shown
        .iter()
        .enumerate()
        .map(|(index, order)| {
            let mut row = Row::new(vec![
                Cell::from(order.short_id()),
                Cell::from(Span::styled(
                    status_label(order),
                    status_style(order.status),
                )),
                Cell::from(Line::from(money(order)).right_aligned()),
                Cell::from(Line::from(time_left(app, order)).right_aligned()),
            ]);
            if first + index == selected {
                row = row.style(highlight(app, Pane::Orders));
            }
            row
        })
        .collect();
    let widths = [
        Constraint::Length(8),
        Constraint::Min(9),
        Constraint::Length(13),
        Constraint::Length(7),
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
        placeholder(frame, area, "No orders yet.");
    }
}

fn placeholder(frame: &mut Frame, area: Rect, text: &str) {
    let inner = Rect::new(
        area.x + 2,
        area.y + layout::FIRST_ROW,
        area.width.saturating_sub(4),
        area.height.saturating_sub(layout::FIRST_ROW + 1),
    );
    let paragraph = Paragraph::new(text)
        .style(Style::new().fg(Color::DarkGray))
        .wrap(Wrap { trim: true });
    frame.render_widget(paragraph, inner);
}

fn draw_status(app: &App, frame: &mut Frame, area: Rect) {
    let mut spans = match &app.connection {
        Connection::Online { customer_id } => {
            let mut spans = vec![
                Span::styled("● online", Style::new().fg(Color::Green)),
                Span::raw(format!(
                    " · customer {}",
                    &customer_id.simple().to_string()[..8]
                )),
            ];
            if area.width >= 120 {
                spans.push(Span::styled(
                    format!(" · {}", app.gateway),
                    Style::new().fg(Color::DarkGray),
                ));
            }
            spans
        }
        Connection::Connecting { attempt } => vec![Span::styled(
            format!("◌ connecting to {} (attempt {attempt})…", app.gateway),
            Style::new().fg(Color::Yellow),
        )],
        Connection::Offline { reason, retry_at } => {
            let wait = retry_at.remaining_from(app.now).as_secs();
            vec![Span::styled(
                format!("✕ disconnected: {reason} · retrying in {wait}s"),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            )]
        }
    };
    if let Some(notice) = &app.notice {
        let style = match notice.kind {
            NoticeKind::Info => Style::new().fg(Color::White),
            NoticeKind::Error => Style::new().fg(Color::Red),
        };
        spans.push(Span::raw(" │ "));
        spans.push(Span::styled(notice.text.clone(), style));
    }
    // The connection state and the notice come first; the key hint only
    // where there is room left.
    let left = Line::from(spans);
    let hint = Span::styled(" ? help · q quit ", Style::new().fg(Color::DarkGray));
    let hint_width = hint.width() as u16;
    let fits = left.width() as u16 + hint_width <= area.width;
    frame.render_widget(Paragraph::new(left), area);
    if fits {
        frame.render_widget(
            Paragraph::new(Line::from(hint)),
            Rect::new(area.x + area.width - hint_width, area.y, hint_width, 1),
        );
    }
}

fn overlay_block(title: String) -> Block<'static> {
    Block::bordered()
        .title(title)
        .border_style(Style::new().fg(ACCENT).add_modifier(Modifier::BOLD))
}

fn draw_help(frame: &mut Frame, screen: Rect) {
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(format!("{keys:<16}"), Style::new().fg(ACCENT)),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "Esc or ? to close",
        Style::new().fg(Color::DarkGray),
    )));
    let area = centred(screen, 62, lines.len() as u16 + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(overlay_block(" Keys ".into())),
        area,
    );
}

/// Width of the order detail box.
const DETAIL_WIDTH: u16 = 72;

fn draw_detail(app: &App, order: &Order, frame: &mut Frame, screen: Rect) {
    let mut lines = vec![
        Line::from(vec![
            Span::raw("Status  "),
            Span::styled(order.status.to_string(), status_style(order.status)),
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
                Style::new().fg(Color::Yellow),
            ),
        ]));
    }
    if let Some(refund) = order.refund.as_ref().filter(|_| !order.refunded) {
        let colour = match refund {
            shop_shared::domain::RefundState::Pending { .. } => Color::Yellow,
            shop_shared::domain::RefundState::Failed { .. } => Color::Red,
        };
        lines.push(Line::from(vec![
            Span::raw("Refund  "),
            Span::styled(refund.describe(), Style::new().fg(colour)),
        ]));
    }
    if let (OrderStatus::Reserved, Some(deadline)) = (order.status, order.pay_until) {
        lines.push(Line::from(format!(
            "Pay in  {} (until {deadline})",
            countdown(deadline, app.now)
        )));
    }
    if let Some(wait) = order.provider_wait() {
        lines.push(Line::from(vec![
            Span::raw("Pay     "),
            Span::styled(wait, Style::new().fg(Color::Yellow)),
        ]));
    }
    lines.push(Line::from(""));
    for line in &order.lines {
        let amount = match (line.amount, order.currency) {
            (Some(amount), Some(currency)) => Money::new(amount, currency).to_string(),
            _ => String::new(),
        };
        lines.push(Line::from(format!(
            "{:>4} × {:<24} {:>14}",
            line.quantity,
            line.name.clone().unwrap_or_else(|| line.sku.clone()),
            amount
        )));
    }
    lines.push(Line::from(""));
    for entry in &order.timeline {
        let time = entry.at.to_string();
        let clock = time.get(11..19).unwrap_or(&time).to_owned();
        let mut spans = vec![
            Span::styled(clock, Style::new().fg(Color::DarkGray)),
            Span::raw(format!("  {}", entry.event.as_str())),
        ];
        if let Some(detail) = &entry.detail {
            spans.push(Span::styled(
                format!("  {detail}"),
                Style::new().fg(Color::DarkGray),
            ));
        }
        lines.push(Line::from(spans));
    }
    let title = format!(" Order {} · Esc to close ", order.short_id());
    let paragraph = Paragraph::new(lines)
        .block(overlay_block(title))
        .wrap(Wrap { trim: false });
    // Long details (a provider's refusal) wrap: make room for every row.
    let width = DETAIL_WIDTH.min(screen.width);
    let height = paragraph.line_count(width.saturating_sub(2));
    let area = centred(screen, width, u16::try_from(height).unwrap_or(u16::MAX));
    frame.render_widget(Clear, area);
    frame.render_widget(paragraph, area);
}

/// Where the pay box is and what it holds, for drawing it and for writing
/// the hyperlink over its URL.
struct PayBox {
    area: Rect,
    url_row: u16,
    qr: Option<Vec<String>>,
}

fn pay_box(order: &Order, screen: Rect) -> PayBox {
    let url = order.checkout_url.clone().unwrap_or_default();
    let qr = qr::lines(&url);
    let qr_height = qr.as_ref().map_or(0, |lines| lines.len() as u16);
    let qr_width = qr
        .as_ref()
        .map_or(0, |lines| lines[0].chars().count() as u16);
    // Title row, URL, hint, then the code; the code only when it fits.
    let text_rows = 3;
    let fits = qr_height + text_rows + 2 <= screen.height && qr_width + 2 <= screen.width;
    let width = (url.chars().count() as u16 + 4)
        .max(qr_width + 4)
        .max(44)
        .min(screen.width);
    let height = if fits {
        qr_height + text_rows + 2
    } else {
        text_rows + 3
    };
    let area = centred(screen, width, height);
    PayBox {
        area,
        url_row: area.y + 2,
        qr: qr.filter(|_| fits),
    }
}

/// The checkout URL on screen, as (column, row, url), when the pay box
/// shows one: the terminal loop writes it again as a hyperlink.
pub fn pay_link(app: &App, screen: Rect) -> Option<(u16, u16, String)> {
    let Overlay::Pay(id) = app.overlay else {
        return None;
    };
    let order = app.order(id)?;
    let url = order.checkout_url.clone()?;
    if order.status != OrderStatus::Reserved {
        return None;
    }
    let geometry = pay_box(order, screen);
    Some((geometry.area.x + 1, geometry.url_row, url))
}

fn draw_pay(app: &App, order: &Order, frame: &mut Frame, screen: Rect) {
    let geometry = pay_box(order, screen);
    let area = geometry.area;
    frame.render_widget(Clear, area);
    let title = format!(" Pay order {} · {} ", order.short_id(), money(order));
    frame.render_widget(overlay_block(title), area);
    let inner = Rect::new(
        area.x + 1,
        area.y + 1,
        area.width.saturating_sub(2),
        area.height.saturating_sub(2),
    );
    let state = match order.status {
        OrderStatus::Reserved => Line::from(vec![
            Span::styled("Waiting for payment", status_style(order.status)),
            Span::raw(format!(" · pay in {}", time_left(app, order))),
        ]),
        OrderStatus::Paid => Line::from(Span::styled(
            "✓ Paid — thank you!",
            status_style(OrderStatus::Paid),
        )),
        _ => Line::from(Span::styled(
            status_label(order),
            status_style(order.status),
        )),
    };
    let url = order.checkout_url.clone().unwrap_or_default();
    let hint = Line::from(Span::styled(
        "o open in the browser · scan the code with a phone · Esc close",
        Style::new().fg(Color::DarkGray),
    ));
    if order.status != OrderStatus::Reserved {
        frame.render_widget(
            Paragraph::new(vec![
                state,
                Line::from(""),
                Line::from(Span::styled("Esc close", Style::new().fg(Color::DarkGray))),
            ]),
            inner,
        );
        return;
    }
    let mut lines = vec![
        state,
        Line::from(Span::styled(
            url,
            Style::new().fg(ACCENT).add_modifier(Modifier::UNDERLINED),
        )),
        hint,
    ];
    match &geometry.qr {
        Some(code) => {
            for row in code {
                lines.push(
                    Line::from(Span::styled(
                        row.clone(),
                        Style::new().fg(Color::Black).bg(Color::White),
                    ))
                    .centered(),
                );
            }
        }
        None => lines.push(Line::from(Span::styled(
            "(enlarge the terminal to see the QR code)",
            Style::new().fg(Color::DarkGray),
        ))),
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn draw_confirm(order: &Order, frame: &mut Frame, screen: Rect) {
    let lines = vec![
        Line::from(format!(
            "Cancel order {} ({})?",
            order.short_id(),
            money(order)
        )),
        Line::from("Its items go back to the shop."),
        Line::from(""),
        Line::from(vec![
            Span::styled(
                "y",
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
            Span::raw(" cancel it   "),
            Span::styled(
                "n",
                Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
            ),
            Span::raw(" / Esc keep it"),
        ]),
    ];
    let area = centred(screen, 44, 6);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(overlay_block(" Cancel? ".into())),
        area,
    );
}

/// Why the shop refused an order, wrapped to fit.
fn draw_refused(explanation: &str, frame: &mut Frame, screen: Rect) {
    let mut lines: Vec<Line> = explanation.lines().map(Line::from).collect();
    lines.push(Line::from(""));
    lines.push(Line::from(vec![
        Span::styled("Esc", Style::new().fg(ACCENT).add_modifier(Modifier::BOLD)),
        Span::raw(" close; the cart is kept"),
    ]));
    let area = centred(screen, 60, 12);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(overlay_block(" Order not placed ".into())),
        area,
    );
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

        vec![
            ("empty", empty),
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

    #[test]
    fn screens_at_80_by_24() {
        for (name, app) in screens() {
            insta::assert_snapshot!(
                format!("{name}_80x24"),
                render(&app, 80, 24).backend().to_string()
            );
        }
    }

    #[test]
    fn screens_at_120_by_40() {
        for (name, app) in screens() {
            insta::assert_snapshot!(
                format!("{name}_120x40"),
                render(&app, 120, 40).backend().to_string()
            );
        }
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
        let stock = crate::layout::areas(Rect::new(0, 0, 80, 24)).stock;
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

    /// The text of every row of `terminal`.
    fn rows(terminal: &Terminal<TestBackend>) -> String {
        let buffer = terminal.backend().buffer();
        let area = buffer.area;
        (area.y..area.y + area.height)
            .map(|y| {
                (area.x..area.x + area.width)
                    .map(|x| buffer[(x, y)].symbol().to_owned())
                    .collect::<String>()
                    + "\n"
            })
            .collect()
    }

    #[test]
    fn provider_trouble_shows_in_the_orders_pane_and_in_the_detail() {
        let mut waiting = order(1, OrderStatus::Reserved);
        waiting.checkout_url = None;
        waiting.checkout_delay = Some("payment provider unavailable: HTTP 503".into());
        let mut app = online(vec![waiting]);
        app.pane = crate::app::Pane::Orders;
        let text = rows(&render(&app, 120, 40));
        assert!(text.contains("RESERVED (provider down)"), "{text}");
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
        assert!(text.contains("CANCELLED (refund pending)"), "{text}");
        app.update(Action::Activate);
        let text = rows(&render(&app, 120, 40));
        assert!(
            text.contains("refund pending (charge disputed; retrying)"),
            "{text}"
        );
    }

    #[test]
    fn the_pay_link_is_where_the_url_is_drawn() {
        let mut app = online(vec![order(1, OrderStatus::Reserved)]);
        app.pane = crate::app::Pane::Orders;
        app.update(Action::Pay);
        let screen = Rect::new(0, 0, 80, 24);
        let (column, row, url) = pay_link(&app, screen).expect("a link");
        let terminal = render(&app, 80, 24);
        let buffer = terminal.backend().buffer();
        let drawn: String = (column..column + url.chars().count() as u16)
            .map(|x| buffer[(x, row)].symbol().to_owned())
            .collect();
        assert_eq!(drawn, url);
    }
}
