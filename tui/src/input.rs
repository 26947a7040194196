//! Input bytes from a terminal that is not ours (an SSH client's) turned
//! into the events the shop reads: keys, clicks, pasted text. The parsing
//! itself is the `terminput` crate's (xterm's, fixterms' and kitty's
//! encodings); this only splits a stream of bytes into the sequences it
//! parses, and gathers a bracketed paste, however long, into one event.

use crossterm::event::Event;

/// Longest escape sequence kept while waiting for its end; a longer one is
/// garbage and dropped, so a client cannot make it grow.
const LONGEST: usize = 64;

/// How a bracketed paste (xterm's mode 2004, which the shop turns on)
/// begins and ends.
const PASTE_START: &[u8] = b"\x1b[200~";
const PASTE_END: &[u8] = b"\x1b[201~";

/// Most bytes of one paste kept; the rest of a longer one is dropped while
/// its end is awaited.
const LONGEST_PASTE: usize = 4096;

/// Turns the bytes a terminal sends into events, keeping a sequence split
/// across two reads until its end arrives.
#[derive(Debug, Default)]
pub struct Decoder {
    pending: Vec<u8>,
    /// The text of a paste whose end has not come yet.
    paste: Option<Vec<u8>>,
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
            if let Some(paste) = self.paste.as_mut() {
                paste.push(byte);
                if paste.ends_with(PASTE_END) {
                    paste.truncate(paste.len() - PASTE_END.len());
                    events.push(Event::Paste(String::from_utf8_lossy(paste).into_owned()));
                    self.paste = None;
                } else if paste.len() >= LONGEST_PASTE + PASTE_END.len() {
                    // Keep the first bytes, and the last few to see the end.
                    paste.remove(LONGEST_PASTE);
                }
                continue;
            }
            self.pending.push(byte);
            if self.pending == PASTE_START {
                self.pending.clear();
                self.paste = Some(Vec::new());
                continue;
            }
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
    fn a_bracketed_paste_is_text_not_keys_and_a_long_one_is_cut() {
        let mut decoder = Decoder::new();
        // Split across reads, as a big paste arrives.
        assert!(decoder.feed(b"\x1b[200~Hi, you pay o").is_empty());
        assert_eq!(
            decoder.feed(b"nly once.\x1b[201~q"),
            vec![
                Event::Paste("Hi, you pay only once.".into()),
                Event::Key(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE)),
            ]
        );
        let mut long = b"\x1b[200~".to_vec();
        long.extend(std::iter::repeat_n(b'y', 100_000));
        long.extend(b"\x1b[201~");
        let events = decoder.feed(&long);
        assert_eq!(events.len(), 1, "one paste, no keys");
        let Event::Paste(text) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(text.len(), super::LONGEST_PASTE);
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
