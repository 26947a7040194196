//! Input bytes from a terminal that is not ours (an SSH client's) turned
//! into the events the shop reads: keys, clicks. The parsing itself is the
//! `terminput` crate's (xterm's, fixterms' and kitty's encodings); this
//! only splits a stream of bytes into the sequences it parses.

use crossterm::event::Event;

/// Longest escape sequence kept while waiting for its end; a longer one is
/// garbage and dropped, so a client cannot make it grow.
const LONGEST: usize = 64;

/// Turns the bytes a terminal sends into events, keeping a sequence split
/// across two reads until its end arrives.
#[derive(Debug, Default)]
pub struct Decoder {
    pending: Vec<u8>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// The events in `bytes`, one read's worth of input.
    ///
    /// A lone Esc at the end of a read is the Esc key (a terminal sends an
    /// escape sequence in one write, as crossterm assumes for the local
    /// terminal too); bytes that mean nothing are dropped.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for (index, &byte) in bytes.iter().enumerate() {
            self.pending.push(byte);
            let more = index + 1 < bytes.len();
            if self.pending == [0x1b] && more {
                continue;
            }
            match terminput::Event::parse_from(&self.pending) {
                Ok(Some(event)) => {
                    self.pending.clear();
                    if let Ok(event) = terminput_crossterm::to_crossterm(event) {
                        events.push(event);
                    }
                }
                Ok(None) if self.pending.len() < LONGEST => {}
                Ok(None) | Err(_) => self.pending.clear(),
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use crossterm::event::{
        Event, KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
    };

    use super::Decoder;

    fn keys(events: Vec<Event>) -> Vec<(KeyCode, KeyModifiers)> {
        events
            .into_iter()
            .filter_map(|event| match event {
                Event::Key(KeyEvent {
                    code, modifiers, ..
                }) => Some((code, modifiers)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn letters_control_keys_and_arrows_become_the_keys_typed() {
        let mut decoder = Decoder::new();
        let none = KeyModifiers::NONE;
        assert_eq!(
            keys(decoder.feed(b"aq\r\t\x7f\x1b[A\x1b[B\x1bOC")),
            vec![
                (KeyCode::Char('a'), none),
                (KeyCode::Char('q'), none),
                (KeyCode::Enter, none),
                (KeyCode::Tab, none),
                (KeyCode::Backspace, none),
                (KeyCode::Up, none),
                (KeyCode::Down, none),
                (KeyCode::Right, none),
            ]
        );
        assert_eq!(
            keys(decoder.feed(b"\x03")),
            vec![(KeyCode::Char('c'), KeyModifiers::CONTROL)]
        );
        assert_eq!(
            keys(decoder.feed(b"\x1b[Z")),
            vec![(KeyCode::BackTab, KeyModifiers::SHIFT)]
        );
    }

    #[test]
    fn a_lone_escape_is_the_esc_key_and_a_split_sequence_waits_for_its_end() {
        let mut decoder = Decoder::new();
        assert_eq!(
            keys(decoder.feed(b"\x1b")),
            vec![(KeyCode::Esc, KeyModifiers::NONE)]
        );
        assert!(decoder.feed(b"\x1b[").is_empty());
        assert_eq!(
            keys(decoder.feed(b"A")),
            vec![(KeyCode::Up, KeyModifiers::NONE)]
        );
        assert_eq!(
            keys(decoder.feed("é".as_bytes())),
            vec![(KeyCode::Char('é'), KeyModifiers::NONE)]
        );
    }

    #[test]
    fn a_click_is_reported_where_it_happened() {
        let mut decoder = Decoder::new();
        let events = decoder.feed(b"\x1b[<0;10;5M");
        assert_eq!(
            events,
            vec![Event::Mouse(MouseEvent {
                kind: MouseEventKind::Down(MouseButton::Left),
                column: 9,
                row: 4,
                modifiers: KeyModifiers::NONE,
            })]
        );
    }

    #[test]
    fn garbage_is_dropped_and_cannot_grow_without_end() {
        let mut decoder = Decoder::new();
        let mut junk = b"\x1b[".to_vec();
        junk.extend(std::iter::repeat_n(b'1', 10_000));
        decoder.feed(&junk);
        assert!(decoder.pending.len() < super::LONGEST);
        assert_eq!(
            keys(decoder.feed(b"q")),
            vec![(KeyCode::Char('q'), KeyModifiers::NONE)]
        );
    }
}
