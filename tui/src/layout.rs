//! Where things go on screen: a pure function of the terminal size, used
//! both to draw and to find what a mouse click hit.

use ratatui::layout::{Constraint, Layout, Rect};

/// The screen's regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub stock: Rect,
    pub cart: Rect,
    pub orders: Rect,
    pub status: Rect,
}

/// Rows from a pane's top edge to its first data row: the border and the
/// column headers.
pub const FIRST_ROW: u16 = 2;

/// Stock across the top; cart and orders side by side below; the status
/// bar on the last line.
pub fn areas(screen: Rect) -> Areas {
    let [main, status] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(screen);
    let [stock, bottom] =
        Layout::vertical([Constraint::Percentage(40), Constraint::Min(0)]).areas(main);
    let [cart, orders] =
        Layout::horizontal([Constraint::Percentage(36), Constraint::Percentage(64)]).areas(bottom);
    Areas {
        stock,
        cart,
        orders,
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
        let areas = areas(screen);
        assert_eq!(areas.status, Rect::new(0, 23, 80, 1));
        assert_eq!(areas.stock.width, 80);
        assert!(
            visible_rows(areas.stock) >= 3,
            "the reference shop's three products fit"
        );
        assert_eq!(areas.cart.width + areas.orders.width, 80);
        assert!(visible_rows(areas.orders) >= 8);
    }

    #[test]
    fn the_selection_stays_in_view() {
        assert_eq!(offset(0, 5), 0);
        assert_eq!(offset(4, 5), 0);
        assert_eq!(offset(5, 5), 1);
        assert_eq!(offset(12, 5), 8);
    }
}
