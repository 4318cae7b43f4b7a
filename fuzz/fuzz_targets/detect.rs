//! Fuzzes the byte entry point of the detectors and the redaction that follows: no input may
//! panic, and every span must be a well-formed, sorted, disjoint range of the decoded text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phi::{Detector, Mode, redact};

fuzz_target!(|data: &[u8]| {
    let (text, spans) = Detector::global().detect_bytes(data);
    let mut last_end = 0;
    for s in &spans {
        assert!(s.start < s.end && s.end <= text.len());
        assert!(s.start >= last_end);
        assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
        last_end = s.end;
    }
    let _ = redact(&text, &spans, Mode::Tag);
    let _ = redact(&text, &spans, Mode::Mask);
});
