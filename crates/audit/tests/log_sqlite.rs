//! Behaviour of the SQLite-backed log: durability, numbering, queries, proofs, exports,
//! accounting of disclosures, schema versions, triggers and key handling.

mod common;

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use audit::*;
use common::*;

const NEVER: Duration = Duration::from_secs(3600);

#[test]
fn concurrent_appends_get_distinct_gapless_indexes_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    runtime().block_on(async {
        let log = AuditLog::open(sqlite_config(dir.path(), NEVER), keys.clone())
            .await
            .unwrap();
        let mut handles = Vec::new();
        for n in 0..200u64 {
            let log = log.clone();
            let ev = phi_read(keys.as_ref(), "user:alice", "P-1", n);
            handles.push(tokio::spawn(async move { log.append(ev).await.unwrap() }));
        }
        let mut indexes = Vec::new();
        for h in handles {
            indexes.push(h.await.unwrap());
        }
        indexes.sort_unstable();
        assert_eq!(indexes, (0..200).collect::<Vec<_>>());
        log.close().await;

        let reopened = AuditLog::open_read_only(&Storage::Sqlite {
            path: dir.path().join("audit.db"),
        })
        .await
        .unwrap();
        assert_eq!(reopened.tree_head().await.unwrap().0, 200);
        let report = verify_log(&reopened, &keys.note_verifier()).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.entries, 200);
    });
}

#[test]
fn every_event_kind_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    runtime().block_on(async {
        let log = AuditLog::open(sqlite_config(dir.path(), NEVER), keys.clone())
            .await
            .unwrap();
        let events = every_kind(keys.as_ref());
        for ev in &events {
            log.append(ev.clone()).await.unwrap();
        }
        let stored: Vec<Event> = log
            .query(&QueryFilter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|(e, _)| e.event)
            .collect();
        assert_eq!(stored, events);
        let kinds: Vec<&str> = stored.iter().map(Event::kind).collect();
        assert_eq!(kinds, EVENT_KINDS);
    });
}

#[test]
fn config_change_secrets_are_replaced_by_keyed_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let Event::ConfigChange(change) = &every_kind(keys.as_ref())[4] else {
        panic!("fixture order")
    };
    let before = change.before.to_string();
    assert!(!before.contains("old-secret"));
    assert_eq!(
        change.before["secret_key"],
        keys.keyed_hash(b"old-secret").as_str()
    );
    assert_eq!(change.before["timeout_s"], 30);
    assert_ne!(change.before["secret_key"], change.after["secret_key"]);
}

#[test]
fn patient_identifiers_never_reach_the_database_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let canary = "MRN-CANARY-77881234";
    runtime().block_on(async {
        let log = AuditLog::open(sqlite_config(dir.path(), Duration::ZERO), keys.clone())
            .await
            .unwrap();
        log.append(phi_read(keys.as_ref(), "user:alice", canary, 1))
            .await
            .unwrap();
        log.append(disclosure(keys.as_ref(), canary, "Payer Inc"))
            .await
            .unwrap();
        let found = log
            .query(&QueryFilter {
                patient: keys.keyed_hashes_all_keys(canary.as_bytes()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(found.len(), 2);
        log.close().await;
    });
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "{} holds the identifier in clear",
                path.display()
            );
        }
    }
}

#[test]
fn queries_filter_by_time_kind_principal_and_patient() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    runtime().block_on(async {
        let log = AuditLog::open(sqlite_config(dir.path(), NEVER), keys.clone())
            .await
            .unwrap();
        for ev in every_kind(keys.as_ref()) {
            log.append(ev).await.unwrap();
        }
        let middle = chrono::Utc::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        log.append(phi_read(keys.as_ref(), "user:carol", "P-3003", 9))
            .await
            .unwrap();

        let q = |f: QueryFilter| {
            let log = log.clone();
            async move {
                log.query(&f)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(e, _)| e.index)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            q(QueryFilter {
                kind: Some("phi_access".into()),
                ..Default::default()
            })
            .await,
            vec![1, 8]
        );
        assert_eq!(
            q(QueryFilter {
                principal: Some("admin:ops".into()),
                ..Default::default()
            })
            .await,
            vec![4, 5]
        );
        let p1001 = keys.keyed_hashes_all_keys(b"P-1001");
        assert_eq!(
            q(QueryFilter {
                patient: p1001.clone(),
                ..Default::default()
            })
            .await,
            vec![1, 2, 3, 7]
        );
        assert_eq!(
            q(QueryFilter {
                patient: p1001,
                kind: Some("disclosure".into()),
                ..Default::default()
            })
            .await,
            vec![2]
        );
        assert_eq!(
            q(QueryFilter {
                since: Some(middle),
                ..Default::default()
            })
            .await,
            vec![8]
        );
        assert_eq!(
            q(QueryFilter {
                until: Some(middle),
                limit: Some(3),
                ..Default::default()
            })
            .await,
            vec![0, 1, 2]
        );
    });
}

