//! `phigate sync` end to end, against the Kipu simulator running in the test process on a
//! loopback port: the binary pulls it into a SQLite store, and the test reads the store back
//! through the `store` library with the same key and compares it with what the simulator
//! serves.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use kipu::endpoints;
use kipu::{ApiVersion, ClientConfig, Credentials, WriteBody, WriteOptions};
use phi::Sensitive;
use sealed::{KeyProvider, SoftwareKeyProvider};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use store::{BackendConfig, Database, Store, TtlPolicy};

const KEK: &str = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=";

/// (store kind, endpoint, id field, patient field, per patient)
const RESOURCES: [(&str, &str, &str, &str, bool); 7] = [
    (
        "ehr.patient",
        "get_patients_census",
        "casefile_id",
        "casefile_id",
        false,
    ),
    (
        "ehr.admission",
        "get_patients_admissions",
        "casefile_id",
        "casefile_id",
        false,
    ),
    (
        "ehr.care_team",
        "get_patients_care_teams",
        "patient_id",
        "patient_id",
        false,
    ),
    (
        "ehr.diagnosis",
        "get_patient_diagnosis_history",
        "id",
        "patient_id",
        true,
    ),
    (
        "ehr.appointment",
        "get_scheduler_appointments",
        "id",
        "patient_id",
        false,
    ),
    (
        "ehr.vital_sign",
        "get_vital_signs",
        "id",
        "patient_id",
        false,
    ),
    (
        "ehr.evaluation",
        "get_patient_evaluations",
        "id",
        "patient_id",
        false,
    ),
];

/// id -> (patient, record)
type Contents = BTreeMap<String, (String, Value)>;

struct Sim {
    rt: tokio::runtime::Runtime,
    sim: Option<kipu_sim::RunningSim>,
}

impl Sim {
    fn start(patients: u64) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sim = rt
            .block_on(kipu_sim::spawn(kipu_sim::SimConfig {
                patients,
                ..kipu_sim::SimConfig::default()
            }))
            .unwrap();
        Self { rt, sim: Some(sim) }
    }

    fn running(&self) -> &kipu_sim::RunningSim {
        self.sim.as_ref().unwrap()
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let (access_id, secret, app_id) = self.running().credentials();
        vec![
            ("KIPU_ACCESS_ID", access_id),
            ("KIPU_SECRET_KEY", secret.expose_secret().to_string()),
            ("KIPU_APP_ID", app_id),
            ("KIPU_BASE_URL", self.running().base_url()),
        ]
    }

    fn client(&self) -> kipu::Client {
        let (access_id, secret, app_id) = self.running().credentials();
        let config =
            ClientConfig::builder(Credentials::new(access_id, secret, app_id, ApiVersion::V3))
                .base_url(self.running().base_url())
                .build()
                .unwrap();
        kipu::Client::new(config).unwrap()
    }

    /// What the simulator serves now, per store kind.
    fn expected(&self) -> BTreeMap<&'static str, Contents> {
        let client = self.client();
        self.rt.block_on(async {
            let list = |name: &str, ids: Vec<String>| {
                let client = client.clone();
                let endpoint = endpoints::find(name).unwrap();
                async move {
                    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                    client
                        .raw_list(endpoint, &ids, &[])
                        .per(1000)
                        .collect_all()
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|r| r.0.into_inner())
                        .collect::<Vec<_>>()
                }
            };
            let census = list("get_patients_census", vec![]).await;
            let patients: Vec<String> = census
                .iter()
                .map(|p| p["casefile_id"].as_str().unwrap().to_string())
                .collect();
            let mut out = BTreeMap::new();
            for (kind, endpoint, id_field, patient_field, per_patient) in RESOURCES {
                let records = if per_patient {
                    let mut all = Vec::new();
                    for p in &patients {
                        all.extend(list(endpoint, vec![p.clone()]).await);
                    }
                    all
                } else {
                    list(endpoint, vec![]).await
                };
                let mut contents = Contents::new();
                for r in records {
                    let id = match &r[id_field] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let patient = r[patient_field].as_str().unwrap().to_string();
                    contents.insert(id, (patient, Value::Object(r)));
                }
                out.insert(kind, contents);
            }
            out
        })
    }

    fn vault(&self) -> BTreeSet<String> {
        let client = self.client();
        self.rt.block_on(async {
            client
                .raw_list(endpoints::find("get_vaults_patients").unwrap(), &[], &[])
                .per(1000)
                .collect_all()
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.0.expose()["casefile_id"].as_str().unwrap().to_string())
                .collect()
        })
    }

    fn write(&self, name: &str, ids: &[&str], data: Value) -> Value {
        let client = self.client();
        self.rt.block_on(async {
            client
                .request(
                    endpoints::find(name).unwrap(),
                    ids,
                    &[],
                    Some(WriteBody::Json(Sensitive::new(data))),
                    WriteOptions::default(),
                )
                .await
                .unwrap()
                .into_inner()
        })
    }

    fn canaries(&self) -> Vec<String> {
        self.running().canaries()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(sim) = self.sim.take() {
            self.rt.block_on(sim.shutdown());
        }
    }
}

