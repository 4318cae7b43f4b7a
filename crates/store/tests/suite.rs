//! The store's behaviour, run once against SQLite and once against PostgreSQL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Harness, ManualClock, provider};
use store::{CACHED_RESPONSE_KIND, StoreError, TtlPolicy};

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::Harness::sqlite().await;
                    super::$name(&h).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::Harness::postgres().await;
                    super::$name(&h).await;
                }
            )*
        }
    };
}

on_both_backends!(
    put_then_get_returns_the_value_and_metadata,
    values_ids_and_patients_are_not_stored_in_clear,
    cached_responses_expire_after_15_minutes_by_default,
    expired_record_is_never_returned_even_before_the_sweeper_runs,
    sweeper_task_purges_expired_records,
    ttl_is_configurable_per_kind,
    invalidation_by_key_kind_patient_and_all,
    ciphertext_moved_to_another_row_does_not_open,
    rotation_rewrap_and_retire_round_trip,
    retiring_a_version_in_use_is_refused_and_changes_nothing,
    wrong_key_is_refused_with_a_clear_error,
    opening_before_init_says_to_run_keys_init,
    concurrent_writers_and_readers_all_succeed,
    backup_restore_round_trip_into_an_empty_store,
    modified_or_truncated_backup_is_rejected_and_changes_nothing,
    restore_never_overwrites_newer_records_without_force,
    newer_schema_version_is_refused,
    list_kind_returns_every_unexpired_record_of_that_kind_once,
    list_kind_pages_walk_every_record_once_whatever_the_page_size,
    list_patient_returns_only_that_patients_unexpired_records_of_the_kind,
    list_patient_refuses_a_row_whose_patient_index_was_moved,
    listing_with_a_bad_page_size_or_kind_is_refused,
);

async fn put_then_get_returns_the_value_and_metadata(h: &Harness) {
    let store = h.store().await;
    store
        .put("patient", "P-1001", Some("P-1001"), b"{\"name\":\"Ada\"}")
        .await
        .unwrap();
    let rec = store
        .get("patient", "P-1001")
        .await
        .unwrap()
        .expect("present");
    assert_eq!(rec.value.expose().as_slice(), b"{\"name\":\"Ada\"}");
    assert_eq!(rec.id.expose(), "P-1001");
    assert_eq!(
        rec.patient.as_ref().map(|p| p.expose().as_str()),
        Some("P-1001")
    );
    assert_eq!(rec.expires_at_ms, None, "kind without TTL does not expire");
    assert!(store.get("patient", "P-1002").await.unwrap().is_none());
    assert!(store.get("other-kind", "P-1001").await.unwrap().is_none());
    store.put("patient", "P-1001", None, b"v2").await.unwrap();
    assert_eq!(
        store
            .get("patient", "P-1001")
            .await
            .unwrap()
            .unwrap()
            .value
            .expose()
            .as_slice(),
        b"v2"
    );
    assert!(
        !format!("{rec:?}").contains("Ada"),
        "Debug of a record hides PHI"
    );
    let bad = store.put("", "x", None, b"").await.unwrap_err();
    assert!(matches!(bad, StoreError::InvalidArgument(_)));
}

async fn values_ids_and_patients_are_not_stored_in_clear(h: &Harness) {
    let store = h.store().await;
    let canary_id = "CANARY-ID-8c1f";
    let canary_patient = "CANARY-PATIENT-77aa";
    let canary_value = b"CANARY-VALUE-0d3e";
    store
        .put(
            CACHED_RESPONSE_KIND,
            canary_id,
            Some(canary_patient),
            canary_value,
        )
        .await
        .unwrap();
    let db = h.database().await;
    drop(db);
    let dump = dump_all_bytes(h).await;
    for canary in [
        canary_id.as_bytes(),
        canary_patient.as_bytes(),
        canary_value.as_slice(),
    ] {
        assert!(
            !dump.windows(canary.len()).any(|w| w == canary),
            "a canary reached the database in clear"
        );
    }
}

