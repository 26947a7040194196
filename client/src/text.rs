//! Text from the shop, made safe and measured for a terminal.
//!
//! Product names, details and messages come from the server. Written raw,
//! an escape sequence in a name would recolour, move the cursor or retitle
//! the user's terminal, and a newline or a bidi override would break a
//! table. [`visible`] shows such characters instead of letting the terminal
//! act on them; [`width`] measures text as a terminal draws it (wide CJK
//! characters take two columns, combining marks none); [`elide`] shortens
//! names with `…`. Both clients (`shop` and `shop-tui`) go through here.

use std::borrow::Cow;

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// The ellipsis that ends an elided text.
pub const ELLIPSIS: char = '…';

/// `text` with every character a terminal would act on shown instead:
/// C0 controls and DEL as their Unicode control pictures (`ESC` as `␛`, a
/// newline as `␊`, a tab as `␉`), C1 controls and the invisible bidi
/// controls (which reorder what follows them) as `\u{…}` escapes.
/// Ordinary text comes back unchanged, without copying.
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\0'..='\x1f' => shown.push(char::from_u32(0x2400 + u32::from(c)).unwrap_or('?')),
            '\x7f' => shown.push('␡'),
            c if is_unsafe(c) => shown.push_str(&c.escape_unicode().to_string()),
            c => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

/// Characters a terminal interprets, that reorder the text around them,
/// that break lines (U+2028, U+2029) or that take no room at all
/// (zero-width space, byte-order mark). The zero-width joiner stays: emoji
/// sequences need it.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// Columns `text` takes on a terminal.
pub fn width(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

/// `text` cut to at most `columns` columns, ending in `…` when cut. A wide
/// character that would straddle the edge goes whole; combining marks stay
/// with their letter.
pub fn elide(text: &str, columns: usize) -> Cow<'_, str> {
    if width(text) <= columns {
        return Cow::Borrowed(text);
    }
    if columns == 0 {
        return Cow::Borrowed("");
    }
    let room = columns - 1;
    let mut kept = String::new();
    let mut used = 0;
    for c in text.chars() {
        let taken = c.width().unwrap_or(0);
        if used + taken > room {
            break;
        }
        used += taken;
        kept.push(c);
    }
    kept.push(ELLIPSIS);
    Cow::Owned(kept)
}

/// `text` followed by spaces up to `columns` columns (never cut).
pub fn pad_right(text: &str, columns: usize) -> String {
    format!("{text}{}", " ".repeat(columns.saturating_sub(width(text))))
}

/// Spaces and then `text`, up to `columns` columns (never cut).
pub fn pad_left(text: &str, columns: usize) -> String {
    format!("{}{text}", " ".repeat(columns.saturating_sub(width(text))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(
            visible("Mac\x1b[2J\x1b]0;pwned\x07Book\nPro\tX"),
            "Mac␛[2J␛]0;pwned␇Book␊Pro␉X"
        );
        assert_eq!(visible("a\u{9b}31mb\u{7f}"), "a\\u{9b}31mb␡");
        assert_eq!(
            visible("\u{202e}gnp.exe\u{2066}"),
            "\\u{202e}gnp.exe\\u{2066}"
        );
        assert_eq!(
            visible("zero\u{200b}width \u{feff}bom\u{2028}"),
            "zero\\u{200b}width \\u{feff}bom\\u{2028}"
        );
        assert!(matches!(
            visible("MacBook Pro 世界 é 👨\u{200d}👩"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn width_counts_terminal_columns() {
        assert_eq!(width("MacBook"), 7);
        assert_eq!(width("世界"), 4, "wide characters take two columns");
        assert_eq!(width("e\u{301}"), 1, "a combining accent takes none");
    }

    #[test]
    fn elided_text_fits_and_ends_with_an_ellipsis() {
        assert_eq!(elide("MacBook Pro", 11), "MacBook Pro");
        assert_eq!(elide("MacBook Pro", 10), "MacBook P…");
        assert_eq!(elide("世界世界", 6), "世界…");
        assert_eq!(
            elide("世界世界", 4),
            "世…",
            "a wide character never straddles"
        );
        assert_eq!(elide("e\u{301}e\u{301}e\u{301}", 2), "e\u{301}…");
        assert_eq!(elide("anything", 0), "");
        assert!(width(&elide("世界世界世界", 5)) <= 5);
    }

    #[test]
    fn padding_counts_columns_not_characters() {
        assert_eq!(pad_right("世界", 6), "世界  ");
        assert_eq!(pad_left("e\u{301}", 3), "  e\u{301}");
        assert_eq!(pad_right("too long", 3), "too long");
    }
}
