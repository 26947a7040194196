//! Small helpers for the few HTML pages the backend serves (checkout,
//! payment return, index): escaping and one shared page frame, sent with
//! the same security headers everywhere.

use axum::http::HeaderValue;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

/// A whole HTML page. As a response it carries the headers every page of
/// the shop needs: it may not be framed by another site (clickjacking:
/// `X-Frame-Options: DENY` and CSP `frame-ancestors 'none'`, per the OWASP
/// clickjacking cheat sheet), kept by caches (`Cache-Control: no-store`:
/// pages show orders and payments), or leak its URL, which holds a
/// checkout session id, to other sites (`Referrer-Policy: no-referrer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page(pub String);

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut response = Html(self.0).into_response();
        let headers = response.headers_mut();
        for (name, value) in [
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        response
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// A whole page around `body` (already HTML). `title` is plain text.
pub fn page(title: &str, body: &str) -> Page {
    Page(format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
  body {{ font-family: system-ui, sans-serif; max-width: 34rem; margin: 2rem auto; padding: 0 1rem; color: #1a1a1a; }}
  h1 {{ font-size: 1.4rem; }}
  table {{ width: 100%; border-collapse: collapse; margin: 1rem 0; }}
  td, th {{ padding: .3rem 0; text-align: left; }}
  td.amount, th.amount {{ text-align: right; }}
  tr.total td {{ border-top: 1px solid #999; font-weight: bold; }}
  label {{ display: block; margin-top: .8rem; font-size: .9rem; }}
  input {{ width: 100%; padding: .5rem; font-size: 1rem; box-sizing: border-box; }}
  button {{ margin-top: 1.2rem; width: 100%; padding: .7rem; font-size: 1rem; background: #635bff; color: white; border: 0; border-radius: 4px; }}
  .error {{ background: #fde8e8; color: #9b1c1c; padding: .6rem; border-radius: 4px; }}
  .note {{ color: #555; font-size: .85rem; }}
  .status {{ font-size: 1.6rem; font-weight: bold; }}
</style>
</head>
<body>
{body}
</body>
</html>
"#,
        title = escape(title),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_forbids_framing_caching_and_referrers() {
        let response = page("t", "<p>x</p>").into_response();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
        };
        assert_eq!(header(header::X_FRAME_OPTIONS), Some("DENY"));
        assert_eq!(
            header(header::CONTENT_SECURITY_POLICY),
            Some("frame-ancestors 'none'")
        );
        assert_eq!(header(header::CACHE_CONTROL), Some("no-store"));
        assert_eq!(header(header::REFERRER_POLICY), Some("no-referrer"));
        assert!(header(header::CONTENT_TYPE).is_some_and(|value| value.starts_with("text/html")));
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<b>"Tom" & 'Jerry'</b>"#),
            "&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;"
        );
    }
}