async fn dump_all_bytes(h: &Harness) -> Vec<u8> {
    match &h.place {
        common::Place::Sqlite { path, .. } => {
            let mut all = std::fs::read(path).unwrap();
            let wal = path.with_extension("db-wal");
            if let Ok(w) = std::fs::read(wal) {
                all.extend(w);
            }
            all
        }
        common::Place::Postgres { url, schema } => {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
                .await
                .unwrap();
            type Row = (String, Vec<u8>, Option<Vec<u8>>, Vec<u8>);
            let rows: Vec<Row> = sqlx::query_as(&format!(
                "SELECT kind, key_hmac, patient_hmac, sealed FROM {schema}.records"
            ))
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let mut all = Vec::new();
            for (k, a, b, c) in rows {
                all.extend(k.into_bytes());
                all.extend(a);
                all.extend(b.unwrap_or_default());
                all.extend(c);
            }
            all
        }
    }
}

async fn cached_responses_expire_after_15_minutes_by_default(h: &Harness) {
    let clock = ManualClock::new();
    let store = h.store_with(7, TtlPolicy::default(), clock.clone()).await;
    store
        .put(CACHED_RESPONSE_KIND, "/api/patients/1", Some("1"), b"resp")
        .await
        .unwrap();
    let rec = store
        .get(CACHED_RESPONSE_KIND, "/api/patients/1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.expires_at_ms, Some(rec.created_at_ms + 15 * 60 * 1000));
    clock.advance_ms(15 * 60 * 1000 - 1);
    assert!(
        store
            .get(CACHED_RESPONSE_KIND, "/api/patients/1")
            .await
            .unwrap()
            .is_some()
    );
    clock.advance_ms(1);
    assert!(
        store
            .get(CACHED_RESPONSE_KIND, "/api/patients/1")
            .await
            .unwrap()
            .is_none()
    );
}

async fn expired_record_is_never_returned_even_before_the_sweeper_runs(h: &Harness) {
    let clock = ManualClock::new();
    let store = h.store_with(7, TtlPolicy::default(), clock.clone()).await;
    store
        .put_with_ttl("note", "n1", None, b"secret", Some(Duration::from_secs(1)))
        .await
        .unwrap();
    clock.advance_ms(1_000);
    assert!(store.get("note", "n1").await.unwrap().is_none());
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.expired, 1, "still in the table, awaiting the sweeper");
    assert_eq!(stats.live_by_kind.get("note"), None);
}

