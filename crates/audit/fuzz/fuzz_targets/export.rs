//! Export files from arbitrary bytes: must be rejected without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let verifier = audit::NoteVerifier::new("phigate-audit", [7u8; 32]).expect("valid name");
    let _ = audit::verify_export(&mut std::io::Cursor::new(data), &verifier);
    let _ = audit::Entry::from_json_bytes(data);
});
