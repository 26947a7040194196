//! Human output: aligned tables, money as `4,500.00 EUR`, deadlines as a
//! countdown, and colour only on a terminal and never with `NO_COLOR`.
//! Text from the shop goes through [`safe`] (or into a [`Cell`], which
//! does it), so a product name cannot drive the terminal, and columns are
//! aligned on terminal columns, so wide characters do not shift them.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use shop_client::text;
use shop_shared::domain::{Order, OrderStatus};
use shop_shared::money::{Currency, Money};
use shop_shared::time::Timestamp;

use crate::error::{CliError, Exit};

/// Prints a formatted line to standard output, as `println!` does, but
/// returns a [`CliError`] instead of panicking when the output is gone.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use out;

/// Writes `text` to standard output.
///
/// # Errors
///
/// [`Exit::BrokenPipe`], without a message, when the reader has closed the
/// pipe (`shop watch | head -1`): the command ends quietly, with the status
/// a shell shows for a process stopped by `SIGPIPE`. Any other write
/// failure (a full disk) is a usage error saying so.
pub fn write(text: fmt::Arguments<'_>) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(text)
        .and_then(|()| stdout.flush())
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::BrokenPipe => CliError::new(Exit::BrokenPipe, ""),
            _ => CliError::usage(format!("cannot write the output: {error}")),
        })
}

/// Whether to paint, and how wide the terminal is.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    color: bool,
    /// Columns of the terminal stdout is, if it is one: tables fit it.
    width: Option<usize>,
}

impl Style {
    /// Colour when stdout is a terminal and `NO_COLOR` is not set; the
    /// terminal's width when stdout is one.
    pub fn detect() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        let terminal = std::io::stdout().is_terminal();
        Style {
            color: terminal && !no_color,
            width: terminal
                .then(crossterm::terminal::size)
                .and_then(Result::ok)
                .map(|(columns, _)| usize::from(columns)),
        }
    }

    #[cfg(test)]
    pub fn plain() -> Style {
        Style {
            color: false,
            width: None,
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    /// A status in its colour: yellow while it waits, green paid, red cancelled.
    pub fn status(&self, order: &Order) -> Cell {
        let plain = status_text(order);
        let code = match order.status {
            OrderStatus::New => "36",
            OrderStatus::Reserved => "33",
            OrderStatus::Paid => "32",
            OrderStatus::Cancelled => "31",
        };
        Cell {
            painted: self.paint(code, &plain),
            plain,
        }
    }
}

/// `CANCELLED (unpaid)`, `CANCELLED (unpaid, refund pending)`, `PAID`, …:
/// the words `shop-tui` uses too.
pub fn status_text(order: &Order) -> String {
    shop_client::words::status(order)
}

/// Text from the shop as it may be printed: control characters shown,
/// not obeyed ([`text::visible`]).
pub fn safe(text: &str) -> std::borrow::Cow<'_, str> {
    text::visible(text)
}

/// Money for people, or `-` when there is none yet. `amount` is in minor
/// units of `currency`.
pub fn money(amount: Option<i64>, currency: Option<Currency>) -> String {
    match (amount, currency) {
        (Some(amount), Some(currency)) => Money::new(amount, currency).to_string(),
        _ => "-".to_owned(),
    }
}

pub use shop_shared::time::countdown;

/// How long until `deadline` for an order that still takes payment.
pub fn time_left(order: &Order, now: Timestamp) -> String {
    match (order.status, order.pay_until) {
        (OrderStatus::Reserved, Some(deadline)) => countdown(deadline, now),
        _ => "-".to_owned(),
    }
}

/// The short form of a duration: `3s`, `2m 5s`.
pub fn duration(value: Duration) -> String {
    humantime::format_duration(Duration::from_secs(value.as_secs())).to_string()
}

/// A table cell: its text, and the same text painted.
#[derive(Debug, Clone)]
pub struct Cell {
    plain: String,
    painted: String,
}

impl Cell {
    /// The text as it is shown, painted when colour is on.
    pub fn shown(&self) -> &str {
        &self.painted
    }
}

/// Text from anywhere, the shop included: shown safely.
impl From<String> for Cell {
    fn from(plain: String) -> Self {
        let plain = safe(&plain).into_owned();
        Cell {
            painted: plain.clone(),
            plain,
        }
    }
}

impl From<&str> for Cell {
    fn from(plain: &str) -> Self {
        Cell::from(plain.to_owned())
    }
}

/// Which side a column's text keeps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Columns aligned on their widest cell, measured in terminal columns.
pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<Cell>>,
    /// The column whose text is elided with `…` when the table is wider
    /// than the terminal (a name; never money, ids or links).
    elidable: Option<usize>,
}

