//! What archctl prints from the checkpoint root is not trusted: a manifest
//! field or a directory name could carry terminal escape sequences (to hide
//! lines, fake output or retitle the terminal). Control characters and the
//! bidirectional overrides are shown escaped, never sent to the terminal.

/// `s` with control and bidi-override characters written as escapes
/// (`\n`, `\u{1b}`); everything else as it is.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_and_bidi_characters() {
        assert_eq!(printable("job-1 ok"), "job-1 ok");
        assert_eq!(printable("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(printable("x\ny\r\t"), "x\\ny\\r\\t");
        assert_eq!(printable("\u{202e}evil"), "\\u{202e}evil");
        assert_eq!(printable("ü"), "ü");
    }
}
