//! Behaviour of sealed objects, key rings, rotation and key configuration (software provider).

use std::sync::Arc;

use proptest::prelude::*;
use sealed::{
    DataKey, Envelope, KeyProvider, KeyState, Keyring, ObjectContext, SealError,
    SoftwareKeyProvider, StreamReader, StreamWriter,
};
use secrecy::SecretString;

fn provider(seed: u8) -> Arc<dyn KeyProvider> {
    Arc::new(
        SoftwareKeyProvider::from_root(DataKey::from_slice(&[seed; 32]).unwrap(), "env").unwrap(),
    )
}

fn ring(seed: u8) -> Keyring {
    let ring = Keyring::new(provider(seed), Vec::new()).unwrap();
    ring.initialize().unwrap();
    ring
}

const CTX: ObjectContext<'static> = ObjectContext {
    kind: "patient",
    id: b"row-1",
};

#[test]
fn sealed_object_opens_to_the_original_plaintext() {
    let ring = ring(7);
    let sealed = ring.seal(&CTX, b"Jane Doe, DOB 1970-01-01").unwrap();
    assert_eq!(
        ring.open(&CTX, &sealed).unwrap().as_slice(),
        b"Jane Doe, DOB 1970-01-01"
    );
    assert!(
        !sealed.windows(8).any(|w| w == b"Jane Doe"),
        "plaintext must not appear in the sealed bytes"
    );
}

#[test]
fn header_records_key_id_and_version() {
    let ring = ring(7);
    let sealed = ring.seal(&CTX, b"x").unwrap();
    let env = Envelope::parse(&sealed).unwrap();
    assert_eq!(env.key_id, ring.key_id());
    assert_eq!(env.kek_version, 1);
    assert_eq!(&sealed[..5], b"PGSL\x01");
}

#[test]
fn flipping_any_byte_makes_open_fail() {
    let ring = ring(7);
    let sealed = ring.seal(&CTX, b"some clinical note").unwrap();
    for i in 0..sealed.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = sealed.clone();
            bad[i] ^= bit;
            assert!(
                ring.open(&CTX, &bad).is_err(),
                "flip of bit {bit:#x} at byte {i} was accepted"
            );
        }
    }
}

