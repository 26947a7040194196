//! Every key of the terminal shop, defined once.
//!
//! [`BINDINGS`] says which keys do what and where; the same table turns a
//! key press into an [`Action`] ([`action`]), writes the `?` help and the
//! footer of the focused pane's keys ([`help`], [`footer`]), so what the
//! help says is what the keys do. Some keys are a customer's (the cart,
//! orders), some an operator's (restock, prices): each session is offered
//! only its own.

use crossterm::event::{
    Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEventKind,
};

use crate::app::{Action, Pane};
use Action::{
    Activate, Back, Cancel, Category, Delete as Remove, Details, Down as MoveDown, Edit, Fewer,
    Filter, First, Help, Last, More, NextPane, No, Open, PageDown as NextPage,
    PageUp as PreviousPage, Pay, PlaceOrder, PreviousPane, Quit, Reprice, Restock, Up as MoveUp,
    WithdrawOrRelist, WriteOff, Yes,
};
use KeyCode::{
    BackTab, Backspace, Char, Delete, Down, End, Enter, Esc, Home, Left, PageDown, PageUp, Right,
    Tab, Up,
};
use Scope::{Everywhere, In};
use Who::{Anyone, Customer, Operator};

/// Whose key it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Anyone,
    /// Shopping: the cart and orders. An operator's session places no
    /// orders.
    Customer,
    /// Running the catalogue: only a session signed in with an operator's
    /// token.
    Operator,
}

impl Who {
    /// Whether a session (an operator's or not) is offered the key.
    pub fn offered_to(self, operator: bool) -> bool {
        match self {
            Anyone => true,
            Customer => !operator,
            Operator => operator,
        }
    }
}

/// Where a key does what its binding says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In every pane.
    Everywhere,
    In(Pane),
}

/// Keys and what they do.
#[derive(Debug, Clone)]
pub struct Binding {
    pub scope: Scope,
    pub who: Who,
    /// The keys, as the help shows them.
    pub keys: &'static str,
    /// Each key and its action: one line of the help may hold a pair of
    /// opposites (`g, G`: first, last).
    pub actions: &'static [(KeyCode, Action)],
    /// What it does, for the help.
    pub does: &'static str,
    /// A word or two for the footer; `None` keeps it to the help.
    pub hint: Option<&'static str>,
}

const fn bind(
    scope: Scope,
    who: Who,
    keys: &'static str,
    actions: &'static [(KeyCode, Action)],
    does: &'static str,
    hint: Option<&'static str>,
) -> Binding {
    Binding {
        scope,
        who,
        keys,
        actions,
        does,
        hint,
    }
}

