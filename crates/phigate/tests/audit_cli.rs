//! `phigate audit` end to end: the real binary against a log written through the `audit`
//! crate, with the exit codes and outputs an auditor relies on.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use audit::*;

const CANARY: &str = "MRN-CLI-CANARY-5521";
/// The root KEK the audit keys are sealed under (base64 of 32 bytes), as `PHIGATE_KEK`.
const TEST_KEK: &str = "YXVkaXQtY2xpLXRlc3Qta2V5LTMyLWJ5dGVzLWxvbmc=";

fn provider() -> Arc<dyn sealed::KeyProvider> {
    Arc::new(sealed::SoftwareKeyProvider::from_base64(&TEST_KEK.to_string().into()).unwrap())
}

fn phigate(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phigate"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("PHIGATE_DATABASE_URL")
        .env_remove("PHIGATE_KEK_FILE")
        .env_remove("PHIGATE_PKCS11_MODULE")
        .env("PHIGATE_KEK", TEST_KEK)
        .env("PHIGATE_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes 12 entries (3 disclosures for the canary patient) into the data dir's log, using
/// the same key directory the CLI uses.
fn populate(data_dir: &Path) {
    let keys = Arc::new(
        FileKeys::open_or_create(&data_dir.join("audit-keys"), "phigate-audit", provider())
            .unwrap(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let log = AuditLog::open(
            LogConfig::new(Storage::Sqlite {
                path: data_dir.join("audit.db"),
            }),
            keys.clone(),
        )
        .await
        .unwrap();
        let patient = keys.patient_ref(&phi::Sensitive::new(CANARY.to_string()));
        for n in 0..12u64 {
            let event = if n % 4 == 1 {
                Event::Disclosure(Disclosure {
                    principal: "user:clerk".into(),
                    patient: patient.clone(),
                    recipient: format!("Recipient {n}"),
                    purpose: PurposeOfUse::Hpaymt,
                    description: "claims data".into(),
                    request_id: format!("r{n}"),
                })
            } else {
                Event::KeyLifecycle(KeyLifecycle {
                    principal: "admin:ops".into(),
                    key_id: format!("k{n}"),
                    key_purpose: "kek".into(),
                    action: KeyAction::Generated,
                })
            };
            log.append(event).await.unwrap();
        }
        log.checkpoint_now().await.unwrap();
        log.close().await;
    });
}

#[test]
fn verify_checkpoint_prove_and_consistency_succeed_on_an_intact_log() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());

    let out = phigate(dir.path(), &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["entries"], 12);
    assert_eq!(report["damage"], serde_json::Value::Null);

    let out = phigate(dir.path(), &["audit", "checkpoint"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let note = text(&out.stdout);
    assert!(
        note.lines().nth(1) == Some("12") && note.contains("\n\n\u{2014} phigate-audit "),
        "{note}"
    );

    let out = phigate(dir.path(), &["audit", "prove", "5"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let proof: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (proof["index"].as_u64(), proof["tree_size"].as_u64()),
        (Some(5), Some(12))
    );
    assert_eq!(proof["proof"].as_array().unwrap().len(), 4);

    let out = phigate(dir.path(), &["audit", "consistency", "3", "12"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(c["new_root"], proof["root"]);

    let out = phigate(dir.path(), &["audit", "prove", "12"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no entry 12"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn export_verifies_offline_and_a_tampered_or_garbage_export_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let export = dir.path().join("export.jsonl");
    let out = phigate(
        dir.path(),
        &[
            "audit",
            "export",
            "--kind",
            "disclosure",
            "--out",
            export.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&export).unwrap().lines().count(), 4);

    // The auditor holds only the public key, in a different directory.
    let auditor = tempfile::tempdir().unwrap();
    let public = auditor.path().join("phigate.vkey");
    std::fs::copy(
        dir.path().join("audit-keys").join(keys::PUBLIC_KEY_FILE),
        &public,
    )
    .unwrap();
    let args = [
        "audit",
        "verify-export",
        export.to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
    ];
    let out = phigate(auditor.path(), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("export verified: 3 entries"),
        "{}",
        text(&out.stdout)
    );

    let original = std::fs::read_to_string(&export).unwrap();
    std::fs::write(&export, original.replace("Recipient 5", "Recipient 6")).unwrap();
    let out = phigate(auditor.path(), &args);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("line 3") && err.contains("inclusion proof"),
        "{err}"
    );

    for garbage in [
        &b""[..],
        b"\xff\xfe",
        b"{\"type\":\"entry\"}",
        b"[[[[[[[[[[",
        &original.as_bytes()[..200],
    ] {
        std::fs::write(&export, garbage).unwrap();
        let out = phigate(auditor.path(), &args);
        assert_eq!(out.status.code(), Some(1), "garbage accepted");
        assert!(!text(&out.stderr).contains("panicked"));
        assert!(text(&out.stderr).contains("not a valid audit export"));
    }
}

#[test]
fn disclosures_for_a_patient_print_as_json_and_csv_without_echoing_the_id() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let out = phigate(dir.path(), &["audit", "disclosures", "--patient", CANARY]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let records: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let recipients: Vec<&str> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["recipient"].as_str().unwrap())
        .collect();
    assert_eq!(recipients, ["Recipient 1", "Recipient 5", "Recipient 9"]);
    assert_eq!(records[0]["purpose"], "HPAYMT");

    let out = phigate(
        dir.path(),
        &[
            "audit",
            "disclosures",
            "--patient",
            CANARY,
            "--format",
            "csv",
        ],
    );
    assert!(out.status.success());
    let csv = text(&out.stdout);
    assert!(csv.starts_with("date,recipient,purpose,description,audit_index\r\n"));
    assert_eq!(csv.lines().count(), 4);
    assert!(!csv.contains(CANARY) && !text(&out.stderr).contains(CANARY));

    let out = phigate(
        dir.path(),
        &["audit", "disclosures", "--patient", "someone-else"],
    );
    assert_eq!(text(&out.stdout).trim(), "[]");
}

#[test]
fn verify_exits_1_and_names_the_damage_when_the_log_was_tampered() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let db = dir.path().join("audit.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("DROP TRIGGER audit_entries_no_delete")
            .execute(&raw)
            .await
            .unwrap();
        sqlx::query("DELETE FROM audit_entries WHERE idx >= 10")
            .execute(&raw)
            .await
            .unwrap();
        raw.close().await;
    });
    let out = phigate(dir.path(), &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Truncated at index 10"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_usage_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let out = phigate(dir.path(), &["audit", "export", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--since must be an RFC 3339 time"));
    let out = phigate(dir.path(), &["audit", "export", "--kind", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
    let empty = tempfile::tempdir().unwrap();
    let out = phigate(empty.path(), &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("public key"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn signing_needs_the_kek_and_the_key_directory_holds_no_clear_private_key() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let keys = dir.path().join("audit-keys");
    assert!(!keys.join(keys::LEGACY_SIGNING_KEY_FILE).exists());
    assert!(!keys.join(keys::LEGACY_HMAC_KEY_FILE).exists());
    assert_eq!(
        &std::fs::read(keys.join(keys::SIGNING_KEY_FILE)).unwrap()[..4],
        b"PGSL"
    );

    // Without a KEK: signing and patient lookups refuse with exit 2 and say what to set.
    for args in [
        &["audit", "checkpoint"][..],
        &["audit", "disclosures", "--patient", CANARY][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_phigate"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env_remove("PHIGATE_DATABASE_URL")
            .env_remove("PHIGATE_KEK")
            .env_remove("PHIGATE_KEK_FILE")
            .env_remove("PHIGATE_PKCS11_MODULE")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("PHIGATE_KEK"),
            "{}",
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).contains(CANARY));
        assert!(!text(&out.stdout).contains(CANARY));
    }
    // With another KEK: refused with exit 2, nothing signed.
    let out = Command::new(env!("CARGO_BIN_EXE_phigate"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["audit", "checkpoint"])
        .env_remove("PHIGATE_DATABASE_URL")
        .env_remove("PHIGATE_KEK_FILE")
        .env_remove("PHIGATE_PKCS11_MODULE")
        .env(
            "PHIGATE_KEK",
            "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktMzI=",
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("configure the KEK that created them"),
        "{}",
        text(&out.stderr)
    );
    // Verification needs neither the KEK nor the private key.
    let out = Command::new(env!("CARGO_BIN_EXE_phigate"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["audit", "verify"])
        .env_remove("PHIGATE_DATABASE_URL")
        .env_remove("PHIGATE_KEK")
        .env_remove("PHIGATE_KEK_FILE")
        .env_remove("PHIGATE_PKCS11_MODULE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}