#[test]
fn proofs_verify_against_the_signed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    runtime().block_on(async {
        let log = AuditLog::open(sqlite_config(dir.path(), NEVER), keys.clone())
            .await
            .unwrap();
        for n in 0..13 {
            log.append(phi_read(keys.as_ref(), "user:alice", "P-1", n))
                .await
                .unwrap();
        }
        let old_note = log.checkpoint_now().await.unwrap();
        for n in 13..37 {
            log.append(phi_read(keys.as_ref(), "user:alice", "P-1", n))
                .await
                .unwrap();
        }
        let note = log.checkpoint_now().await.unwrap();
        let verifier = keys.note_verifier();
        let old = Checkpoint::parse_and_verify(&old_note, &verifier).unwrap();
        let new = Checkpoint::parse_and_verify(&note, &verifier).unwrap();
        assert_eq!((old.size, new.size), (13, 37));
        assert_eq!(new.origin, "phigate-audit/test");

        for index in [0, 12, 36] {
            let proof = log.inclusion_proof(index, new.size).await.unwrap();
            assert_eq!(proof.root, new.root);
            merkle::verify_inclusion(&proof.leaf_hash, index, new.size, &proof.path, &new.root)
                .unwrap();
        }
        let (proof, r1, r2) = log.consistency_proof(13, 37).await.unwrap();
        assert_eq!((r1, r2), (old.root, new.root));
        merkle::verify_consistency(13, 37, &old.root, &new.root, &proof).unwrap();
        assert!(matches!(
            log.inclusion_proof(37, 37).await,
            Err(AuditError::OutOfRange(_))
        ));
        assert!(matches!(
            log.consistency_proof(38, 40).await,
            Err(AuditError::OutOfRange(_))
        ));
    });
}

#[test]
fn checkpoint_with_altered_text_or_wrong_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let other =
        FileKeys::open_or_create(&dir.path().join("other"), "phigate-audit-test", kek()).unwrap();
    let cp = Checkpoint {
        origin: "phigate-audit/x".into(),
        size: 5,
        root: [7; 32],
        timestamp: chrono::Utc::now(),
    };
    let note = cp.sign(keys.as_ref()).unwrap();
    let verifier = keys.note_verifier();
    assert_eq!(
        Checkpoint::parse_and_verify(&note, &verifier).unwrap().size,
        5
    );
    let altered = note.replacen("\n5\n", "\n6\n", 1);
    assert!(matches!(
        Checkpoint::parse_and_verify(&altered, &verifier),
        Err(CheckpointError::BadSignature(_))
    ));
    assert!(matches!(
        Checkpoint::parse_and_verify(&note, &other.note_verifier()),
        Err(CheckpointError::NoSignatureByKey(_)) | Err(CheckpointError::BadSignature(_))
    ));
    for garbage in [
        "",
        "\n\n",
        "origin\n5\n",
        "o\n05\nAAAA\n\n— k AAAA\n",
        &note[..note.len() - 1],
    ] {
        assert!(
            Checkpoint::parse_and_verify(garbage, &verifier).is_err(),
            "{garbage:?}"
        );
    }
    // The published verifier key string round-trips.
    assert_eq!(
        NoteVerifier::parse(&verifier.to_string()).unwrap(),
        verifier
    );
    assert!(NoteVerifier::parse("phigate-audit-test+00000000+AAAA").is_err());
}

async fn exported(log: &AuditLog, filter: &QueryFilter) -> String {
    let mut out = Vec::new();
    export(log, filter, &mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn export_verifies_offline_with_only_the_public_key_and_any_change_fails() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    runtime().block_on(async {
        let log = AuditLog::open(sqlite_config(dir.path(), NEVER), keys.clone())
            .await
            .unwrap();
        for ev in every_kind(keys.as_ref()) {
            log.append(ev).await.unwrap();
        }
        let text = exported(
            &log,
            &QueryFilter {
                patient: keys.keyed_hashes_all_keys(b"P-1001"),
                ..Default::default()
            },
        )
        .await;
        let public = NoteVerifier::parse(
            &std::fs::read_to_string(dir.path().join("keys").join(audit::keys::PUBLIC_KEY_FILE))
                .unwrap(),
        )
        .unwrap();
        let summary = verify_export(&mut Cursor::new(text.as_bytes()), &public).unwrap();
        assert_eq!((summary.entries, summary.tree_size), (4, 8));

        let tampered = text.replacen("County Health Department", "County Health Departmen", 1);
        let err = verify_export(&mut Cursor::new(tampered.as_bytes()), &public).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.reason.contains("inclusion proof"), "{err}");

        let lines: Vec<&str> = text.lines().collect();
        let dropped_proof = text.replacen(
            lines[1],
            &lines[1].replace("\"proof\":[\"", "\"proof\":[\"A"),
            1,
        );
        assert!(verify_export(&mut Cursor::new(dropped_proof.as_bytes()), &public).is_err());
        let reordered = [lines[0], lines[2], lines[1]].join("\n");
        assert!(verify_export(&mut Cursor::new(reordered.as_bytes()), &public).is_err());
        let no_checkpoint = lines[1..].join("\n");
        assert_eq!(
            verify_export(&mut Cursor::new(no_checkpoint.as_bytes()), &public)
                .unwrap_err()
                .line,
            1
        );
        for garbage in [
            "",
            "{}",
            "not json",
            "{\"type\":\"checkpoint\",\"note\":\"x\"}",
            "\u{0}\u{1}",
        ] {
            assert!(
                verify_export(&mut Cursor::new(garbage.as_bytes()), &public).is_err(),
                "{garbage:?}"
            );
        }
    });
}

