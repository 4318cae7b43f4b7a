//! Wycheproof AES-256-GCM vectors (96-bit IV, 128-bit tag) against the primitive every sealed
//! object uses. Vectors: `data/aes_gcm_256_96_wycheproof.json` (Apache-2.0, Google / C2SP).

use sealed::{DataKey, SealError};
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    #[serde(rename = "testGroups")]
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    tests: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    #[serde(rename = "tcId")]
    id: u32,
    key: String,
    iv: String,
    aad: String,
    msg: String,
    ct: String,
    tag: String,
    result: String,
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("vector hex")
}

#[test]
fn wycheproof_aes_256_gcm_vectors_open_valid_and_reject_modified_tags() {
    let file: File = serde_json::from_str(include_str!("data/aes_gcm_256_96_wycheproof.json"))
        .expect("vector file");
    let mut valid = 0;
    let mut invalid = 0;
    for case in file.groups.iter().flat_map(|g| &g.tests) {
        let key = DataKey::from_slice(&unhex(&case.key)).expect("256-bit key");
        let mut sealed = unhex(&case.iv);
        sealed.extend(unhex(&case.ct));
        sealed.extend(unhex(&case.tag));
        let opened = key.decrypt(&unhex(&case.aad), &sealed);
        match case.result.as_str() {
            "valid" => {
                assert_eq!(
                    opened.expect("valid vector opens").as_slice(),
                    unhex(&case.msg),
                    "tcId {}",
                    case.id
                );
                valid += 1;
            }
            _ => {
                assert!(
                    matches!(opened, Err(SealError::AuthenticationFailed)),
                    "tcId {} must be rejected",
                    case.id
                );
                invalid += 1;
            }
        }
    }
    assert!(
        valid >= 1 && invalid >= 20,
        "vector file lost cases: {valid} valid, {invalid} invalid"
    );
}

#[test]
fn encryption_round_trips_with_the_vector_key_and_fresh_nonces() {
    let key = DataKey::from_slice(&unhex(
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    ))
    .unwrap();
    let a = key.encrypt(b"aad", b"message").unwrap();
    let b = key.encrypt(b"aad", b"message").unwrap();
    assert_ne!(a[..12], b[..12], "every encryption draws a new nonce");
    assert_eq!(key.decrypt(b"aad", &a).unwrap().as_slice(), b"message");
    assert!(key.decrypt(b"other", &a).is_err());
}
