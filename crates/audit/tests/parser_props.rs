//! Property tests: the canonical encoding ignores field order and whitespace, and the
//! checkpoint, export, entry and key parsers reject arbitrary or mutated input without panicking.

mod common;

use std::io::Cursor;

use audit::canonical::to_canonical_bytes;
use audit::*;
use proptest::prelude::*;
use serde_json::{Map, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        "[\\x00-\\x1f\"\\\\é😀]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-zA-Z_😀é]{0,6}", inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// Same value, object members inserted in reverse order (serde_json keeps insertion order).
fn reversed(value: &Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(reversed).collect()),
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map.iter().rev() {
                out.insert(k.clone(), reversed(v));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn signed_note() -> (String, NoteVerifier) {
    let dir = tempfile::tempdir().unwrap();
    let keys = FileKeys::open_or_create(dir.path(), "phigate-audit", common::kek()).unwrap();
    let cp = Checkpoint {
        origin: "phigate-audit/p".into(),
        size: 42,
        root: [9; 32],
        timestamp: chrono::Utc::now(),
    };
    (cp.sign(&keys).unwrap(), keys.note_verifier())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn leaf_bytes_do_not_depend_on_member_order_or_whitespace(value in json_value()) {
        let canonical = to_canonical_bytes(&value).unwrap();
        prop_assert_eq!(&to_canonical_bytes(&reversed(&value)).unwrap(), &canonical);
        let pretty: Value = serde_json::from_str(&serde_json::to_string_pretty(&value).unwrap()).unwrap();
        prop_assert_eq!(&to_canonical_bytes(&pretty).unwrap(), &canonical);
        // Canonical output is valid JSON for the same value, and canonicalization is idempotent.
        let reparsed: Value = serde_json::from_slice(&canonical).unwrap();
        prop_assert_eq!(&reparsed, &value);
        prop_assert_eq!(to_canonical_bytes(&reparsed).unwrap(), canonical.clone());
        prop_assert_eq!(merkle::leaf_hash(&to_canonical_bytes(&reversed(&value)).unwrap()), merkle::leaf_hash(&canonical));
    }

    #[test]
    fn checkpoint_parser_rejects_arbitrary_text_without_panicking(text in "\\PC{0,300}") {
        let (_, verifier) = signed_note();
        prop_assert!(Checkpoint::parse_and_verify(&text, &verifier).is_err());
    }

    #[test]
    fn mutated_checkpoints_never_verify(pos in 0usize..400, byte in any::<u8>()) {
        let (note, verifier) = signed_note();
        let mut bytes = note.clone().into_bytes();
        let pos = pos % bytes.len();
        prop_assume!(bytes[pos] != byte);
        bytes[pos] = byte;
        if let Ok(mutated) = String::from_utf8(bytes) {
            // Only a change inside the (unsigned) signature block's base64 padding could survive;
            // a valid result must then be the original checkpoint.
            if let Ok(cp) = Checkpoint::parse_and_verify(&mutated, &verifier) {
                prop_assert_eq!(cp, Checkpoint::parse_and_verify(&note, &verifier).unwrap());
            }
        }
    }

    #[test]
    fn export_verifier_rejects_arbitrary_bytes_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let (_, verifier) = signed_note();
        prop_assert!(verify_export(&mut Cursor::new(bytes), &verifier).is_err());
    }

    #[test]
    fn export_verifier_rejects_structured_garbage(note in "\\PC{0,40}", index in any::<u64>(), proof in prop::collection::vec("[A-Za-z0-9+/=]{0,50}", 0..5)) {
        let (_, verifier) = signed_note();
        let text = format!(
            "{}\n{}\n",
            serde_json::json!({"type": "checkpoint", "note": note}),
            serde_json::json!({"type": "entry", "index": index, "entry": {"index": index}, "proof": proof})
        );
        prop_assert!(verify_export(&mut Cursor::new(text.into_bytes()), &verifier).is_err());
    }

    #[test]
    fn entry_and_key_parsers_reject_arbitrary_input_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..300), text in "\\PC{0,120}") {
        prop_assert!(Entry::from_json_bytes(&bytes).is_err() || serde_json::from_slice::<Value>(&bytes).is_ok());
        let _ = NoteVerifier::parse(&text);
        let _ = KeyedHash::try_from(text.clone());
        let _ = merkle::CompactRange::from_bytes(&bytes);
    }
}