#[test]
fn truncated_or_extended_ciphertext_fails() {
    let ring = ring(7);
    let sealed = ring.seal(&CTX, b"payload").unwrap();
    for len in 0..sealed.len() {
        assert!(
            ring.open(&CTX, &sealed[..len]).is_err(),
            "truncation to {len} accepted"
        );
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(ring.open(&CTX, &longer).is_err());
}

#[test]
fn ciphertext_copied_to_another_row_or_kind_does_not_open() {
    let ring = ring(7);
    let sealed = ring.seal(&CTX, b"payload").unwrap();
    assert!(matches!(
        ring.open(&ObjectContext::new("patient", b"row-2"), &sealed),
        Err(SealError::AuthenticationFailed)
    ));
    assert!(matches!(
        ring.open(&ObjectContext::new("appointment", b"row-1"), &sealed),
        Err(SealError::AuthenticationFailed)
    ));
}

#[test]
fn wrapped_key_swapped_between_objects_does_not_open() {
    let ring = ring(7);
    let a = ring.seal(&CTX, b"aaaa").unwrap();
    let other = ObjectContext::new("patient", b"row-2");
    let b = ring.seal(&other, b"bbbb").unwrap();
    let ea = Envelope::parse(&a).unwrap();
    let eb = Envelope::parse(&b).unwrap();
    let spliced = Envelope {
        wrapped_key: eb.wrapped_key,
        ..ea
    }
    .to_bytes()
    .unwrap();
    assert!(ring.open(&CTX, &spliced).is_err());
}

#[test]
fn wrong_key_is_reported_as_such() {
    let sealed = ring(7).seal(&CTX, b"payload").unwrap();
    let other = ring(8);
    assert!(matches!(
        other.open(&CTX, &sealed),
        Err(SealError::WrongKey { .. })
    ));
}

#[test]
fn rotation_keeps_old_data_readable_and_seals_new_data_with_the_new_version() {
    let ring = ring(7);
    let old = ring.seal(&CTX, b"old").unwrap();
    let changed = ring.rotate().unwrap();
    assert_eq!(changed.len(), 2);
    assert_eq!(ring.active_version().unwrap(), 2);
    let new = ring.seal(&CTX, b"new").unwrap();
    assert_eq!(Envelope::parse(&new).unwrap().kek_version, 2);
    assert_eq!(ring.open(&CTX, &old).unwrap().as_slice(), b"old");
    assert_eq!(ring.open(&CTX, &new).unwrap().as_slice(), b"new");
}

#[test]
fn key_ring_state_survives_reload_from_records() {
    let ring = ring(7);
    ring.rotate().unwrap();
    let sealed = ring.seal(&CTX, b"persisted").unwrap();
    let reloaded = Keyring::new(provider(7), ring.records()).unwrap();
    assert_eq!(reloaded.active_version().unwrap(), 2);
    assert_eq!(
        reloaded.open(&CTX, &sealed).unwrap().as_slice(),
        b"persisted"
    );
}

#[test]
fn rewrap_changes_only_the_envelope_and_still_opens() {
    let ring = ring(7);
    let sealed = ring.seal(&CTX, b"payload").unwrap();
    assert!(
        ring.rewrap(&CTX, &sealed).unwrap().is_none(),
        "already on the active version"
    );
    ring.rotate().unwrap();
    let rewrapped = ring.rewrap(&CTX, &sealed).unwrap().expect("needs rewrap");
    let before = Envelope::parse(&sealed).unwrap();
    let after = Envelope::parse(&rewrapped).unwrap();
    assert_eq!(after.kek_version, 2);
    assert_eq!(before.payload, after.payload, "payload bytes are untouched");
    assert_ne!(before.wrapped_key, after.wrapped_key);
    assert_eq!(ring.open(&CTX, &rewrapped).unwrap().as_slice(), b"payload");
}

#[test]
fn retiring_active_or_in_use_versions_is_refused_and_retired_versions_do_not_open() {
    let ring = ring(7);
    let sealed = ring.seal(&CTX, b"payload").unwrap();
    assert!(matches!(ring.retire(1, 0), Err(SealError::RetireActive(1))));
    ring.rotate().unwrap();
    assert!(matches!(
        ring.retire(1, 3),
        Err(SealError::VersionInUse {
            version: 1,
            count: 3
        })
    ));
    assert_eq!(
        ring.open(&CTX, &sealed).unwrap().as_slice(),
        b"payload",
        "refusal changed nothing"
    );
    let retired = ring.retire(1, 0).unwrap();
    assert_eq!(retired.state, KeyState::Retired);
    assert!(retired.material.is_empty(), "retired material is destroyed");
    assert!(matches!(
        ring.open(&CTX, &sealed),
        Err(SealError::RetiredVersion(1))
    ));
    assert!(matches!(
        ring.retire(3, 0),
        Err(SealError::UnknownVersion(3))
    ));
}

#[test]
fn sealing_before_initialisation_fails_clearly() {
    let ring = Keyring::new(provider(7), Vec::new()).unwrap();
    assert!(matches!(
        ring.seal(&CTX, b"x"),
        Err(SealError::NotInitialized)
    ));
    ring.initialize().unwrap();
    assert!(matches!(
        ring.initialize(),
        Err(SealError::AlreadyInitialized(1))
    ));
}

#[test]
fn inconsistent_records_are_refused() {
    let ring = ring(7);
    ring.rotate().unwrap();
    let mut records = ring.records();
    for r in &mut records {
        r.state = KeyState::Active;
    }
    assert!(matches!(
        Keyring::new(provider(7), records),
        Err(SealError::InconsistentKeyring(_))
    ));
}

#[test]
fn base64_key_configuration_errors_name_the_cause() {
    let bad = SoftwareKeyProvider::from_base64(&SecretString::from("not base64!!")).unwrap_err();
    assert!(bad.to_string().contains("base64"), "{bad}");
    let short = SoftwareKeyProvider::from_base64(&SecretString::from("AAAA")).unwrap_err();
    assert!(short.to_string().contains("exactly 32 bytes"), "{short}");
    let zero = SoftwareKeyProvider::from_base64(&SecretString::from(
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ))
    .unwrap_err();
    assert!(zero.to_string().contains("all zero"), "{zero}");
    let good = SoftwareKeyProvider::from_base64(&SecretString::from(
        " AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n",
    ))
    .unwrap();
    assert!(good.key_id().starts_with("sw:"));
}

#[test]
fn debug_output_never_contains_key_bytes() {
    let p = SoftwareKeyProvider::from_base64(&SecretString::from(
        "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=",
    ))
    .unwrap();
    let shown = format!("{p:?} {:?}", DataKey::from_slice(&[0xab; 32]).unwrap());
    assert!(!shown.to_lowercase().contains("abab"), "{shown}");
    assert!(!shown.contains("q6ur"), "{shown}");
}

#[cfg(unix)]
#[test]
fn key_file_readable_by_group_or_others_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kek");
    std::fs::write(&path, "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = SoftwareKeyProvider::from_key_file(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("644") && err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let from_file = SoftwareKeyProvider::from_key_file(&path).unwrap();
    let from_env = SoftwareKeyProvider::from_base64(&SecretString::from(
        "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
    ))
    .unwrap();
    assert_eq!(
        from_file.key_id(),
        from_env.key_id(),
        "same key, same key ring id"
    );
    let missing = SoftwareKeyProvider::from_key_file(&dir.path().join("absent"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("no such file"), "{missing}");
    std::fs::write(&path, [1u8; 32]).unwrap();
    assert!(
        SoftwareKeyProvider::from_key_file(&path).is_ok(),
        "32 raw bytes are accepted"
    );
}

fn stream_bytes(ring: &Keyring, data: &[u8]) -> Vec<u8> {
    let mut w = StreamWriter::new(ring, "phigate.backup", Vec::new()).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

#[test]
fn sealed_stream_round_trips_across_chunks() {
    let ring = ring(7);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let bytes = stream_bytes(&ring, &data);
    let back = StreamReader::new(&ring, "phigate.backup", bytes.as_slice())
        .unwrap()
        .read_to_end()
        .unwrap();
    assert_eq!(back.as_slice(), data.as_slice());
}

#[test]
fn sealed_stream_detects_truncation_modification_and_trailing_data() {
    let ring = ring(7);
    let data = vec![42u8; 150_000];
    let bytes = stream_bytes(&ring, &data);
    let open = |b: &[u8]| {
        StreamReader::new(&ring, "phigate.backup", b).and_then(StreamReader::read_to_end)
    };
    for cut in [
        bytes.len() - 1,
        bytes.len() - 17,
        bytes.len() / 2,
        70_000,
        40,
        3,
    ] {
        assert!(open(&bytes[..cut]).is_err(), "truncation at {cut} accepted");
    }
    for pos in (0..bytes.len()).step_by(997) {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x04;
        assert!(open(&bad).is_err(), "modification at {pos} accepted");
    }
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(open(&extra).is_err());
    assert!(StreamReader::new(&ring, "other.kind", bytes.as_slice()).is_err());
}

#[test]
fn sealed_stream_detects_reordered_chunks() {
    let ring = ring(7);
    // Three chunks: two full, one final.
    let data = vec![9u8; 2 * sealed::stream::CHUNK_LEN + 10];
    let bytes = stream_bytes(&ring, &data);
    let chunk = 1 + 4 + 12 + sealed::stream::CHUNK_LEN + 16;
    let header = bytes.len() - (2 * chunk + 1 + 4 + 12 + 10 + 16);
    let mut swapped = bytes[..header].to_vec();
    swapped.extend_from_slice(&bytes[header + chunk..header + 2 * chunk]);
    swapped.extend_from_slice(&bytes[header..header + chunk]);
    swapped.extend_from_slice(&bytes[header + 2 * chunk..]);
    assert_eq!(swapped.len(), bytes.len());
    let r = StreamReader::new(&ring, "phigate.backup", swapped.as_slice())
        .and_then(StreamReader::read_to_end);
    assert!(matches!(r, Err(SealError::AuthenticationFailed)));
}

proptest! {
    #[test]
    fn any_plaintext_round_trips(data in proptest::collection::vec(any::<u8>(), 0..4096), kind in "[a-z.]{1,20}", id in proptest::collection::vec(any::<u8>(), 0..64)) {
        let ring = ring(3);
        let ctx = ObjectContext::new(&kind, &id);
        let sealed = ring.seal(&ctx, &data).unwrap();
        let opened = ring.open(&ctx, &sealed).unwrap();
        prop_assert_eq!(opened.as_slice(), data.as_slice());
    }

    #[test]
    fn arbitrary_bytes_never_open_and_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let ring = ring(3);
        prop_assert!(ring.open(&CTX, &bytes).is_err());
        let _ = Envelope::parse(&bytes);
    }

    #[test]
    fn random_single_byte_corruption_is_detected(data in proptest::collection::vec(any::<u8>(), 1..512), pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let ring = ring(3);
        let mut sealed = ring.seal(&CTX, &data).unwrap();
        let i = pos.index(sealed.len());
        sealed[i] ^= flip;
        prop_assert!(ring.open(&CTX, &sealed).is_err());
    }
}

#[test]
fn every_encryption_gets_a_fresh_nonce_across_nonce_batches() {
    let key = sealed::DataKey::generate().unwrap();
    let mut nonces = std::collections::HashSet::new();
    // More than several per-thread batches of 256 nonces.
    for _ in 0..2_000 {
        let sealed = key.encrypt(b"aad", b"same message").unwrap();
        assert!(nonces.insert(sealed[..12].to_vec()), "a nonce repeated");
        assert_eq!(
            key.decrypt(b"aad", &sealed).unwrap().as_slice(),
            b"same message"
        );
    }
}

#[test]
fn large_payloads_round_trip_and_a_flipped_bit_anywhere_fails() {
    let key = sealed::DataKey::generate().unwrap();
    let data: Vec<u8> = (0..(1usize << 20) + 3).map(|i| (i % 253) as u8).collect();
    let sealed = key.encrypt(b"ctx", &data).unwrap();
    assert_eq!(sealed.len(), 12 + data.len() + 16);
    assert_eq!(
        key.decrypt(b"ctx", &sealed).unwrap().as_slice(),
        data.as_slice()
    );
    for at in [0, 11, 12, 12 + data.len() / 2, sealed.len() - 1] {
        let mut bad = sealed.clone();
        bad[at] ^= 0x01;
        assert!(
            matches!(
                key.decrypt(b"ctx", &bad),
                Err(SealError::AuthenticationFailed)
            ),
            "flip at {at} was not detected"
        );
    }
}

#[test]
fn plaintext_debug_prints_nothing_of_the_content() {
    let ring = ring(5);
    let sealed = ring.seal(&CTX, b"CANARY-PATIENT-NAME").unwrap();
    let opened = ring.open(&CTX, &sealed).unwrap();
    assert_eq!(opened.as_slice(), b"CANARY-PATIENT-NAME");
    assert!(!format!("{opened:?}").contains("CANARY"));
}
