//! The audit keys live sealed under a KEK from the `sealed` key providers: nothing usable is in
//! clear on disk, they reopen only with the same KEK, and clear keys of earlier versions are
//! sealed and removed.

mod common;

use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::Arc;

use audit::keys::{
    HMAC_KEY_FILE, KEYRING_FILE, LEGACY_HMAC_KEY_FILE, LEGACY_SIGNING_KEY_FILE, PUBLIC_KEY_FILE,
    SIGNING_KEY_FILE,
};
use audit::*;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use common::*;

fn other_kek() -> Arc<dyn sealed::KeyProvider> {
    let root = sealed::DataKey::from_slice(&[0x33; 32]).unwrap();
    Arc::new(sealed::SoftwareKeyProvider::from_root(root, "file").unwrap())
}

fn write_private(path: &Path, bytes: &[u8]) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn keys_are_stored_sealed_and_reopen_with_the_same_kek() {
    let dir = tempfile::tempdir().unwrap();
    let keys_dir = dir.path().join("keys");
    let first = FileKeys::open_or_create(&keys_dir, "phigate-audit-test", kek()).unwrap();
    for file in [KEYRING_FILE, SIGNING_KEY_FILE, HMAC_KEY_FILE] {
        let path = keys_dir.join(file);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600,
            "{file}"
        );
    }
    assert_eq!(
        std::fs::metadata(&keys_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // Sealed objects in the documented envelope format; no clear-text key files.
    for file in [SIGNING_KEY_FILE, HMAC_KEY_FILE] {
        assert_eq!(&std::fs::read(keys_dir.join(file)).unwrap()[..4], b"PGSL");
    }
    assert!(!keys_dir.join(LEGACY_SIGNING_KEY_FILE).exists());
    assert!(!keys_dir.join(LEGACY_HMAC_KEY_FILE).exists());

    let again = FileKeys::open_or_create(&keys_dir, "phigate-audit-test", kek()).unwrap();
    assert_eq!(again.note_verifier(), first.note_verifier());
    assert_eq!(again.keyed_hash(b"P-1"), first.keyed_hash(b"P-1"));
    let public = std::fs::read_to_string(keys_dir.join(PUBLIC_KEY_FILE)).unwrap();
    assert_eq!(NoteVerifier::parse(&public).unwrap(), first.note_verifier());
    // A note signed after reopening verifies with the published key.
    let note = Checkpoint {
        origin: "phigate-audit/k".into(),
        size: 3,
        root: [1; 32],
        timestamp: chrono::Utc::now(),
    }
    .sign(&again)
    .unwrap();
    Checkpoint::parse_and_verify(&note, &NoteVerifier::parse(&public).unwrap()).unwrap();
}

#[test]
fn keys_sealed_under_another_kek_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let keys_dir = dir.path().join("keys");
    FileKeys::open_or_create(&keys_dir, "phigate-audit-test", kek()).unwrap();
    let err = FileKeys::open_or_create(&keys_dir, "phigate-audit-test", other_kek()).unwrap_err();
    assert!(matches!(err, KeyError::WrongKek { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("configure the KEK that created them")
    );
}

#[test]
fn altered_sealed_signing_key_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let keys_dir = dir.path().join("keys");
    FileKeys::open_or_create(&keys_dir, "phigate-audit-test", kek()).unwrap();
    let path = keys_dir.join(SIGNING_KEY_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = FileKeys::open_or_create(&keys_dir, "phigate-audit-test", kek()).unwrap_err();
    assert!(matches!(err, KeyError::Sealed { .. }), "{err}");
    // A sealed key does not open under another signer name either.
    let dir = tempfile::tempdir().unwrap();
    let keys_dir = dir.path().join("keys");
    FileKeys::open_or_create(&keys_dir, "phigate-audit-test", kek()).unwrap();
    let err = FileKeys::open_or_create(&keys_dir, "another-name", kek()).unwrap_err();
    assert!(matches!(err, KeyError::Sealed { .. }), "{err}");
}

#[test]
fn clear_keys_from_earlier_versions_are_sealed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let keys_dir = dir.path().join("keys");
    std::fs::create_dir_all(&keys_dir).unwrap();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let public = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    write_private(&keys_dir.join(LEGACY_SIGNING_KEY_FILE), pkcs8.as_ref());
    let hmac_hex = "11".repeat(32);
    write_private(
        &keys_dir.join(LEGACY_HMAC_KEY_FILE),
        format!("k0 {}\nk1 {hmac_hex}\n", "22".repeat(32)).as_bytes(),
    );

    let keys = FileKeys::open_or_create(&keys_dir, "phigate-audit-test", kek()).unwrap();
    let expected = NoteVerifier::new("phigate-audit-test", public.try_into().unwrap()).unwrap();
    assert_eq!(keys.note_verifier(), expected);
    let mac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[0x11; 32]);
    let tag = aws_lc_rs::hmac::sign(&mac_key, b"P-7");
    assert_eq!(
        keys.keyed_hash(b"P-7").as_str(),
        format!("hmac-sha256:k1:{}", hex::encode(tag.as_ref()))
    );
    assert_eq!(keys.keyed_hashes_all_keys(b"P-7").len(), 2);
    assert!(!keys_dir.join(LEGACY_SIGNING_KEY_FILE).exists());
    assert!(!keys_dir.join(LEGACY_HMAC_KEY_FILE).exists());

    // Reopened from the sealed files alone: the same keys.
    let again = FileKeys::open_or_create(&keys_dir, "phigate-audit-test", kek()).unwrap();
    assert_eq!(again.note_verifier(), expected);
    assert_eq!(again.keyed_hash(b"P-7"), keys.keyed_hash(b"P-7"));

    // A clear key reappearing next to the sealed one is refused, not silently ignored.
    write_private(&keys_dir.join(LEGACY_SIGNING_KEY_FILE), pkcs8.as_ref());
    let err = FileKeys::open_or_create(&keys_dir, "phigate-audit-test", kek()).unwrap_err();
    assert!(matches!(err, KeyError::ClearKeyLeftOver { .. }), "{err}");
}