async fn sweeper_task_purges_expired_records(h: &Harness) {
    let clock = ManualClock::new();
    let store = h.store_with(7, TtlPolicy::default(), clock.clone()).await;
    store
        .put_with_ttl("note", "old", None, b"x", Some(Duration::from_secs(1)))
        .await
        .unwrap();
    store.put("note", "keep", None, b"y").await.unwrap();
    clock.advance_ms(2_000);
    let sweeper = store.spawn_sweeper(Duration::from_millis(20));
    // Wait for the effect, not for a time: poll until the sweeper has run.
    let mut purged = false;
    for _ in 0..500 {
        if store.stats().await.unwrap().expired == 0 {
            purged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sweeper.abort();
    assert!(purged, "sweeper never purged the expired record");
    assert!(store.get("note", "keep").await.unwrap().is_some());
    assert_eq!(store.purge_expired().await.unwrap(), 0);
}

async fn ttl_is_configurable_per_kind(h: &Harness) {
    let clock = ManualClock::new();
    let ttl = TtlPolicy::default()
        .with_kind(CACHED_RESPONSE_KIND, Duration::from_secs(60))
        .with_kind("short", Duration::from_secs(5));
    let store = h.store_with(7, ttl, clock.clone()).await;
    store
        .put(CACHED_RESPONSE_KIND, "a", None, b"1")
        .await
        .unwrap();
    store.put("short", "b", None, b"2").await.unwrap();
    clock.advance_ms(5_000);
    assert!(store.get("short", "b").await.unwrap().is_none());
    assert!(
        store
            .get(CACHED_RESPONSE_KIND, "a")
            .await
            .unwrap()
            .is_some()
    );
    clock.advance_ms(55_000);
    assert!(
        store
            .get(CACHED_RESPONSE_KIND, "a")
            .await
            .unwrap()
            .is_none()
    );
}

async fn invalidation_by_key_kind_patient_and_all(h: &Harness) {
    let store = h.store().await;
    store.put("a", "1", Some("pat-1"), b"x").await.unwrap();
    store.put("a", "2", Some("pat-2"), b"x").await.unwrap();
    store.put("b", "3", Some("pat-1"), b"x").await.unwrap();
    store.put("b", "4", None, b"x").await.unwrap();
    store.put("c", "5", None, b"x").await.unwrap();
    assert!(store.invalidate_key("a", "2").await.unwrap());
    assert!(!store.invalidate_key("a", "2").await.unwrap());
    assert!(store.get("a", "2").await.unwrap().is_none());
    assert_eq!(store.invalidate_patient("pat-1").await.unwrap(), 2);
    assert!(store.get("a", "1").await.unwrap().is_none());
    assert!(store.get("b", "3").await.unwrap().is_none());
    assert!(store.get("b", "4").await.unwrap().is_some());
    assert_eq!(store.invalidate_kind("b").await.unwrap(), 1);
    assert!(store.get("c", "5").await.unwrap().is_some());
    assert_eq!(store.invalidate_all().await.unwrap(), 1);
    assert!(store.stats().await.unwrap().live_by_kind.is_empty());
}

async fn ciphertext_moved_to_another_row_does_not_open(h: &Harness) {
    let store = h.store().await;
    store
        .put("patient", "victim", None, b"victim data")
        .await
        .unwrap();
    store
        .put("patient", "attacker", None, b"attacker data")
        .await
        .unwrap();
    // Copy the victim's ciphertext into the attacker's row, as someone with database access could.
    // Snapshot first so both backends swap the two ciphertexts (SQLite evaluates row by row).
    let sql = "CREATE TEMP TABLE snap AS SELECT key_hmac, sealed FROM records WHERE kind = 'patient';
               UPDATE records SET sealed = (SELECT sealed FROM snap WHERE snap.key_hmac <> records.key_hmac) WHERE kind = 'patient'";
    exec_raw(h, sql).await;
    assert!(store.get("patient", "attacker").await.is_err());
    assert!(store.get("patient", "victim").await.is_err());
    let (ok, bad) = store.verify_all().await.unwrap();
    assert_eq!((ok, bad), (0, 2));
}

async fn exec_raw(h: &Harness, sql: &str) {
    match &h.place {
        common::Place::Sqlite { path, .. } => {
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
                "sqlite://{}",
                path.display()
            ))
            .await
            .unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        }
        common::Place::Postgres { url, schema } => {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
                .await
                .unwrap();
            sqlx::raw_sql(&format!("SET search_path TO {schema}; {sql}"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

async fn rotation_rewrap_and_retire_round_trip(h: &Harness) {
    let store = h.store().await;
    for i in 0..20 {
        store
            .put(
                "k",
                &format!("id-{i}"),
                None,
                format!("value-{i}").as_bytes(),
            )
            .await
            .unwrap();
    }
    assert_eq!(store.rotate_kek().await.unwrap(), 2);
    store.put("k", "new", None, b"new").await.unwrap();
    let status = store.key_status().await.unwrap();
    assert_eq!(
        status.versions[0].wraps, 21,
        "20 records + the index key still under v1"
    );
    assert_eq!(status.versions[1].wraps, 1);
    assert_eq!(store.rewrap_all().await.unwrap(), 21);
    assert_eq!(store.rewrap_all().await.unwrap(), 0, "rewrap is idempotent");
    store.retire_kek(1).await.unwrap();
    for i in 0..20 {
        let rec = store.get("k", &format!("id-{i}")).await.unwrap().unwrap();
        assert_eq!(
            rec.value.expose().as_slice(),
            format!("value-{i}").as_bytes()
        );
    }
    // Reopen from the database: the retired state and the rewrapped index key persist.
    let reopened = h
        .database()
        .await
        .open(provider(7), TtlPolicy::default())
        .await
        .unwrap();
    assert!(reopened.get("k", "id-3").await.unwrap().is_some());
    let status = reopened.key_status().await.unwrap();
    assert_eq!(status.versions[0].state, sealed::KeyState::Retired);
}

async fn retiring_a_version_in_use_is_refused_and_changes_nothing(h: &Harness) {
    let store = h.store().await;
    store.put("k", "a", None, b"a").await.unwrap();
    let err = store.retire_kek(1).await.unwrap_err();
    assert!(err.to_string().contains("active"), "{err}");
    store.rotate_kek().await.unwrap();
    let err = store.retire_kek(1).await.unwrap_err();
    assert!(err.to_string().contains("rewrap"), "{err}");
    assert_eq!(
        store
            .get("k", "a")
            .await
            .unwrap()
            .unwrap()
            .value
            .expose()
            .as_slice(),
        b"a"
    );
    let reopened = h
        .database()
        .await
        .open(provider(7), TtlPolicy::default())
        .await
        .unwrap();
    assert_eq!(
        reopened
            .get("k", "a")
            .await
            .unwrap()
            .unwrap()
            .value
            .expose()
            .as_slice(),
        b"a"
    );
}

async fn wrong_key_is_refused_with_a_clear_error(h: &Harness) {
    let store = h.store().await;
    store.put("k", "a", None, b"a").await.unwrap();
    let err = h
        .database()
        .await
        .open(provider(9), TtlPolicy::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("configure the original key"));
    assert!(
        store.get("k", "a").await.unwrap().is_some(),
        "nothing was changed"
    );
}

async fn opening_before_init_says_to_run_keys_init(h: &Harness) {
    let db = h.database().await;
    let err = db
        .open(provider(7), TtlPolicy::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("phigate keys init"), "{err}");
    db.init_keys(provider(7)).await.unwrap();
    let again = db.init_keys(provider(7)).await.unwrap_err();
    assert!(again.to_string().contains("already initialised"), "{again}");
}

async fn concurrent_writers_and_readers_all_succeed(h: &Harness) {
    let store = h.store().await;
    let mut tasks = Vec::new();
    for t in 0..6 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let id = format!("t{t}-{i}");
                s.put("conc", &id, Some("shared-patient"), id.as_bytes())
                    .await
                    .unwrap();
                let back = s.get("conc", &id).await.unwrap().unwrap();
                assert_eq!(back.value.expose().as_slice(), id.as_bytes());
                // Everyone also hammers one shared key.
                s.put("conc", "shared", None, id.as_bytes()).await.unwrap();
                let _ = s.get("conc", "shared").await.unwrap().unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        store.stats().await.unwrap().live_by_kind.get("conc"),
        Some(&151)
    );
    assert_eq!(store.verify_all().await.unwrap(), (151, 0));
}

async fn backup_restore_round_trip_into_an_empty_store(h: &Harness) {
    let clock = ManualClock::new();
    let store = h.store_with(7, TtlPolicy::default(), clock.clone()).await;
    for i in 0..50 {
        store
            .put(
                "rec",
                &format!("r{i}"),
                Some(&format!("p{}", i % 5)),
                &vec![i as u8; 3000],
            )
            .await
            .unwrap();
    }
    store
        .put_with_ttl(
            "rec",
            "expired",
            None,
            b"gone",
            Some(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    clock.advance_ms(1_000);
    let mut file = Vec::new();
    assert_eq!(store.backup(&mut file).await.unwrap().records, 50);
    assert!(
        !file.windows(3000).any(|w| w == vec![7u8; 3000].as_slice()),
        "backup is encrypted"
    );
    assert_eq!(store.invalidate_all().await.unwrap(), 51);
    let report = store.restore(file.as_slice(), false).await.unwrap();
    assert_eq!(report.restored, 50);
    assert_eq!(
        store
            .get("rec", "r7")
            .await
            .unwrap()
            .unwrap()
            .value
            .expose()
            .as_slice(),
        vec![7u8; 3000].as_slice()
    );
    assert_eq!(
        store.invalidate_patient("p2").await.unwrap(),
        10,
        "patient index rebuilt"
    );
    assert!(store.get("rec", "expired").await.unwrap().is_none());
}

async fn modified_or_truncated_backup_is_rejected_and_changes_nothing(h: &Harness) {
    let store = h.store().await;
    for i in 0..10 {
        store
            .put("rec", &format!("r{i}"), None, &vec![1u8; 10_000])
            .await
            .unwrap();
    }
    let mut file = Vec::new();
    store.backup(&mut file).await.unwrap();
    store.invalidate_all().await.unwrap();
    let mut modified = file.clone();
    let mid = modified.len() / 2;
    modified[mid] ^= 0x20;
    assert!(store.restore(modified.as_slice(), false).await.is_err());
    let truncated = &file[..file.len() - 20];
    let err = store.restore(truncated, false).await.unwrap_err();
    assert!(
        err.to_string().contains("truncated") || err.to_string().contains("authentication"),
        "{err}"
    );
    assert!(store.restore(&file[..file.len() / 3], false).await.is_err());
    assert!(
        store.stats().await.unwrap().live_by_kind.is_empty(),
        "a rejected backup wrote nothing"
    );
    assert_eq!(
        store
            .restore(file.as_slice(), false)
            .await
            .unwrap()
            .restored,
        10
    );
}

async fn restore_never_overwrites_newer_records_without_force(h: &Harness) {
    let clock = ManualClock::new();
    let store = h.store_with(7, TtlPolicy::default(), clock.clone()).await;
    store.put("rec", "a", None, b"old").await.unwrap();
    store.put("rec", "b", None, b"same").await.unwrap();
    let mut file = Vec::new();
    store.backup(&mut file).await.unwrap();
    clock.advance_ms(10);
    store.put("rec", "a", None, b"newer").await.unwrap();
    store.invalidate_key("rec", "b").await.unwrap();
    let report = store.restore(file.as_slice(), false).await.unwrap();
    assert_eq!((report.restored, report.conflicts), (1, 1));
    assert_eq!(
        store
            .get("rec", "a")
            .await
            .unwrap()
            .unwrap()
            .value
            .expose()
            .as_slice(),
        b"newer"
    );
    let again = store.restore(file.as_slice(), false).await.unwrap();
    assert_eq!(
        (again.restored, again.conflicts, again.unchanged),
        (0, 1, 1)
    );
    let forced = store.restore(file.as_slice(), true).await.unwrap();
    assert_eq!(forced.restored, 2);
    assert_eq!(
        store
            .get("rec", "a")
            .await
            .unwrap()
            .unwrap()
            .value
            .expose()
            .as_slice(),
        b"old"
    );
}

async fn newer_schema_version_is_refused(h: &Harness) {
    let store = h.store().await;
    store.put("k", "a", None, b"a").await.unwrap();
    drop(store);
    exec_raw(h, "UPDATE phigate_store_schema SET version = 99").await;
    let err = store::Database::connect(&h.config()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade phigate"));
}

#[tokio::test]
async fn sqlite_file_is_created_private_and_a_readable_one_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let h = Harness::sqlite().await;
    let _store = h.store().await;
    let common::Place::Sqlite { path, .. } = &h.place else {
        unreachable!()
    };
    assert_eq!(
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = store::Database::connect(&h.config())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("chmod 600"), "{err}");
}

#[tokio::test]
async fn corrupt_sqlite_file_gives_a_clear_error_and_is_left_untouched() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let garbage = vec![0x5au8; 8192];
    std::fs::write(&path, &garbage).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = store::Database::connect(&store::BackendConfig::Sqlite { path: path.clone() })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a database"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the corrupt file was not modified"
    );
}

#[tokio::test]
async fn unreachable_postgres_gives_a_clear_error_without_the_password() {
    let err = store::Database::connect(&store::BackendConfig::Postgres {
        url: secrecy::SecretString::from(
            "postgres://user:hunter2-secret@127.0.0.1:1/db".to_string(),
        ),
        schema: None,
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("database error"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[tokio::test]
async fn store_debug_output_names_no_secrets() {
    let h = Harness::sqlite().await;
    let store = h.store().await;
    let shown = format!("{store:?}");
    assert!(
        shown.contains("sqlite") && !shown.contains("material"),
        "{shown}"
    );
    let _ = Arc::new(store);
}

fn ids_of(records: &[store::Record]) -> Vec<String> {
    let mut ids: Vec<String> = records.iter().map(|r| r.id.expose().clone()).collect();
    ids.sort();
    ids
}

async fn list_kind_returns_every_unexpired_record_of_that_kind_once(h: &Harness) {
    let clock = ManualClock::new();
    let store = h.store_with(7, TtlPolicy::default(), clock.clone()).await;
    for i in 0..5 {
        let id = format!("vital-{i}");
        store
            .put("ehr.vital_sign", &id, Some("pat-1"), id.as_bytes())
            .await
            .unwrap();
    }
    store
        .put("ehr.patient", "pat-1", Some("pat-1"), b"{}")
        .await
        .unwrap();
    store
        .put_with_ttl(
            "ehr.vital_sign",
            "short-lived",
            Some("pat-1"),
            b"x",
            Some(Duration::from_secs(10)),
        )
        .await
        .unwrap();
    let all = store.list_kind("ehr.vital_sign").await.unwrap();
    assert_eq!(all.len(), 6);
    clock.advance_ms(10_000);
    let all = store.list_kind("ehr.vital_sign").await.unwrap();
    assert_eq!(
        ids_of(&all),
        (0..5).map(|i| format!("vital-{i}")).collect::<Vec<_>>(),
        "the expired record is gone, other kinds are not listed"
    );
    for r in &all {
        assert_eq!(r.kind, "ehr.vital_sign");
        assert_eq!(r.value.expose().as_slice(), r.id.expose().as_bytes());
        assert_eq!(r.patient.as_ref().unwrap().expose(), "pat-1");
        assert_eq!(r.expires_at_ms, None);
    }
    assert!(store.list_kind("nothing.here").await.unwrap().is_empty());
}

async fn list_kind_pages_walk_every_record_once_whatever_the_page_size(h: &Harness) {
    let store = h.store().await;
    let n = 23;
    for i in 0..n {
        store
            .put("ehr.diagnosis", &format!("dx-{i:02}"), None, b"v")
            .await
            .unwrap();
    }
    for limit in [1u32, 5, 22, 23, 24, store::MAX_LIST_PAGE] {
        let mut seen = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let page = store
                .list_kind_page("ehr.diagnosis", cursor.as_ref(), limit)
                .await
                .unwrap();
            assert!(page.records.len() <= limit as usize);
            pages += 1;
            seen.extend(page.records);
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(
            ids_of(&seen),
            (0..n).map(|i| format!("dx-{i:02}")).collect::<Vec<_>>(),
            "page size {limit}"
        );
        assert!(pages >= n.div_ceil(limit as usize), "page size {limit}");
    }
}

async fn list_patient_returns_only_that_patients_unexpired_records_of_the_kind(h: &Harness) {
    let clock = ManualClock::new();
    let store = h.store_with(7, TtlPolicy::default(), clock.clone()).await;
    store
        .put("ehr.vital_sign", "v1", Some("pat-1"), b"1")
        .await
        .unwrap();
    store
        .put("ehr.vital_sign", "v2", Some("pat-1"), b"2")
        .await
        .unwrap();
    store
        .put("ehr.vital_sign", "v3", Some("pat-2"), b"3")
        .await
        .unwrap();
    store
        .put("ehr.diagnosis", "d1", Some("pat-1"), b"4")
        .await
        .unwrap();
    store.put("ehr.vital_sign", "v4", None, b"5").await.unwrap();
    store
        .put_with_ttl(
            "ehr.vital_sign",
            "v5",
            Some("pat-1"),
            b"6",
            Some(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    clock.advance_ms(1_000);
    let mine = store.list_patient("pat-1", "ehr.vital_sign").await.unwrap();
    assert_eq!(ids_of(&mine), ["v1", "v2"]);
    let theirs = store.list_patient("pat-2", "ehr.vital_sign").await.unwrap();
    assert_eq!(ids_of(&theirs), ["v3"]);
    assert_eq!(
        ids_of(&store.list_patient("pat-1", "ehr.diagnosis").await.unwrap()),
        ["d1"]
    );
    assert!(
        store
            .list_patient("pat-3", "ehr.vital_sign")
            .await
            .unwrap()
            .is_empty()
    );
    store.invalidate_patient("pat-1").await.unwrap();
    assert!(
        store
            .list_patient("pat-1", "ehr.vital_sign")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.list_kind("ehr.vital_sign").await.unwrap().len(), 2);
}

async fn list_patient_refuses_a_row_whose_patient_index_was_moved(h: &Harness) {
    let store = h.store().await;
    store
        .put(
            "ehr.vital_sign",
            "victim-vital",
            Some("victim"),
            b"victim data",
        )
        .await
        .unwrap();
    store
        .put(
            "ehr.vital_sign",
            "other-vital",
            Some("other"),
            b"other data",
        )
        .await
        .unwrap();
    // Someone with database access points the victim's row at the other patient's index.
    let sql = "CREATE TEMP TABLE snap AS SELECT key_hmac, patient_hmac FROM records WHERE kind = 'ehr.vital_sign';
               UPDATE records SET patient_hmac = (SELECT patient_hmac FROM snap WHERE snap.key_hmac <> records.key_hmac) WHERE kind = 'ehr.vital_sign'";
    exec_raw(h, sql).await;
    let err = store
        .list_patient("other", "ehr.vital_sign")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(!err.to_string().contains("victim"));
}

async fn listing_with_a_bad_page_size_or_kind_is_refused(h: &Harness) {
    let store = h.store().await;
    for limit in [0, store::MAX_LIST_PAGE + 1] {
        let err = store.list_kind_page("k", None, limit).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidArgument(_)));
    }
    assert!(matches!(
        store.list_kind("").await.unwrap_err(),
        StoreError::InvalidArgument(_)
    ));
    assert!(matches!(
        store.list_patient("p", "has space").await.unwrap_err(),
        StoreError::InvalidArgument(_)
    ));
}
