//! How text from the user is shown in places and messages: quoted when it would make a place
//! ambiguous, and shortened when long, so that one error is one readable line whatever the
//! size of the input (`found "xxxx…" (10485760 characters)`).

/// The most characters of a user value shown in a message.
const MAX_SHOWN: usize = 100;

/// `text` as a JSON string (`"a b"`); a long one is cut, with its length in characters:
/// `"xxxx…" (10485760 characters)`.
pub(crate) fn quote(text: &str) -> String {
    match long(text) {
        None => json(text),
        Some((head, count)) => format!("{}…\" ({count} characters)", json(head).trim_end_matches('"')),
    }
}

/// A map key as a segment of a place: as is when plain (`thumbnails`, `size`), else quoted
/// (`""`, `"a.b"`, `"my stage"`), so that `stages.a.b` can only mean two nested keys.
pub(crate) fn key(text: &str) -> String {
    if is_plain(text) { text.to_string() } else { quote(text) }
}

/// A name in a message: `` `thumbnails` `` when plain, else quoted like [`quote`].
pub(crate) fn named(text: &str) -> String {
    if is_plain(text) { format!("`{text}`") } else { quote(text) }
}

/// Text the user typed whole (a command-line argument): as is, unless it is long.
pub(crate) fn as_typed(text: &str) -> String {
    if long(text).is_some() { quote(text) } else { text.to_string() }
}

/// Cuts a message that may hold user text (a YAML library's message) to a readable length.
pub(crate) fn clip(message: &str) -> String {
    const MAX_MESSAGE: usize = 1000;
    match message.char_indices().nth(MAX_MESSAGE) {
        None => message.to_string(),
        Some((end, _)) => format!("{}… ({} characters)", &message[..end], message.chars().count()),
    }
}

/// Whether `text` can stand unquoted in a place: not empty, not long, and free of characters
/// that separate or mark places (`.`, `[`, `]`, `:`), quotes, spaces and control characters.
fn is_plain(text: &str) -> bool {
    !text.is_empty()
        && long(text).is_none()
        && !text.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '.' | '[' | ']' | ':' | '"' | '\'' | '`' | '\\')
        })
}

/// The first [`MAX_SHOWN`] characters and the character count, when `text` is longer.
fn long(text: &str) -> Option<(&str, usize)> {
    let (end, _) = text.char_indices().nth(MAX_SHOWN)?;
    Some((&text[..end], text.chars().count()))
}

fn json(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(quote("Bad"), "\"Bad\"");
        assert_eq!(quote("a\"b\n"), r#""a\"b\n""#);
        assert_eq!(quote(""), "\"\"");
    }

    #[test]
    fn long_values_are_cut_with_their_length() {
        let huge = "x".repeat(10 * 1024 * 1024);
        let shown = quote(&huge);
        assert_eq!(shown, format!("\"{}…\" (10485760 characters)", "x".repeat(MAX_SHOWN)));
        assert_eq!(key(&huge), shown);
        assert_eq!(as_typed(&huge), shown);
        let multibyte = "é".repeat(MAX_SHOWN + 1);
        assert!(quote(&multibyte).ends_with("…\" (101 characters)"));
        assert_eq!(quote(&"x".repeat(MAX_SHOWN)), json(&"x".repeat(MAX_SHOWN)));
    }

    #[test]
    fn keys_are_quoted_when_they_would_make_a_place_ambiguous() {
        for plain in ["a", "thumbnails", "size", "s00001", "Bad", "é", "a-b_c"] {
            assert_eq!(key(plain), plain);
            assert_eq!(named(plain), format!("`{plain}`"));
        }
        for odd in ["", "a.b", " ", "a b", "a\"b", "a[0]", "a:", "\u{0}", "tab\t"] {
            assert_eq!(key(odd), json(odd), "{odd:?}");
            assert_eq!(named(odd), json(odd), "{odd:?}");
        }
    }

    #[test]
    fn long_messages_are_clipped() {
        assert_eq!(clip("short"), "short");
        let long = "y".repeat(5000);
        let clipped = clip(&long);
        assert!(clipped.chars().count() < 1100);
        assert!(clipped.ends_with("… (5000 characters)"));
    }
}