/// Every key. A key that appears in several scopes means one action; the
/// panes give it its meaning (Enter adds in the stock pane, orders in the
/// cart, opens an order in the orders pane; `n` answers no to a question,
/// and with none open adds an operator's product in the stock pane).
#[rustfmt::skip]
pub const BINDINGS: &[Binding] = &[
    bind(In(Pane::Stock), Customer, "a, +", &[(Char('a'), More), (Char('+'), More), (Char('='), More)], "add one to the cart", Some("add")),
    bind(In(Pane::Stock), Customer, "Enter", &[(Enter, Activate)], "add one to the cart", None),
    bind(In(Pane::Stock), Customer, "-", &[(Char('-'), Fewer)], "take one out of the cart", None),
    bind(In(Pane::Stock), Operator, "r", &[(Char('r'), Restock)], "restock: add units (asks how many)", Some("restock")),
    bind(In(Pane::Stock), Operator, "w", &[(Char('w'), WriteOff)], "write units off (asks how many, why)", Some("write off")),
    bind(In(Pane::Stock), Operator, "P", &[(Char('P'), Reprice)], "change the price (asks the amount)", Some("price")),
    bind(In(Pane::Stock), Operator, "W", &[(Char('W'), WithdrawOrRelist)], "withdraw or relist (asks first)", Some("withdraw")),
    bind(In(Pane::Stock), Operator, "n", &[(Char('n'), No)], "add a product (asks sku, name, price…)", Some("new")),
    bind(In(Pane::Stock), Operator, "e", &[(Char('e'), Edit)], "edit name, description, category, image", Some("edit")),
    bind(In(Pane::Stock), Anyone, "/", &[(Char('/'), Filter)], "filter by sku or name (Esc clears)", Some("filter")),
    bind(In(Pane::Stock), Anyone, "C", &[(Char('C'), Category)], "next category (all, then each)", Some("category")),
    bind(In(Pane::Stock), Anyone, "i", &[(Char('i'), Details)], "show or hide the product's details", Some("details")),
    bind(In(Pane::Stock), Customer, "o", &[(Char('o'), PlaceOrder)], "order the cart (shows the total, asks)", Some("order")),
    bind(In(Pane::Cart), Customer, "a, +", &[(Char('a'), More), (Char('+'), More), (Char('='), More)], "one more", Some("more")),
    bind(In(Pane::Cart), Customer, "-", &[(Char('-'), Fewer)], "one fewer", Some("fewer")),
    bind(In(Pane::Cart), Customer, "d, Delete", &[(Char('d'), Remove), (Delete, Remove), (Backspace, Remove)], "remove the line", Some("remove")),
    bind(In(Pane::Cart), Customer, "o", &[(Char('o'), PlaceOrder)], "order the cart (shows the total, asks)", Some("order")),
    bind(In(Pane::Cart), Customer, "Enter", &[(Enter, Activate)], "order the cart (asks, as o does)", None),
    bind(In(Pane::Orders), Customer, "Enter", &[(Enter, Activate)], "the order in full", Some("details")),
    bind(In(Pane::Orders), Customer, "p", &[(Char('p'), Pay)], "pay: link and QR code", Some("pay")),
    bind(In(Pane::Orders), Customer, "O", &[(Char('O'), Open)], "open the checkout in the browser", Some("open")),
    bind(In(Pane::Orders), Customer, "c", &[(Char('c'), Cancel)], "cancel (asks first)", Some("cancel")),
    bind(In(Pane::Orders), Customer, "o", &[(Char('o'), PlaceOrder)], "order the cart (shows the total, asks)", None),
    bind(Everywhere, Anyone, "Tab, →, l", &[(Tab, NextPane), (Right, NextPane), (Char('l'), NextPane)], "next pane", None),
    bind(Everywhere, Anyone, "Shift-Tab, ←, h", &[(BackTab, PreviousPane), (Left, PreviousPane), (Char('h'), PreviousPane)], "previous pane", None),
    bind(Everywhere, Anyone, "↑ ↓, k j", &[(Up, MoveUp), (Down, MoveDown), (Char('k'), MoveUp), (Char('j'), MoveDown)], "move (a click selects too)", None),
    bind(Everywhere, Anyone, "g, G", &[(Char('g'), First), (Home, First), (Char('G'), Last), (End, Last)], "first, last row", None),
    bind(Everywhere, Anyone, "PgUp, PgDn", &[(PageUp, PreviousPage), (PageDown, NextPage)], "a page up, down", None),
    bind(Everywhere, Anyone, "y, n", &[(Char('y'), Yes), (Char('n'), No)], "answer a question", None),
    bind(Everywhere, Anyone, "Esc", &[(Esc, Back)], "close a box, clear the filter", None),
    bind(Everywhere, Anyone, "?", &[(Char('?'), Help)], "these keys", Some("help")),
    bind(Everywhere, Anyone, "q, Ctrl-C", &[(Char('q'), Quit)], "quit", Some("quit")),
];

/// The action of a terminal event. `typing` is true while the stock
/// filter takes text. A key no binding knows is [`Action::Unknown`].
pub fn action(event: Event, typing: bool) -> Option<Action> {
    match event {
        Event::Key(key) => key_action(key, typing),
        Event::Mouse(mouse) => match mouse.kind {
            MouseEventKind::Down(MouseButton::Left) => Some(Action::Click {
                column: mouse.column,
                row: mouse.row,
            }),
            MouseEventKind::ScrollUp => Some(Action::Up),
            MouseEventKind::ScrollDown => Some(Action::Down),
            _ => None,
        },
        Event::Resize(width, height) => Some(Action::Resize { width, height }),
        _ => None,
    }
}

fn key_action(key: KeyEvent, typing: bool) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return Some(match key.code {
            Char('c') => Action::Quit,
            _ => Action::Unknown,
        });
    }
    if typing {
        return Some(match key.code {
            Char(c) => Action::Type(c),
            Backspace => Action::Erase,
            Enter | Tab | Down => Action::Activate,
            Esc => Action::Back,
            // The footer says which keys work while typing.
            _ => return None,
        });
    }
    let action = BINDINGS
        .iter()
        .flat_map(|binding| binding.actions)
        .find(|(code, _)| *code == key.code)
        .map_or(Action::Unknown, |(_, action)| action.clone());
    Some(action)
}

/// The bindings of `pane` and then those of every pane, as offered to an
/// operator's session or a customer's: the `?` help.
pub fn help(pane: Pane, operator: bool) -> impl Iterator<Item = &'static Binding> {
    let offered = move |b: &&Binding| b.who.offered_to(operator);
    let here = BINDINGS.iter().filter(move |b| b.scope == In(pane));
    here.chain(BINDINGS.iter().filter(|b| b.scope == Everywhere))
        .filter(offered)
}

