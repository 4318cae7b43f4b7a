//! Inclusion and consistency verification with arbitrary sizes and proof hashes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let a = u64::from_le_bytes(data[..8].try_into().unwrap());
    let b = u64::from_le_bytes(data[8..16].try_into().unwrap());
    let hashes: Vec<[u8; 32]> =
        data[16..].chunks_exact(32).map(|c| c.try_into().unwrap()).collect();
    let (first, rest) = hashes.split_first().map_or(([0u8; 32], &[][..]), |(f, r)| (*f, r));
    let _ = audit::merkle::verify_inclusion(&first, a, b, rest, &first);
    let _ = audit::merkle::verify_consistency(a, b, &first, &first, rest);
    let _ = audit::merkle::CompactRange::from_bytes(data);
});
