//! Checkpoint notes and verifier keys from arbitrary text: must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let verifier = audit::NoteVerifier::new("phigate-audit", [7u8; 32]).expect("valid name");
        let _ = audit::Checkpoint::parse_and_verify(text, &verifier);
        let _ = audit::NoteVerifier::parse(text);
    }
});
