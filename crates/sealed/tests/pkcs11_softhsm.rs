//! The PKCS#11 provider against a real SoftHSM2 token.
//!
//! SoftHSM2 reads its configuration from `SOFTHSM2_CONF` when the module loads. Tests may not
//! change their own environment (`set_var` is unsafe and this workspace forbids unsafe code),
//! so each test creates a token in a temporary directory and re-runs this test binary as a
//! child with `SOFTHSM2_CONF` set, executing the matching `#[ignore]`d body there.
//!
//! These tests FAIL when SoftHSM2 is missing: install it with `apt-get install -y softhsm2`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use sealed::{KeyProvider, Keyring, ObjectContext, Pkcs11Config, Pkcs11KeyProvider, SealError};
use secrecy::SecretString;

const MODULE_CANDIDATES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
];
const PIN: &str = "4242-user-pin";

fn module() -> PathBuf {
    MODULE_CANDIDATES.iter().map(PathBuf::from).find(|p| p.exists()).unwrap_or_else(|| {
        panic!("SoftHSM2 is not installed (no libsofthsm2.so found): install it with `apt-get install -y softhsm2`")
    })
}

/// Creates a token in a fresh directory and runs `body` (an ignored test in this file) in a child.
fn run_with_token(body: &str) {
    let module = module();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            "phigate-test",
            "--so-pin",
            "5555-so-pin",
            "--pin",
            PIN,
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run softhsm2-util ({e}): install it with `apt-get install -y softhsm2`")
        });
    assert!(
        out.status.success(),
        "softhsm2-util failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let slot: u64 = text
        .split("reassigned to slot ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot find the slot in softhsm2-util output: {text}"));
    let child = Command::new(std::env::current_exe().unwrap())
        .env("SOFTHSM2_CONF", &conf)
        .env("PHIGATE_TEST_P11_MODULE", &module)
        .env("PHIGATE_TEST_P11_SLOT", slot.to_string())
        .args([
            "--ignored",
            "--exact",
            body,
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success() && stdout.contains("1 passed"),
        "child {body} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&child.stderr)
    );
}

fn config_from_env(pin: &str) -> Pkcs11Config {
    Pkcs11Config {
        module: PathBuf::from(
            std::env::var("PHIGATE_TEST_P11_MODULE").expect("run through the non-ignored test"),
        ),
        slot: std::env::var("PHIGATE_TEST_P11_SLOT")
            .unwrap()
            .parse()
            .unwrap(),
        pin: SecretString::from(pin),
        label_prefix: "phigate-kek".into(),
    }
}

const CTX: ObjectContext<'static> = ObjectContext {
    kind: "patient",
    id: b"row-9",
};

#[test]
fn pkcs11_kek_is_generated_non_extractable_and_wraps_inside_the_token() {
    run_with_token("child_kek_non_extractable_and_round_trip");
}

#[test]
#[ignore = "runs inside run_with_token's child process"]
fn child_kek_non_extractable_and_round_trip() {
    let provider = Arc::new(Pkcs11KeyProvider::open(&config_from_env(PIN)).unwrap());
    assert!(provider.key_id().starts_with("p11:"));
    let ring = Keyring::new(provider.clone(), Vec::new()).unwrap();
    ring.initialize().unwrap();
    assert!(
        provider.kek_is_non_extractable(1).unwrap(),
        "KEK must be sensitive and non-extractable"
    );
    assert!(
        provider.kek_value_is_unreadable(1).unwrap(),
        "token must refuse to reveal the KEK value"
    );
    let sealed = ring.seal(&CTX, b"clinical note").unwrap();
    assert_eq!(
        ring.open(&CTX, &sealed).unwrap().as_slice(),
        b"clinical note"
    );
    assert!(matches!(
        ring.open(&ObjectContext::new("patient", b"row-10"), &sealed),
        Err(SealError::AuthenticationFailed)
    ));
    let mut bad = sealed.clone();
    let i = bad.len() - 40;
    bad[i] ^= 1;
    assert!(ring.open(&CTX, &bad).is_err());
}

#[test]
fn pkcs11_rotation_rewrap_and_retire_destroy_the_token_object() {
    run_with_token("child_rotation_rewrap_retire");
}

#[test]
#[ignore = "runs inside run_with_token's child process"]
fn child_rotation_rewrap_retire() {
    let provider = Arc::new(Pkcs11KeyProvider::open(&config_from_env(PIN)).unwrap());
    let ring = Keyring::new(provider.clone(), Vec::new()).unwrap();
    ring.initialize().unwrap();
    let old = ring.seal(&CTX, b"v1 data").unwrap();
    ring.rotate().unwrap();
    assert!(provider.kek_is_non_extractable(2).unwrap());
    assert_eq!(ring.open(&CTX, &old).unwrap().as_slice(), b"v1 data");
    assert!(matches!(
        ring.retire(1, 1),
        Err(SealError::VersionInUse { .. })
    ));
    let rewrapped = ring.rewrap(&CTX, &old).unwrap().unwrap();
    ring.retire(1, 0).unwrap();
    assert!(
        provider.kek_is_non_extractable(1).is_err(),
        "retired KEK object is gone from the token"
    );
    assert!(matches!(
        ring.open(&CTX, &old),
        Err(SealError::RetiredVersion(1))
    ));
    assert_eq!(ring.open(&CTX, &rewrapped).unwrap().as_slice(), b"v1 data");
    // A second process (new session) sees the same keys.
    let reopened = Keyring::new(
        Arc::new(Pkcs11KeyProvider::open(&config_from_env(PIN)).unwrap()),
        ring.records(),
    )
    .unwrap();
    assert_eq!(
        reopened.open(&CTX, &rewrapped).unwrap().as_slice(),
        b"v1 data"
    );
}

#[test]
fn pkcs11_wrong_pin_and_missing_module_give_clear_errors() {
    run_with_token("child_wrong_pin");
    let err = Pkcs11KeyProvider::open(&Pkcs11Config {
        module: Path::new("/nonexistent/libpkcs11.so").to_path_buf(),
        slot: 0,
        pin: SecretString::from(PIN),
        label_prefix: "phigate-kek".into(),
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("does not exist"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let not_a_module = dir.path().join("fake.so");
    std::fs::write(&not_a_module, b"not an ELF file").unwrap();
    let err = Pkcs11KeyProvider::open(&Pkcs11Config {
        module: not_a_module,
        slot: 0,
        pin: SecretString::from(PIN),
        label_prefix: "phigate-kek".into(),
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("cannot load module"), "{err}");
}

#[test]
#[ignore = "runs inside run_with_token's child process"]
fn child_wrong_pin() {
    let err = Pkcs11KeyProvider::open(&config_from_env("wrong-pin"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("logging in"), "{err}");
    assert!(
        !err.contains("wrong-pin"),
        "the PIN must not appear in errors: {err}"
    );
}
