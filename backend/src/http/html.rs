//! Small helpers for the few HTML pages the backend serves (checkout,
//! payment return): escaping and one shared page frame.

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
pub fn page(title: &str, body: &str) -> String {
    format!(
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
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<b>"Tom" & 'Jerry'</b>"#),
            "&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;"
        );
    }
}
