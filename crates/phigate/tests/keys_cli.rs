//! `phigate keys` end to end: real binary, real SQLite store in a temporary data directory.

use std::path::Path;
use std::process::{Command, Output};

const KEK: &str = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=";
const OTHER_KEK: &str = "zMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMw=";

fn phigate(data: &Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phigate"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PHIGATE_DATA_DIR", data);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.args(args).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_no_secret(o: &Output) {
    let (out, err) = text(o);
    for s in [KEK, OTHER_KEK, "q6urq6ur", "abababab"] {
        assert!(!out.contains(s) && !err.contains(s), "key material printed");
    }
}

#[test]
fn keys_lifecycle_init_rotate_rewrap_retire() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("PHIGATE_KEK", KEK)];
    let init = phigate(&data, &env, &["keys", "init"]);
    assert!(init.status.success(), "{:?}", text(&init));
    assert!(text(&init).0.contains("initialised the key ring sw:"));
    assert_no_secret(&init);

    let again = phigate(&data, &env, &["keys", "init"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).1.contains("already has keys"));

    assert!(phigate(&data, &env, &["keys", "rotate"]).status.success());
    let refused = phigate(&data, &env, &["keys", "retire", "1"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused).1.contains("run `phigate keys rewrap` first"),
        "{:?}",
        text(&refused)
    );
    let active = phigate(&data, &env, &["keys", "retire", "2"]);
    assert!(text(&active).1.contains("is the active version"));

    let rewrap = phigate(&data, &env, &["keys", "rewrap"]);
    assert!(
        text(&rewrap)
            .0
            .contains("re-wrapped 1 data key(s) under KEK version 2"),
        "{:?}",
        text(&rewrap)
    );
    assert!(
        phigate(&data, &env, &["keys", "retire", "1"])
            .status
            .success()
    );

    let status = phigate(&data, &env, &["keys", "status", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["versions"][0]["state"], "retired");
    assert_eq!(doc["versions"][1]["state"], "active");
    assert_eq!(doc["versions"][1]["wraps"], 1);
    assert_no_secret(&status);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(data.join("store.db"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
}

#[test]
fn missing_or_malformed_key_is_a_usage_error_that_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let none = phigate(&data, &[], &["keys", "status"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(text(&none).1.contains("openssl rand -base64 32"));
    let bad = phigate(&data, &[("PHIGATE_KEK", "not-base64!")], &["keys", "init"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).1.contains("PHIGATE_KEK: invalid key material"));
    let short = phigate(&data, &[("PHIGATE_KEK", "AAECAw==")], &["keys", "init"]);
    assert!(text(&short).1.contains("exactly 32 bytes"));
    let both = phigate(
        &data,
        &[("PHIGATE_KEK", KEK), ("PHIGATE_KEK_FILE", "/nonexistent")],
        &["keys", "init"],
    );
    assert!(text(&both).1.contains("configure exactly one"));
    assert!(
        !data.join("store.db").exists()
            || phigate(&data, &[("PHIGATE_KEK", KEK)], &["keys", "init"])
                .status
                .success()
    );
}

#[test]
fn wrong_key_is_refused_and_names_both_key_ids() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(
        phigate(&data, &[("PHIGATE_KEK", KEK)], &["keys", "init"])
            .status
            .success()
    );
    let wrong = phigate(&data, &[("PHIGATE_KEK", OTHER_KEK)], &["keys", "status"]);
    assert_eq!(wrong.status.code(), Some(2));
    let err = text(&wrong).1;
    assert!(
        err.contains("initialised with key sw:") && err.contains("configure the original key"),
        "{err}"
    );
    assert_no_secret(&wrong);
    assert!(
        phigate(&data, &[("PHIGATE_KEK", KEK)], &["keys", "status"])
            .status
            .success(),
        "nothing was changed"
    );
}

#[cfg(unix)]
#[test]
fn too_open_key_file_is_refused_with_chmod_advice() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = dir.path().join("kek");
    std::fs::write(&key, format!("{KEK}\n")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let key_path = key.to_str().unwrap();
    let open = phigate(&data, &[("PHIGATE_KEK_FILE", key_path)], &["keys", "init"]);
    assert_eq!(open.status.code(), Some(2));
    assert!(
        text(&open).1.contains(&format!("chmod 600 {key_path}")),
        "{:?}",
        text(&open)
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(
        phigate(&data, &[("PHIGATE_KEK_FILE", key_path)], &["keys", "init"])
            .status
            .success()
    );
    // Same key through the environment opens the same store.
    assert!(
        phigate(&data, &[("PHIGATE_KEK", KEK)], &["keys", "status"])
            .status
            .success()
    );
}

#[test]
fn pkcs11_module_that_will_not_load_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fake = dir.path().join("libfake.so");
    std::fs::write(&fake, b"this is not a shared library").unwrap();
    let out = phigate(
        &data,
        &[
            ("PHIGATE_PKCS11_MODULE", fake.to_str().unwrap()),
            ("PHIGATE_PKCS11_SLOT", "0"),
            ("PHIGATE_PKCS11_PIN", "1234"),
        ],
        &["keys", "init"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("cannot load module"),
        "{:?}",
        text(&out)
    );
    let no_pin = phigate(
        &data,
        &[
            ("PHIGATE_PKCS11_MODULE", fake.to_str().unwrap()),
            ("PHIGATE_PKCS11_SLOT", "0"),
        ],
        &["keys", "init"],
    );
    assert!(text(&no_pin).1.contains("PHIGATE_PKCS11_PIN"));
}

#[test]
fn pkcs11_keys_on_softhsm_through_the_cli() {
    let module = [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("SoftHSM2 is not installed: install it with `apt-get install -y softhsm2`");
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .unwrap();
    let init = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            "cli-test",
            "--so-pin",
            "9999",
            "--pin",
            "1234",
        ])
        .output()
        .expect("softhsm2-util missing: install it with `apt-get install -y softhsm2`");
    let slot = String::from_utf8_lossy(&init.stdout)
        .split("reassigned to slot ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .expect("slot");
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, "1234\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let data = dir.path().join("data");
    let env = [
        ("SOFTHSM2_CONF", conf.to_str().unwrap()),
        ("PHIGATE_PKCS11_MODULE", module),
        ("PHIGATE_PKCS11_SLOT", slot.as_str()),
        ("PHIGATE_PKCS11_PIN_FILE", pin_file.to_str().unwrap()),
    ];
    let out = phigate(&data, &env, &["keys", "init"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains("(pkcs11)"));
    assert!(phigate(&data, &env, &["keys", "rotate"]).status.success());
    assert!(phigate(&data, &env, &["keys", "rewrap"]).status.success());
    let retire = phigate(&data, &env, &["keys", "retire", "1"]);
    assert!(retire.status.success(), "{:?}", text(&retire));
    let status = phigate(&data, &env, &["keys", "status", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["provider"], "pkcs11");
    assert_eq!(doc["versions"][0]["state"], "retired");
}
