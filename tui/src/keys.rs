//! Keys and mouse events as actions.

use crossterm::event::{
    Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEventKind,
};

use crate::app::Action;

/// The action of a terminal event, if it has one.
pub fn action(event: Event) -> Option<Action> {
    match event {
        Event::Key(key) => key_action(key),
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

fn key_action(key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return matches!(key.code, KeyCode::Char('c')).then_some(Action::Quit);
    }
    Some(match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('?') => Action::Help,
        KeyCode::Tab => Action::NextPane,
        KeyCode::BackTab => Action::PreviousPane,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::Right | KeyCode::Char('l' | '+' | 'a' | '=') => Action::More,
        KeyCode::Left | KeyCode::Char('h' | '-') => Action::Fewer,
        KeyCode::Delete | KeyCode::Backspace | KeyCode::Char('d') => Action::Delete,
        KeyCode::Enter => Action::Activate,
        KeyCode::Char('o') => Action::PlaceOrder,
        KeyCode::Char('O') => Action::Open,
        KeyCode::Char('p') => Action::Pay,
        KeyCode::Char('c') => Action::Cancel,
        KeyCode::Char('y') => Action::Yes,
        KeyCode::Char('n') => Action::No,
        KeyCode::Esc => Action::Back,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> Option<Action> {
        action(Event::Key(KeyEvent::new(code, modifiers)))
    }

    #[test]
    fn arrows_and_vim_keys_move_and_ctrl_c_quits() {
        assert_eq!(
            press(KeyCode::Char('j'), KeyModifiers::NONE),
            Some(Action::Down)
        );
        assert_eq!(press(KeyCode::Up, KeyModifiers::NONE), Some(Action::Up));
        assert_eq!(
            press(KeyCode::Char('c'), KeyModifiers::CONTROL),
            Some(Action::Quit)
        );
        assert_eq!(
            press(KeyCode::Char('c'), KeyModifiers::NONE),
            Some(Action::Cancel)
        );
        assert_eq!(
            press(KeyCode::Char('O'), KeyModifiers::SHIFT),
            Some(Action::Open)
        );
        assert_eq!(press(KeyCode::Char('z'), KeyModifiers::NONE), None);
    }
}
