//! RFC 8785 JSON Canonicalization Scheme (JCS), restricted to integers.
//!
//! The bytes that go into a leaf hash are the JCS form of the entry: object members sorted by
//! the UTF-16 code units of their names, no insignificant whitespace, strings escaped exactly
//! as ECMAScript `JSON.stringify` does (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control
//! characters as `\u00xx` with lower-case hex, everything else literal UTF-8).
//!
//! Numbers: the audit schema uses integers only (latencies in milliseconds, costs in
//! micro-dollars, times as strings). JCS serializes numbers with the ECMAScript
//! double-to-string algorithm; restricting to integers of magnitude `< 2^53` makes that the
//! plain decimal form and removes the one part of JCS where implementations disagree. A
//! fraction or a larger integer is refused with [`CanonicalError::UnsupportedNumber`].
//!
//! Example: `{"b": [1, "x\n"], "a": {"d": true, "c": null}}` canonicalizes to
//! `{"a":{"c":null,"d":true},"b":[1,"x\n"]}` (the newline written as the two characters `\n`).

use serde_json::Value;

/// Integers outside `±(2^53 - 1)` are not exactly representable in the JCS number model.
pub(crate) const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A value that has no canonical form in this profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// A fractional number or an integer beyond ±(2^53 − 1).
    #[error("numbers in audit entries must be integers within ±(2^53 - 1)")]
    UnsupportedNumber,
}

/// Canonical bytes of a JSON value.
pub fn to_canonical_bytes(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out)?;
    Ok(out)
}

pub(crate) fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                if u > MAX_SAFE_INTEGER {
                    return Err(CanonicalError::UnsupportedNumber);
                }
                out.extend_from_slice(u.to_string().as_bytes());
            } else if let Some(i) = n.as_i64() {
                if i.unsigned_abs() > MAX_SAFE_INTEGER {
                    return Err(CanonicalError::UnsupportedNumber);
                }
                out.extend_from_slice(i.to_string().as_bytes());
            } else {
                return Err(CanonicalError::UnsupportedNumber);
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (key, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    // Copy runs of bytes that need no escape in one go; only ASCII bytes are ever escaped, so
    // splitting at them never splits a UTF-8 sequence.
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_are_sorted_and_whitespace_removed() {
        let v: Value =
            serde_json::from_str("{ \"b\" : [1, \"x\\n\"],\n \"a\": {\"d\": true, \"c\": null}}")
                .unwrap();
        assert_eq!(
            String::from_utf8(to_canonical_bytes(&v).unwrap()).unwrap(),
            r#"{"a":{"c":null,"d":true},"b":[1,"x\n"]}"#
        );
    }

    #[test]
    fn keys_sort_by_utf16_code_units_as_rfc8785_requires() {
        // U+1F600 is a surrogate pair starting 0xD83D, which sorts below U+FFFF in UTF-16
        // (RFC 8785 §3.2.3) although it sorts above it in UTF-8 byte order.
        let v = json!({"\u{ffff}": 1, "\u{1F600}": 2});
        assert_eq!(
            String::from_utf8(to_canonical_bytes(&v).unwrap()).unwrap(),
            "{\"\u{1F600}\":2,\"\u{ffff}\":1}"
        );
    }

    #[test]
    fn control_characters_use_lowercase_unicode_escapes() {
        let v = json!("a\u{1f}b\u{7f}é\"\\");
        assert_eq!(
            String::from_utf8(to_canonical_bytes(&v).unwrap()).unwrap(),
            "\"a\\u001fb\u{7f}é\\\"\\\\\""
        );
    }

    #[test]
    fn fractions_and_unsafe_integers_are_refused() {
        assert_eq!(
            to_canonical_bytes(&json!(1.5)),
            Err(CanonicalError::UnsupportedNumber)
        );
        assert_eq!(
            to_canonical_bytes(&json!(1u64 << 53)),
            Err(CanonicalError::UnsupportedNumber)
        );
        assert_eq!(
            to_canonical_bytes(&json!(-(1i64 << 53))),
            Err(CanonicalError::UnsupportedNumber)
        );
        assert_eq!(to_canonical_bytes(&json!(-42)).unwrap(), b"-42");
    }

    /// The escaping rules of RFC 8785 (ECMAScript `JSON.stringify`), one character at a time.
    fn reference_string(s: &str) -> Vec<u8> {
        let mut out = vec![b'"'];
        for ch in s.chars() {
            match ch {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\u{08}' => out.extend_from_slice(b"\\b"),
                '\u{0c}' => out.extend_from_slice(b"\\f"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 => {
                    out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
                }
                c => out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes()),
            }
        }
        out.push(b'"');
        out
    }

    proptest::proptest! {
        #[test]
        fn string_escaping_equals_the_per_character_rules(
            chars in proptest::collection::vec(proptest::char::any(), 0..40)
        ) {
            let s: String = chars.into_iter().collect();
            let mut out = Vec::new();
            write_string(&s, &mut out);
            proptest::prop_assert_eq!(out, reference_string(&s));
        }
    }
}
