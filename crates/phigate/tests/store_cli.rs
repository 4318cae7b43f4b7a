//! `phigate store` end to end: records are written through the `store` library with the same
//! key and data directory, then maintained through the binary.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use sealed::{KeyProvider, SoftwareKeyProvider};
use secrecy::SecretString;
use store::{BackendConfig, Database, TtlPolicy};

const KEK: &str = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=";

fn phigate(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_phigate"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PHIGATE_DATA_DIR", data)
        .env("PHIGATE_KEK", KEK)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn provider() -> Arc<dyn KeyProvider> {
    Arc::new(SoftwareKeyProvider::from_base64(&SecretString::from(KEK)).unwrap())
}

fn seed(data: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = Database::connect(&BackendConfig::Sqlite {
            path: data.join("store.db"),
        })
        .await
        .unwrap();
        let store = db.open(provider(), TtlPolicy::default()).await.unwrap();
        for i in 0..12 {
            let patient = format!("CANARY-PATIENT-{}", i % 3);
            store
                .put(
                    "patient",
                    &format!("CANARY-ID-{i}"),
                    Some(&patient),
                    b"CANARY-VALUE",
                )
                .await
                .unwrap();
        }
        store
            .put(
                "kipu.response",
                "/patients/CANARY-ID-1",
                Some("CANARY-PATIENT-1"),
                b"cached",
            )
            .await
            .unwrap();
    });
}

fn stats(data: &Path) -> serde_json::Value {
    let o = phigate(data, &["store", "stats", "--json"], None);
    assert!(o.status.success(), "{}", out(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn stats_invalidate_backup_restore_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(phigate(&data, &["keys", "init"], None).status.success());
    seed(&data);
    let s = stats(&data);
    assert_eq!(s["live_by_kind"]["patient"], 12);
    assert_eq!(s["live_by_kind"]["kipu.response"], 1);

    let backup = dir.path().join("store.bk");
    let b = phigate(&data, &["store", "backup", backup.to_str().unwrap()], None);
    assert!(b.status.success(), "{}", out(&b));
    assert!(out(&b).contains("13 record(s)"));
    let bytes = std::fs::read(&backup).unwrap();
    assert!(
        !bytes.windows(6).any(|w| w == b"CANARY"),
        "backup is encrypted"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let exists = phigate(&data, &["store", "backup", backup.to_str().unwrap()], None);
    assert_eq!(exists.status.code(), Some(2), "never overwrites silently");

    let p = phigate(
        &data,
        &["store", "invalidate", "patient"],
        Some("CANARY-PATIENT-1\n"),
    );
    assert!(out(&p).contains("invalidated 5 record(s)"), "{}", out(&p));
    let k = phigate(
        &data,
        &["store", "invalidate", "key", "patient"],
        Some("CANARY-ID-0\n"),
    );
    assert!(out(&k).contains("invalidated 1 record(s)"), "{}", out(&k));
    let kind = phigate(&data, &["store", "invalidate", "kind", "patient"], None);
    assert!(
        out(&kind).contains("invalidated 7 record(s)"),
        "{}",
        out(&kind)
    );
    let unconfirmed = phigate(&data, &["store", "invalidate", "all"], None);
    assert_eq!(unconfirmed.status.code(), Some(2));
    assert!(
        phigate(&data, &["store", "invalidate", "all", "--yes"], None)
            .status
            .success()
    );
    assert_eq!(stats(&data)["live_by_kind"], serde_json::json!({}));

    let r = phigate(&data, &["store", "restore", backup.to_str().unwrap()], None);
    assert!(out(&r).contains("restored 13 record(s)"), "{}", out(&r));
    assert_eq!(stats(&data)["live_by_kind"]["patient"], 12);
    let again = phigate(&data, &["store", "restore", backup.to_str().unwrap()], None);
    assert!(
        out(&again).contains("restored 0 record(s); 13 unchanged"),
        "{}",
        out(&again)
    );

    let purge = phigate(&data, &["store", "purge"], None);
    assert!(purge.status.success(), "{}", out(&purge));

    for o in [&b, &p, &k, &r] {
        assert!(
            !out(o).contains("CANARY"),
            "PHI reached the output: {}",
            out(o)
        );
    }
}

#[test]
fn tampered_or_truncated_backup_is_refused_and_the_store_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(phigate(&data, &["keys", "init"], None).status.success());
    seed(&data);
    let backup = dir.path().join("store.bk");
    assert!(
        phigate(&data, &["store", "backup", backup.to_str().unwrap()], None)
            .status
            .success()
    );
    assert!(
        phigate(&data, &["store", "invalidate", "all", "--yes"], None)
            .status
            .success()
    );
    let bytes = std::fs::read(&backup).unwrap();

    let tampered = dir.path().join("tampered.bk");
    let mut t = bytes.clone();
    let mid = t.len() / 2;
    t[mid] ^= 1;
    std::fs::write(&tampered, &t).unwrap();
    let o = phigate(
        &data,
        &["store", "restore", tampered.to_str().unwrap()],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("was refused; the store was not changed"),
        "{}",
        out(&o)
    );

    let truncated = dir.path().join("truncated.bk");
    std::fs::write(&truncated, &bytes[..bytes.len() - 30]).unwrap();
    let o = phigate(
        &data,
        &["store", "restore", truncated.to_str().unwrap()],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stats(&data)["live_by_kind"],
        serde_json::json!({}),
        "nothing restored from a bad backup"
    );
    let missing = phigate(&data, &["store", "restore", "/nonexistent/backup"], None);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn corrupt_database_file_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let db = data.join("store.db");
    std::fs::write(&db, vec![0x42u8; 4096]).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let o = phigate(&data, &["store", "stats"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("not a database"), "{}", out(&o));
    assert!(!out(&o).contains("panicked"));
    assert_eq!(std::fs::read(&db).unwrap(), vec![0x42u8; 4096]);
}