#[test]
fn accounting_of_disclosures_lists_only_that_patients_disclosures() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    runtime().block_on(async {
        let log = AuditLog::open(sqlite_config(dir.path(), NEVER), keys.clone())
            .await
            .unwrap();
        for ev in every_kind(keys.as_ref()) {
            log.append(ev).await.unwrap();
        }
        log.append(disclosure(keys.as_ref(), "P-2002", "Other Clinic"))
            .await
            .unwrap();
        log.append(disclosure(
            keys.as_ref(),
            "P-1001",
            "=HYPERLINK(\"x\"), Inc",
        ))
        .await
        .unwrap();
        let records = disclosures(&log, keys.keyed_hashes_all_keys(b"P-1001"))
            .await
            .unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].recipient, "County Health Department");
        assert_eq!(records[0].purpose, PurposeOfUse::Pubhlth);
        assert_eq!(records[0].description, "immunization history, lab results");
        assert_eq!(records[0].audit_index, 2);
        let json = serde_json::to_value(&records).unwrap();
        assert_eq!(json[0]["purpose"], "PUBHLTH");
        let mut csv = Vec::new();
        disclosures_csv(&records, &mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines[0], "date,recipient,purpose,description,audit_index");
        assert!(lines[1].ends_with(
            ",County Health Department,PUBHLTH,\"immunization history, lab results\",2"
        ));
        assert!(
            lines[2].contains(",\"'=HYPERLINK(\"\"x\"\"), Inc\","),
            "{}",
            lines[2]
        );
        assert!(
            disclosures(&log, keys.keyed_hashes_all_keys(b"P-9999"))
                .await
                .unwrap()
                .is_empty()
        );
    });
}

#[test]
fn database_from_a_newer_schema_version_is_refused_and_not_modified() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let path = dir.path().join("audit.db");
    runtime().block_on(async {
        let log = AuditLog::open(sqlite_config(dir.path(), NEVER), keys.clone())
            .await
            .unwrap();
        log.append(phi_read(keys.as_ref(), "user:a", "P", 1))
            .await
            .unwrap();
        log.close().await;
        let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE audit_meta SET value = '3' WHERE key = 'schema_version'")
            .execute(&raw)
            .await
            .unwrap();
        raw.close().await;
    });
    let before = std::fs::read(&path).unwrap();
    runtime().block_on(async {
        let err = AuditLog::open(sqlite_config(dir.path(), NEVER), keys.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::NewerSchema {
                    found: 3,
                    supported: 2
                }
            ),
            "{err}"
        );
        let err = AuditLog::open_read_only(&Storage::Sqlite { path: path.clone() })
            .await
            .unwrap_err();
        assert!(matches!(err, AuditError::NewerSchema { .. }));
    });
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn updates_and_deletes_of_entries_and_checkpoints_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let path = dir.path().join("audit.db");
    runtime().block_on(async {
        let log = AuditLog::open(sqlite_config(dir.path(), Duration::ZERO), keys.clone())
            .await
            .unwrap();
        log.append(phi_read(keys.as_ref(), "user:a", "P", 1))
            .await
            .unwrap();
        // Row triggers fire only on rows: copy the search columns now.
        assert_eq!(log.catch_up_search().await.unwrap(), 1);
        let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        for sql in [
            "UPDATE audit_entries SET leaf = x'00'",
            "DELETE FROM audit_entries",
            "UPDATE audit_search SET principal = 'x'",
            "DELETE FROM audit_search",
            "UPDATE audit_checkpoints SET note = 'x'",
            "DELETE FROM audit_checkpoints",
            "DELETE FROM audit_tree_head",
        ] {
            let err = sqlx::query(sql).execute(&raw).await.unwrap_err();
            assert!(
                err.to_string().contains("append-only")
                    || err.to_string().contains("cannot be deleted"),
                "{sql}: {err}"
            );
        }
        assert!(
            verify_log(&log, &keys.note_verifier())
                .await
                .unwrap()
                .is_intact()
        );
    });
}