/// The narrowest an elided column becomes.
const ELIDED_MIN: usize = 8;

impl Table {
    pub fn new(columns: &[(&str, Align)]) -> Table {
        Table {
            columns: columns
                .iter()
                .map(|(name, align)| ((*name).to_owned(), *align))
                .collect(),
            rows: Vec::new(),
            elidable: None,
        }
    }

    /// Elides column `index` first when the table is wider than the
    /// terminal.
    pub fn eliding(mut self, index: usize) -> Table {
        self.elidable = Some(index);
        self
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    pub fn render(&self, style: Style) -> String {
        let width = text::width;
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(index, (name, _))| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(index))
                    .map(|cell| width(&cell.plain))
                    .chain([width(name)])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let total = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
        if let (Some(columns), Some(index)) = (style.width, self.elidable)
            && total > columns
            && let Some(elided) = widths.get_mut(index)
        {
            *elided = elided
                .saturating_sub(total - columns)
                .max(ELIDED_MIN.min(*elided));
        }
        let line = |cells: Vec<(String, String)>| {
            let last = cells.len().saturating_sub(1);
            let mut out = String::new();
            for (index, ((plain, painted), ((_, align), width))) in cells
                .into_iter()
                .zip(self.columns.iter().zip(&widths))
                .enumerate()
            {
                let pad = " ".repeat(width.saturating_sub(text::width(&plain)));
                match align {
                    Align::Left if index == last => out.push_str(&painted),
                    Align::Left => out.push_str(&format!("{painted}{pad}")),
                    Align::Right => out.push_str(&format!("{pad}{painted}")),
                }
                if index != last {
                    out.push_str("  ");
                }
            }
            out.trim_end().to_owned()
        };
        let mut out = line(
            self.columns
                .iter()
                .map(|(name, _)| (name.clone(), style.bold(name)))
                .collect(),
        );
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(
                row.iter()
                    .enumerate()
                    .map(|(index, cell)| match self.elidable {
                        Some(elided) if elided == index && width(&cell.plain) > widths[index] => {
                            let short = text::elide(&cell.plain, widths[index]).into_owned();
                            (short.clone(), short)
                        }
                        _ => (cell.plain.clone(), cell.painted.clone()),
                    })
                    .collect(),
            ));
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_elide_names_to_fit_the_terminal_and_never_cut_money() {
        let mut table = Table::new(&[
            ("SKU", Align::Left),
            ("NAME", Align::Left),
            ("PRICE", Align::Right),
        ])
        .eliding(1);
        table.row(vec![
            "SKU-001".into(),
            "MacBook Pro with a very long name indeed".into(),
            "115,620.00 EUR".into(),
        ]);
        let narrow = Style {
            color: false,
            width: Some(40),
        };
        assert_eq!(
            table.render(narrow),
            "SKU      NAME                      PRICE\n\
             SKU-001  MacBook Pro wi…  115,620.00 EUR\n"
        );
        assert!(
            table
                .render(Style::plain())
                .contains("MacBook Pro with a very long name indeed"),
            "not a terminal: nothing is cut"
        );
    }

    #[test]
    fn tables_align_columns_on_their_widest_cell() {
        let mut table = Table::new(&[
            ("SKU", Align::Left),
            ("PRICE", Align::Right),
            ("NAME", Align::Left),
        ]);
        table.row(vec![
            "SKU-001".into(),
            "4,500.00 EUR".into(),
            "MacBook Pro".into(),
        ]);
        table.row(vec!["X".into(), "5.00 EUR".into(), "Mug".into()]);
        assert_eq!(
            table.render(Style::plain()),
            "SKU             PRICE  NAME\n\
             SKU-001  4,500.00 EUR  MacBook Pro\n\
             X            5.00 EUR  Mug\n"
        );
    }

    #[test]
    fn tables_align_wide_characters_and_show_control_characters() {
        let mut table = Table::new(&[("NAME", Align::Left), ("PRICE", Align::Right)]);
        table.row(vec!["世界の時計".into(), "5.00 EUR".into()]);
        table.row(vec!["Mug\x1b[31m\nX".into(), "12,000.00 EUR".into()]);
        assert_eq!(
            table.render(Style::plain()),
            "NAME                PRICE\n\
             世界の時計       5.00 EUR\n\
             Mug␛[31m␊X  12,000.00 EUR\n"
        );
    }

    #[test]
    fn money_shows_currency_or_a_dash() {
        assert_eq!(money(Some(450_000), Some(Currency::EUR)), "4,500.00 EUR");
        assert_eq!(money(None, Some(Currency::EUR)), "-");
    }
}