fn command(data: &Path, env: &[(&'static str, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phigate"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PHIGATE_DATA_DIR", data)
        .env("PHIGATE_KEK", KEK)
        .env("PHIGATE_LOG", "trace")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn phigate(data: &Path, env: &[(&'static str, String)], args: &[&str]) -> Output {
    command(data, env, args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn init_keys(data: &Path) {
    let o = phigate(data, &[], &["keys", "init"]);
    assert!(o.status.success(), "keys init: {}", text(&o));
}

/// Runs `phigate sync --once --json` and returns its report.
fn sync(data: &Path, sim: &Sim, extra: &[&str]) -> (Value, Output) {
    let mut args = vec!["sync", "--once", "--json"];
    args.extend_from_slice(extra);
    let o = phigate(data, &sim.env(), &args);
    assert!(o.status.success(), "sync failed: {}", text(&o));
    let report: Value = serde_json::from_slice(&o.stdout).expect("one JSON report on stdout");
    (report, o)
}

fn resource<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == name)
        .unwrap_or_else(|| panic!("no report for {name}"))
}

fn provider() -> Arc<dyn KeyProvider> {
    Arc::new(SoftwareKeyProvider::from_base64(&SecretString::from(KEK)).unwrap())
}

fn open_store(rt: &tokio::runtime::Runtime, data: &Path) -> Store {
    rt.block_on(async {
        Database::connect(&BackendConfig::Sqlite {
            path: data.join("store.db"),
        })
        .await
        .unwrap()
        .open(provider(), TtlPolicy::default())
        .await
        .unwrap()
    })
}

/// Every synced kind as the store holds it, plus the tombstoned patients.
fn stored(sim: &Sim, data: &Path) -> (BTreeMap<&'static str, Contents>, BTreeSet<String>) {
    let store = open_store(&sim.rt, data);
    sim.rt.block_on(async {
        let mut out = BTreeMap::new();
        for (kind, ..) in RESOURCES {
            let mut contents = Contents::new();
            for r in store.list_kind(kind).await.unwrap() {
                assert_eq!(r.expires_at_ms, None, "synced records never expire");
                let value: Value = serde_json::from_slice(r.value.expose()).unwrap();
                let patient = r.patient.expect("synced records name their patient");
                let previous = contents.insert(r.id.into_inner(), (patient.into_inner(), value));
                assert!(previous.is_none());
            }
            out.insert(kind, contents);
        }
        let tombstones = store
            .list_kind("ehr.tombstone")
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                assert!(
                    r.patient.is_none(),
                    "a tombstone is not purged with its patient"
                );
                r.id.into_inner()
            })
            .collect();
        (out, tombstones)
    })
}

fn assert_no_canary(haystack: &[u8], canaries: &[String], what: &str) {
    for c in canaries {
        assert!(
            !haystack.windows(c.len()).any(|w| w == c.as_bytes()),
            "a canary appears in {what}"
        );
    }
}

fn store_file_bytes(data: &Path) -> Vec<u8> {
    let mut all = std::fs::read(data.join("store.db")).unwrap();
    for extra in ["store.db-wal", "store.db-shm"] {
        if let Ok(b) = std::fs::read(data.join(extra)) {
            all.extend(b);
        }
    }
    all
}

#[test]
fn sync_once_stores_every_patient_and_resource_and_leaks_no_canary() {
    let sim = Sim::start(40);
    let dir = tempfile::tempdir().unwrap();
    init_keys(dir.path());
    let (report, output) = sync(dir.path(), &sim, &[]);

    let expected = sim.expected();
    let (actual, tombstones) = stored(&sim, dir.path());
    assert_eq!(expected["ehr.patient"].len(), 40);
    for (kind, contents) in &expected {
        assert!(!contents.is_empty(), "{kind} has records to sync");
        assert_eq!(
            &actual[kind], contents,
            "{kind} holds exactly what the EHR serves"
        );
    }
    let vault = sim.vault();
    assert!(!vault.is_empty());
    assert_eq!(
        tombstones, vault,
        "every soft-deleted patient has a tombstone"
    );
    for patient in &vault {
        for contents in actual.values() {
            assert!(contents.values().all(|(p, _)| p != patient));
        }
    }
    for (kind, _, _, _, _) in RESOURCES {
        let name = kind.trim_start_matches("ehr.");
        let r = report["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == kind)
            .unwrap();
        assert_eq!(r["mode"], "full", "{name}: the first run reads everything");
        assert_eq!(r["new"].as_u64().unwrap(), expected[kind].len() as u64);
        assert_eq!(r["updated"], 0);
        assert_eq!(r["invalid"], 0);
        assert_eq!(r["swept"], true);
        assert!(r["error"].is_null());
    }
    assert_eq!(report["tombstones"].as_u64().unwrap(), vault.len() as u64);

    let canaries = sim.canaries();
    assert!(canaries.len() >= 200);
    assert_no_canary(&output.stdout, &canaries, "sync's stdout");
    assert_no_canary(&output.stderr, &canaries, "sync's trace-level log");
    assert!(
        !output.stderr.is_empty(),
        "the trace log was produced, so the canary check saw it"
    );
    assert_no_canary(&store_file_bytes(dir.path()), &canaries, "the SQLite files");
}

#[test]
fn second_sync_pulls_exactly_the_writes_and_purges_soft_deleted_patients() {
    let sim = Sim::start(40);
    let dir = tempfile::tempdir().unwrap();
    init_keys(dir.path());
    sync(dir.path(), &sim, &[]);
    let before = sim.expected();
    let patients: Vec<String> = before["ehr.patient"].keys().cloned().collect();

    // Writes through the API, as a clinician would make them in the EHR.
    let new_canaries = vec![
        "Qxrenamed".to_string(),
        "Qxcreated".to_string(),
        "Zvvitalcomment".to_string(),
        "Zvevalnote".to_string(),
    ];
    sim.write(
        "update_patient",
        &[&patients[0]],
        json!({"first_name": "Qxrenamed"}),
    );
    sim.write(
        "create_patient",
        &[],
        json!({"first_name": "Ada", "last_name": "Qxcreated"}),
    );
    sim.write(
        "create_patient_vital_signs",
        &[&patients[1]],
        json!({"heart_rate": 77, "comments": "Zvvitalcomment"}),
    );
    sim.write(
        "create_patient_evaluation",
        &[&patients[1]],
        json!({"name": "Daily check-in", "evaluation_content": "Zvevalnote"}),
    );
    // Two patients are soft-deleted in the EHR.
    let deleted = [patients[2].clone(), patients[3].clone()];
    for p in &deleted {
        assert!(sim.running().simulator().soft_delete_patient(p));
    }
    let (held, _) = stored(&sim, dir.path());
    let purge_expected: usize = held
        .values()
        .map(|c| c.values().filter(|(p, _)| deleted.contains(p)).count())
        .sum();
    assert!(purge_expected >= 2 * 5, "the deleted patients had records");

    let (report, output) = sync(dir.path(), &sim, &[]);
    assert_eq!(report["tombstoned"], 2);
    assert_eq!(report["purged"].as_u64().unwrap(), purge_expected as u64);
    let changes = |name: &str| {
        let r = resource(&report, name);
        assert!(r["error"].is_null());
        (
            r["new"].as_u64().unwrap(),
            r["updated"].as_u64().unwrap(),
            r["removed"].as_u64().unwrap(),
        )
    };
    assert_eq!(changes("patients"), (1, 1, 0), "one created, one renamed");
    assert_eq!(changes("admissions"), (1, 1, 0));
    assert_eq!(changes("care_teams"), (0, 0, 0));
    assert_eq!(changes("diagnoses"), (0, 0, 0));
    assert_eq!(changes("appointments"), (0, 0, 0));
    assert_eq!(changes("vital_signs"), (1, 0, 0));
    assert_eq!(changes("evaluations"), (1, 0, 0));
    for name in ["vital_signs", "evaluations"] {
        assert_eq!(
            resource(&report, name)["mode"],
            "incremental",
            "{name} asks only for what changed"
        );
    }

    let expected = sim.expected();
    let (actual, tombstones) = stored(&sim, dir.path());
    for (kind, contents) in &expected {
        assert_eq!(
            &actual[kind], contents,
            "{kind} matches the EHR after the writes"
        );
    }
    for p in &deleted {
        assert!(tombstones.contains(p));
        for contents in actual.values() {
            assert!(contents.values().all(|(owner, _)| owner != p));
        }
    }
    let store = open_store(&sim.rt, dir.path());
    sim.rt.block_on(async {
        for p in &deleted {
            for (kind, ..) in RESOURCES {
                assert!(store.list_patient(p, kind).await.unwrap().is_empty());
            }
        }
    });

    // A full pass afterwards finds nothing to change and re-imports no deleted patient.
    let (full, _) = sync(dir.path(), &sim, &["--full"]);
    for r in full["resources"].as_array().unwrap() {
        assert_eq!(r["mode"], "full");
        assert_eq!(
            (
                r["new"].as_u64(),
                r["updated"].as_u64(),
                r["removed"].as_u64()
            ),
            (Some(0), Some(0), Some(0)),
            "{}",
            r["resource"]
        );
    }
    assert_eq!(full["tombstoned"], 0);
    assert_eq!(full["purged"], 0);

    let mut canaries = sim.canaries();
    canaries.extend(new_canaries);
    assert_no_canary(&output.stdout, &canaries, "sync's stdout");
    assert_no_canary(&output.stderr, &canaries, "sync's trace-level log");
    assert_no_canary(&store_file_bytes(dir.path()), &canaries, "the SQLite files");
}

#[test]
fn sync_killed_mid_run_then_rerun_equals_an_uninterrupted_sync() {
    let sim = Sim::start(40);
    let interrupted = tempfile::tempdir().unwrap();
    let straight = tempfile::tempdir().unwrap();
    init_keys(interrupted.path());
    init_keys(straight.path());
    let args = ["sync", "--once", "--json", "--per", "5"];

    // Kill -9 at several points: the census, the care teams, appointments, vital signs.
    for kill_after in [1usize, 14, 30, 60] {
        let mut cmd = command(interrupted.path(), &sim.env(), &args);
        cmd.env("PHIGATE_LOG", "info,ehr_sync=debug");
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut seen = 0;
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.contains("page stored") {
                seen += 1;
                if seen == kill_after {
                    child.kill().unwrap(); // SIGKILL
                    break;
                }
            }
        }
        let status = child.wait().unwrap();
        assert_eq!(
            seen, kill_after,
            "the run was still going when it was killed"
        );
        assert!(!status.success(), "killed, not finished");
    }
    let (resumed, _) = sync(interrupted.path(), &sim, &["--per", "5"]);
    let (uninterrupted, _) = sync(straight.path(), &sim, &["--per", "5"]);
    assert!(
        resumed["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["error"].is_null())
    );
    assert!(
        uninterrupted["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["error"].is_null())
    );

    let a = stored(&sim, interrupted.path());
    let b = stored(&sim, straight.path());
    assert_eq!(
        a, b,
        "an interrupted and resumed sync equals an uninterrupted one"
    );
    let expected = sim.expected();
    for (kind, contents) in &expected {
        assert_eq!(
            &a.0[kind], contents,
            "{kind}: nothing lost, duplicated or stale"
        );
    }
    let store = open_store(&sim.rt, interrupted.path());
    let (ok, bad) = sim.rt.block_on(store.verify_all()).unwrap();
    assert_eq!(bad, 0, "no torn row");
    assert!(ok > 0);
}

#[test]
fn sync_without_credentials_or_with_bad_options_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    init_keys(dir.path());
    let o = phigate(dir.path(), &[], &["sync", "--once"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    for var in [
        "KIPU_ACCESS_ID",
        "KIPU_SECRET_KEY",
        "KIPU_APP_ID",
        "--simulator",
    ] {
        assert!(t.contains(var), "the message names {var}: {t}");
    }

    let partial = [("KIPU_ACCESS_ID", "someone".to_string())];
    let o = phigate(dir.path(), &partial, &["sync", "--once"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("KIPU_SECRET_KEY is not set"),
        "{}",
        text(&o)
    );

    let o = phigate(dir.path(), &partial, &["sync", "--simulator"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "--simulator refuses to mix with credentials"
    );

    for (args, needle) in [
        (&["sync", "--every", "5x"][..], "--every"),
        (&["sync", "--every", "0s"][..], "--every"),
        (
            &["sync", "--reconcile-every", "soon"][..],
            "--reconcile-every",
        ),
        (&["sync", "--once", "--every", "1m"][..], "--every"),
        (&["sync", "--per", "0", "--simulator"][..], "--per"),
    ] {
        let o = phigate(dir.path(), &[], args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(needle), "{args:?}: {}", text(&o));
    }
}

#[test]
fn sync_from_the_builtin_simulator_needs_the_explicit_flag_and_fills_the_store() {
    let dir = tempfile::tempdir().unwrap();
    init_keys(dir.path());
    let o = phigate(dir.path(), &[], &["sync", "--simulator", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("SYNTHETIC DATA"),
        "loudly labelled"
    );
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(resource(&report, "patients")["new"], 200);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = open_store(&rt, dir.path());
    let patients = rt.block_on(store.list_kind("ehr.patient")).unwrap();
    assert_eq!(patients.len(), 200);
}
