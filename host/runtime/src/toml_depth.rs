//! Bounding how deep a TOML text nests before it is parsed: the `toml`
//! crate's parser and its `Value` recurse once per level, so a tenant's
//! text (a job manifest, a Serve deployment's `user_config`) nested a few
//! hundred thousand levels deep would overflow the stack of the process
//! reading it (the head, a node). Every tenant-written TOML goes through
//! [`nesting_within`] first.
//!
//! ```
//! use fabric_runtime::toml_depth::{MAX_NESTING, nesting_within};
//! assert!(nesting_within("a = [[1], {b = 2}]", MAX_NESTING).is_ok());
//! assert!(nesting_within(&format!("a = {}", "[".repeat(65)), MAX_NESTING).is_err());
//! assert!(nesting_within(&format!("a = '{}'", "[".repeat(65)), MAX_NESTING).is_ok());
//! ```

/// Arrays and inline tables nested deeper than this are refused before
/// the TOML parser sees them.
pub const MAX_NESTING: usize = 64;

/// TOML nested deeper than allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("arrays and tables nest more than {0} deep")]
pub struct TooDeep(pub usize);

/// Checks that `text`'s arrays and inline tables nest at most `max` deep,
/// reading it as TOML's lexer does: brackets inside strings (basic,
/// literal, and their multi-line forms) and comments do not count.
pub fn nesting_within(text: &str, max: usize) -> Result<(), TooDeep> {
    let b = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            q @ (b'"' | b'\'') => {
                i = string_end(b, i, q);
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(TooDeep(max));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Where the string opening with quote `q` at `start` ends (just past it,
/// or the end of its line or text when it never closes).
fn string_end(b: &[u8], start: usize, q: u8) -> usize {
    let escapes = q == b'"';
    if b[start..].starts_with(&[q, q, q]) {
        let mut i = start + 3;
        while i < b.len() {
            if escapes && b[i] == b'\\' {
                i += 2;
            } else if b[i..].starts_with(&[q, q, q]) {
                i += 3;
                // Up to two more quotes belong to the string.
                while i < b.len() && b[i] == q {
                    i += 1;
                }
                return i;
            } else {
                i += 1;
            }
        }
        return b.len();
    }
    let mut i = start + 1;
    while i < b.len() && b[i] != b'\n' {
        if b[i] == q {
            return i + 1;
        }
        i += if escapes && b[i] == b'\\' { 2 } else { 1 };
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_in_strings_and_comments_are_text() {
        let deep = "[".repeat(100);
        for text in [
            format!("a = 1 # {deep}"),
            format!("a = \"{deep}\""),
            format!("a = \"\\\"{deep}\""),
            format!("a = '{deep}'"),
            format!("a = \"\"\"\n{deep}\n\"\"\"\"\""),
            format!("a = '''{deep}'''"),
        ] {
            assert_eq!(nesting_within(&text, MAX_NESTING), Ok(()), "{text}");
        }
        // A string closed, brackets follow: counted.
        let after = format!("a = \"x\" \nb = {deep}");
        assert_eq!(nesting_within(&after, MAX_NESTING), Err(TooDeep(64)));
        // A closing bracket in a string opens no room.
        let hidden = format!("a = [\"]]]]\", {}]", "[".repeat(64));
        assert_eq!(nesting_within(&hidden, MAX_NESTING), Err(TooDeep(64)));
    }
}
