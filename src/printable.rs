//! Text made safe for a terminal.
//!
//! File names, comments and paths come from containers and users; printed
//! raw, an escape sequence in one could retitle a terminal, hide lines or
//! forge output. Everything lxc-snap prints for a person goes through
//! [`escape`]: control characters (C0, DEL, C1) and the invisible ones that
//! reorder or hide text (bidirectional controls, zero-width characters,
//! line and paragraph separators, BOM) become `\n`, `\t`, `\r` or `\xNN`
//! for each of their bytes, as do bytes that are not UTF-8.

use std::fmt::Write as _;

/// `text` safe to print on one line.
pub fn escape(text: &str) -> String {
    escape_bytes(text.as_bytes(), false)
}

/// `bytes` safe to print on one line; with `backslash`, a backslash is
/// doubled as well, so that the result can be read back exactly.
pub fn escape_bytes(bytes: &[u8], backslash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    let hex = |out: &mut String, b: u8| {
        let _ = write!(out, "\\x{b:02x}");
    };
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' if backslash => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() || is_invisible(c) => {
                    for b in c.encode_utf8(&mut [0; 4]).bytes() {
                        hex(&mut out, b);
                    }
                }
                c => out.push(c),
            }
        }
        for &b in chunk.invalid() {
            hex(&mut out, b);
        }
    }
    out
}

fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// `1536` -> `1.5 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_invisible_characters_are_escaped() {
        assert_eq!(escape("plain /etc/motd"), "plain /etc/motd");
        assert_eq!(escape("a\u{1b}]0;x\u{7}b"), "a\\x1b]0;x\\x07b");
        assert_eq!(escape("l1\nl2\tx"), "l1\\nl2\\tx");
        assert_eq!(escape("rtl\u{202e}x"), "rtl\\xe2\\x80\\xaex");
        assert_eq!(escape("back\\slash"), "back\\slash");
        assert_eq!(escape_bytes(b"back\\slash\xff", true), "back\\\\slash\\xff");
    }
}