#[test]
fn when_the_log_cannot_be_written_every_caller_in_the_batch_gets_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let path = dir.path().join("audit.db");
    runtime().block_on(async {
        let log = AuditLog::open(sqlite_config(dir.path(), NEVER), keys.clone())
            .await
            .unwrap();
        log.append(phi_read(keys.as_ref(), "user:a", "P", 1))
            .await
            .unwrap();
        let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("DROP TABLE audit_entries")
            .execute(&raw)
            .await
            .unwrap();
        let mut handles = Vec::new();
        for n in 0..20 {
            let log = log.clone();
            let ev = phi_read(keys.as_ref(), "user:a", "P", n);
            handles.push(tokio::spawn(async move { log.append(ev).await }));
        }
        for h in handles {
            assert!(matches!(h.await.unwrap(), Err(AuditError::WriteFailed(_))));
        }
        let (size, _) = log.tree_head().await.unwrap();
        assert_eq!(size, 1, "a failed batch must not advance the tree head");
    });
}

#[test]
fn fractional_numbers_in_config_are_refused_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    runtime().block_on(async {
        let log = AuditLog::open(sqlite_config(dir.path(), NEVER), keys.clone())
            .await
            .unwrap();
        let ev = Event::ConfigChange(ConfigChange::new(
            "admin:ops",
            "rate",
            serde_json::json!({"rps": 1.5}),
            serde_json::json!({"rps": 2}),
            keys.as_ref(),
        ));
        assert!(matches!(
            log.append(ev).await,
            Err(AuditError::InvalidEntry(_))
        ));
        assert_eq!(log.tree_head().await.unwrap().0, 0);
    });
}

#[test]
fn key_files_readable_by_others_are_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let _ = keys(dir.path());
    let key_file = dir.path().join("keys").join(audit::keys::HMAC_KEY_FILE);
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = FileKeys::open_or_create(&dir.path().join("keys"), "phigate-audit-test", kek())
        .unwrap_err();
    assert!(matches!(err, KeyError::InsecurePermissions { .. }), "{err}");
}

#[test]
fn database_file_is_created_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    runtime().block_on(async {
        let log = AuditLog::open(sqlite_config(dir.path(), NEVER), keys.clone())
            .await
            .unwrap();
        log.close().await;
    });
    let mode = std::fs::metadata(dir.path().join("audit.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(audit::RETENTION_YEARS, 7);
    let _ = Arc::clone(&keys);
}

#[test]
fn after_an_hmac_key_rotation_a_patient_is_still_found_under_old_and_new_keys() {
    let dir = tempfile::tempdir().unwrap();
    let first = keys(dir.path());
    runtime().block_on(async {
        let log = AuditLog::open(sqlite_config(dir.path(), NEVER), first.clone())
            .await
            .unwrap();
        log.append(phi_read(first.as_ref(), "user:a", "P-42", 1))
            .await
            .unwrap();
        log.close().await;
    });
    // Rotate: a new current key is added (sealed); the old one stays for matching.
    let rotated = Arc::new(
        FileKeys::rotate_hmac_key(&dir.path().join("keys"), "phigate-audit-test", kek(), "k2")
            .unwrap(),
    );
    assert_eq!(rotated.note_verifier(), first.note_verifier());
    let new_ref = patient(rotated.as_ref(), "P-42");
    assert!(new_ref.as_str().starts_with("hmac-sha256:k2:"));
    assert_ne!(new_ref, patient(first.as_ref(), "P-42"));
    runtime().block_on(async {
        let log = AuditLog::open(sqlite_config(dir.path(), NEVER), rotated.clone())
            .await
            .unwrap();
        log.append(phi_read(rotated.as_ref(), "user:a", "P-42", 2))
            .await
            .unwrap();
        let all = rotated.keyed_hashes_all_keys(b"P-42");
        assert_eq!(all.len(), 2);
        let found = log
            .query(&QueryFilter {
                patient: all,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            found.iter().map(|(e, _)| e.index).collect::<Vec<_>>(),
            vec![0, 1]
        );
    });
}

#[test]
fn opening_a_missing_log_read_only_says_so_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let err = runtime()
        .block_on(AuditLog::open_read_only(&Storage::Sqlite {
            path: path.clone(),
        }))
        .unwrap_err();
    assert!(matches!(err, AuditError::NotFound(_)), "{err}");
    assert!(!path.exists());
}
