//! Where things go on screen: a pure function of the terminal size, used
//! both to draw and to find what a mouse click hit.

use ratatui::layout::{Constraint, Layout, Rect};

/// The screen's regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub stock: Rect,
    /// The selected product's details, when they show: beside the stock
    /// on a wide terminal, else (when asked for) over the cart and orders.
    pub detail: Option<Rect>,
    /// Empty while the details cover it.
    pub cart: Rect,
    /// Empty while the details cover it.
    pub orders: Rect,
    /// The keys of the focused pane.
    pub footer: Rect,
    pub status: Rect,
}

/// The smallest terminal the shop is drawn in; below it, a screen says
/// so. At this size every pane still shows money and ids whole.
pub const MIN_SIZE: (u16, u16) = (60, 16);

/// Below this width the cart and the orders are stacked, not side by
/// side, so that neither has to cut a total or a name.
const SIDE_BY_SIDE: u16 = 80;

/// From this width the selected product's details always show, beside
/// the stock; below it they show on request, over the cart and orders.
const DETAILS_BESIDE: u16 = 120;

/// Whether the details show beside the stock on `screen`, always.
pub fn details_beside(screen: Rect) -> bool {
    screen.width >= DETAILS_BESIDE
}

/// Whether `screen` is too small to draw the shop in.
pub fn too_small(screen: Rect) -> bool {
    screen.width < MIN_SIZE.0 || screen.height < MIN_SIZE.1
}

/// Rows from a pane's top edge to its first data row: the border and the
/// column headers.
pub const FIRST_ROW: u16 = 2;

/// Stock across the top; cart and orders side by side below (stacked on
/// a narrow terminal); the keys of the focused pane and then the status
/// bar on the last lines. `cart` is the width the cart's lines want
/// (0 when empty): side by side, the cart gets it within 30 to 45 % of the
/// screen, so that alike names ("MacBook Pro", "MacBook Air") stay apart.
/// `details`: the product's details were asked for (`i`); on a wide
/// screen they show anyway.
pub fn areas(screen: Rect, cart: u16, details: bool) -> Areas {
    let [main, footer, status] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(screen);
    let (stock, cart, orders) = if screen.width >= SIDE_BY_SIDE {
        let [stock, bottom] =
            Layout::vertical([Constraint::Percentage(40), Constraint::Min(0)]).areas(main);
        let cart_width = if cart == 0 {
            screen.width * 38 / 100
        } else {
            cart.clamp(screen.width * 30 / 100, screen.width * 45 / 100)
        };
        let [cart, orders] =
            Layout::horizontal([Constraint::Length(cart_width), Constraint::Min(0)]).areas(bottom);
        (stock, cart, orders)
    } else {
        let [stock, cart, orders] = Layout::vertical([
            Constraint::Percentage(40),
            Constraint::Fill(1),
            Constraint::Fill(1),
        ])
        .areas(main);
        (stock, cart, orders)
    };
    let (stock, detail, cart, orders) = if details_beside(screen) {
        let [stock, detail] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Percentage(35)]).areas(stock);
        (stock, Some(detail), cart, orders)
    } else if details {
        let covered = cart.union(orders);
        (stock, Some(covered), Rect::default(), Rect::default())
    } else {
        (stock, None, cart, orders)
    };
    Areas {
        stock,
        detail,
        cart,
        orders,
        footer,
        status,
    }
}

/// Data rows a pane shows.
pub fn visible_rows(pane: Rect) -> usize {
    usize::from(pane.height.saturating_sub(FIRST_ROW + 1))
}

/// The first row shown, so that `selected` stays in view.
pub fn offset(selected: usize, visible: usize) -> usize {
    if visible == 0 {
        return selected;
    }
    (selected + 1).saturating_sub(visible)
}

/// A box of `width` × `height` centred in `area`, clipped to it.
pub fn centred(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_region_fits_an_80_by_24_terminal() {
        let screen = Rect::new(0, 0, 80, 24);
        let areas = areas(screen, 0, false);
        assert_eq!(areas.status, Rect::new(0, 23, 80, 1));
        assert_eq!(areas.footer, Rect::new(0, 22, 80, 1));
        assert_eq!(areas.stock.width, 80);
        assert!(
            visible_rows(areas.stock) >= 3,
            "the reference shop's three products fit"
        );
        assert_eq!(areas.cart.width + areas.orders.width, 80);
        assert!(visible_rows(areas.orders) >= 8);
    }

    #[test]
    fn a_narrow_terminal_stacks_cart_and_orders_at_full_width() {
        let areas = areas(Rect::new(0, 0, 60, 16), 0, false);
        assert_eq!((areas.cart.width, areas.orders.width), (60, 60));
        assert!(areas.cart.bottom() <= areas.orders.y);
        assert!(visible_rows(areas.stock) >= 2 && visible_rows(areas.orders) >= 1);
    }

    #[test]
    fn details_show_beside_the_stock_when_wide_and_over_the_cart_when_asked() {
        let wide = areas(Rect::new(0, 0, 120, 35), 0, false);
        let detail = wide.detail.expect("always beside at 120 wide");
        assert_eq!(detail.y, wide.stock.y);
        assert_eq!(wide.stock.width + detail.width, 120);
        assert!(areas(Rect::new(0, 0, 80, 24), 0, false).detail.is_none());
        let small = areas(Rect::new(0, 0, 60, 16), 0, true);
        let detail = small.detail.expect("asked for");
        assert!(detail.height >= 8, "{detail:?}");
        assert_eq!(small.cart, Rect::default());
        assert_eq!(small.stock.width, 60);
    }

    #[test]
    fn the_selection_stays_in_view() {
        assert_eq!(offset(0, 5), 0);
        assert_eq!(offset(4, 5), 0);
        assert_eq!(offset(5, 5), 1);
        assert_eq!(offset(12, 5), 8);
    }
}