/// Whose key `action` is, in `pane`: the binding that offers it there, or
/// any binding of it.
pub fn whose(pane: Pane, action: &Action) -> Who {
    let binds = |b: &&Binding| b.actions.iter().any(|(_, bound)| bound == action);
    BINDINGS
        .iter()
        .filter(|b| b.scope == In(pane) || b.scope == Everywhere)
        .find(binds)
        .or_else(|| BINDINGS.iter().find(binds))
        .map_or(Anyone, |b| b.who)
}

/// `a add · / filter · o order · ? help · q quit`: the footer of `pane`.
pub fn footer(pane: Pane, operator: bool) -> Vec<(&'static str, &'static str)> {
    help(pane, operator)
        .filter_map(|binding| {
            let key = binding.keys.split(", ").next().unwrap_or(binding.keys);
            binding.hint.map(|hint| (key, hint))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> Option<Action> {
        action(Event::Key(KeyEvent::new(code, modifiers)), false)
    }

    #[test]
    fn arrows_and_vim_keys_move_and_ctrl_c_quits() {
        assert_eq!(press(Char('j'), KeyModifiers::NONE), Some(Action::Down));
        assert_eq!(press(Up, KeyModifiers::NONE), Some(Action::Up));
        assert_eq!(press(Char('c'), KeyModifiers::CONTROL), Some(Action::Quit));
        assert_eq!(press(Char('c'), KeyModifiers::NONE), Some(Action::Cancel));
        assert_eq!(press(Char('O'), KeyModifiers::SHIFT), Some(Action::Open));
        assert_eq!(press(Char('g'), KeyModifiers::NONE), Some(Action::First));
        assert_eq!(press(Char('G'), KeyModifiers::SHIFT), Some(Action::Last));
        assert_eq!(press(PageDown, KeyModifiers::NONE), Some(Action::PageDown));
        assert_eq!(press(Char('z'), KeyModifiers::NONE), Some(Action::Unknown));
    }

    #[test]
    fn h_and_l_move_between_panes_and_never_change_quantities() {
        assert_eq!(
            press(Char('h'), KeyModifiers::NONE),
            Some(Action::PreviousPane)
        );
        assert_eq!(press(Char('l'), KeyModifiers::NONE), Some(Action::NextPane));
        assert_eq!(press(Right, KeyModifiers::NONE), Some(Action::NextPane));
    }

    #[test]
    fn a_key_means_one_action_wherever_it_is_bound() {
        for (code, action) in BINDINGS.iter().flat_map(|binding| binding.actions) {
            assert_eq!(
                press(*code, KeyModifiers::NONE).as_ref(),
                Some(action),
                "{code:?} is bound to two actions"
            );
        }
    }

    #[test]
    fn the_readme_keys_table_is_these_bindings() {
        let readme = include_str!("../../README.md");
        for binding in BINDINGS {
            let place = match (binding.scope, binding.who) {
                (Everywhere, _) => "everywhere",
                (In(Pane::Stock), Operator) => "Stock, operators",
                (In(Pane::Stock), _) => "Stock",
                (In(Pane::Cart), _) => "Cart",
                (In(Pane::Orders), _) => "My orders",
            };
            let row = format!("| `{}` | {place} | {} |", binding.keys, binding.does);
            assert!(readme.contains(&row), "README.md lacks the row {row}");
        }
        let rows = readme
            .lines()
            .skip_while(|line| !line.starts_with("| keys | where | what |"))
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .count();
        assert_eq!(rows, BINDINGS.len(), "one README row per binding");
    }

    #[test]
    fn operators_are_offered_the_catalogue_keys_and_customers_the_cart() {
        let operator: Vec<&str> = footer(Pane::Stock, true).iter().map(|(k, _)| *k).collect();
        assert!(
            operator.contains(&"r") && operator.contains(&"W"),
            "{operator:?}"
        );
        assert!(
            !operator.contains(&"a") && !operator.contains(&"o"),
            "{operator:?}"
        );
        let customer: Vec<&str> = footer(Pane::Stock, false).iter().map(|(k, _)| *k).collect();
        assert!(
            customer.contains(&"a") && !customer.contains(&"r"),
            "{customer:?}"
        );
        assert!(help(Pane::Orders, true).all(|b| b.who != Customer));
        assert_eq!(whose(Pane::Stock, &Action::Restock), Operator);
        assert_eq!(whose(Pane::Cart, &Action::Activate), Customer);
        assert_eq!(whose(Pane::Stock, &Action::Filter), Anyone);
    }

    #[test]
    fn the_filter_takes_every_character_while_typing() {
        let typed = |code| action(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)), true);
        assert_eq!(typed(Char('q')), Some(Action::Type('q')));
        assert_eq!(typed(Backspace), Some(Action::Erase));
        assert_eq!(typed(Esc), Some(Action::Back));
    }
}
