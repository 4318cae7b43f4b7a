//! Property tests: any input, including adversarial repetition of pattern fragments, yields
//! well-formed spans without panicking, and scrubbing removes what was detected.

use phi::{Detector, Mode, redact};
use proptest::prelude::*;

/// Fragments that drive the patterns into their longest partial matches.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1".to_string()),
        Just("-".to_string()),
        Just("/".to_string()),
        Just(".".to_string()),
        Just(":".to_string()),
        Just("@".to_string()),
        Just(" ".to_string()),
        Just("Mr. ".to_string()),
        Just("Patient: ".to_string()),
        Just("MRN: ".to_string()),
        Just("May ".to_string()),
        Just("Smith ".to_string()),
        Just("http://".to_string()),
        Just("a".to_string()),
        Just("A".to_string()),
        Just("é".to_string()),
        Just("\u{1F600}".to_string()),
        "[0-9]{1,12}",
        "[A-Za-z]{1,8}",
        ".{0,4}",
    ]
}

fn adversarial() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..200).prop_map(|v| v.concat())
}

fn check_spans(text: &str) {
    let spans = Detector::global().detect_all(text);
    let mut last_end = 0;
    for s in &spans {
        assert!(s.start < s.end && s.end <= text.len());
        assert!(s.start >= last_end, "spans overlap or are unsorted");
        assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
        assert!((0.0..=1.0).contains(&s.confidence));
        last_end = s.end;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_yields_sorted_disjoint_spans_on_char_boundaries(text in any::<String>()) {
        check_spans(&text);
    }

    #[test]
    fn adversarial_fragments_yield_well_formed_spans(text in adversarial()) {
        check_spans(&text);
    }

    #[test]
    fn arbitrary_bytes_are_accepted(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let (text, spans) = Detector::global().detect_bytes(&bytes);
        for s in &spans {
            prop_assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
        }
    }

    #[test]
    fn a_planted_ssn_never_survives_scrubbing(prefix in "[a-z ]{0,40}", suffix in "[a-z ]{0,40}",
                                               area in 1u32..666, group in 1u32..100, serial in 1u32..10000) {
        let ssn = format!("{area:03}-{group:02}-{serial:04}");
        let text = format!("{prefix} {ssn} {suffix}");
        let spans = Detector::global().detect(&text);
        for mode in [Mode::Mask, Mode::Tag] {
            prop_assert!(!redact(&text, &spans, mode).contains(&ssn));
        }
    }
}

#[test]
fn a_megabyte_of_pathological_input_is_handled() {
    // Long runs that keep several patterns in a partial match at once. Completion is the
    // assertion; the criterion bench measures the time.
    for unit in ["1-", "a@", "Mr. A ", "1.1.", "9", "MRN: ", "http://x", "A "] {
        let text = unit.repeat((1 << 20) / unit.len());
        check_spans(&text);
    }
}
