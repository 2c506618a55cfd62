//! Prompt templates and the cleaning of user text.
//!
//! A template is a prompt with `{name}` slots, e.g.
//! `"anime artwork illustrating {caption}, anime style, highly detailed"`. Slot values come
//! from request options, that is from users: [`sanitize`] removes control characters and caps
//! their length before they reach a prompt. Rendering is a single pass, so braces inside a
//! value are never expanded again.

/// The most characters a user-supplied text option keeps.
pub const MAX_TEXT_CHARS: usize = 200;

/// Cleans user text for a prompt: control characters (newlines, tabs, escapes, ...) become
/// spaces, runs of whitespace collapse to one space, the ends are trimmed, and the result is cut
/// to at most `max_chars` characters (never inside a character).
pub fn sanitize(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    let mut count = 0;
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_control() || c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        let needed = if pending_space { 2 } else { 1 };
        if count + needed > max_chars {
            break;
        }
        if pending_space {
            out.push(' ');
            count += 1;
            pending_space = false;
        }
        out.push(c);
        count += 1;
    }
    out
}

/// Fills the `{name}` slots of `template` with the matching `values`, each cleaned with
/// [`sanitize`] and [`MAX_TEXT_CHARS`]. A slot without a value, and a brace that opens no slot,
/// stay as written.
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let slot = after.find('}').map(|close| &after[..close]);
        match slot.and_then(|name| values.iter().find(|(k, _)| *k == name)) {
            Some((name, value)) => {
                out.push_str(&sanitize(value, MAX_TEXT_CHARS));
                rest = &after[name.len() + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_strips_controls_and_collapses_space() {
        assert_eq!(
            sanitize("  a\u{0}b\n\tc  \u{1b}[31m d ", 200),
            "a b c [31m d"
        );
        assert_eq!(sanitize("\n\n", 200), "");
    }

    #[test]
    fn sanitize_caps_length_in_characters() {
        let long = "é".repeat(500);
        let out = sanitize(&long, 200);
        assert_eq!(out.chars().count(), 200);
        assert_eq!(sanitize("ab cd", 3), "ab");
        assert_eq!(sanitize("ab cd", 4), "ab c");
    }

    #[test]
    fn render_fills_known_slots_once() {
        let out = render(
            "anime artwork illustrating {caption}, {unknown} style {",
            &[("caption", "a {caption}\nwith a hat")],
        );
        assert_eq!(
            out,
            "anime artwork illustrating a {caption} with a hat, {unknown} style {"
        );
    }

    #[test]
    fn render_caps_values() {
        let out = render("{caption}!", &[("caption", &"x".repeat(1000))]);
        assert_eq!(out.len(), MAX_TEXT_CHARS + 1);
    }
}
