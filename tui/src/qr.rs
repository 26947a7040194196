//! QR codes as text: two modules per character cell with the half blocks
//! `▀ ▄ █`, drawn dark on light so that phones can scan them.

use qrcode::{Color, EcLevel, QrCode};

/// Modules of light margin around the code (scanners need some).
const QUIET: usize = 2;

/// The QR code of `text`, one string per terminal row; each character is
/// one module wide and two modules high. `None` if `text` is too long.
pub fn lines(text: &str) -> Option<Vec<String>> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    let size = width + 2 * QUIET;
    let dark = |x: usize, y: usize| -> bool {
        let (Some(x), Some(y)) = (x.checked_sub(QUIET), y.checked_sub(QUIET)) else {
            return false;
        };
        x < width && y < width && colors[y * width + x] == Color::Dark
    };
    Some(
        (0..size)
            .step_by(2)
            .map(|y| {
                (0..size)
                    .map(|x| match (dark(x, y), dark(x, y + 1)) {
                        (true, true) => '█',
                        (true, false) => '▀',
                        (false, true) => '▄',
                        (false, false) => ' ',
                    })
                    .collect()
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkout_url_fits_an_80_by_24_terminal_with_a_quiet_zone() {
        let url = "http://127.0.0.1:8080/checkout/cs_local_0123456789abcdef01234567";
        let lines = lines(url).expect("encodes");
        let columns = lines[0].chars().count();
        assert!(
            columns <= 41 && lines.len() <= 21,
            "{columns} × {}",
            lines.len()
        );
        assert!(
            lines.iter().all(|line| line.chars().count() == columns),
            "square"
        );
        // The quiet zone is blank; the top-left finder pattern starts after it.
        assert!(lines[0].chars().all(|c| c == ' '));
        let finder: String = lines[1].chars().skip(QUIET).take(7).collect();
        assert_eq!(finder, "█▀▀▀▀▀█", "the finder pattern's top edge");
    }

    #[test]
    fn different_urls_give_different_codes() {
        assert_ne!(lines("http://a/checkout/1"), lines("http://a/checkout/2"));
    }
}
