//! `phigate kipu export` and `phigate decrypt` through the real binary, against simulators on
//! loopback: bad input, a fault-injected export of 10,000 patients with no lost or duplicated
//! row, an interrupted export resumed to the same bytes as an uninterrupted one, encryption,
//! de-identification and canaries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use secrecy::ExposeSecret as _;

const BIN: &str = env!("CARGO_BIN_EXE_phigate");
/// A fixed test root key (base64 of 32 bytes).
const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

struct Sim {
    runtime: tokio::runtime::Runtime,
    sim: Option<kipu_sim::RunningSim>,
}

impl Sim {
    fn start(patients: u64, faults: &str) -> Sim {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sim = runtime
            .block_on(kipu_sim::spawn(kipu_sim::SimConfig {
                patients,
                seed: 7,
                faults: kipu_sim::FaultSpec::parse(faults).unwrap(),
                ..kipu_sim::SimConfig::default()
            }))
            .unwrap();
        Sim {
            runtime,
            sim: Some(sim),
        }
    }

    fn running(&self) -> &kipu_sim::RunningSim {
        self.sim.as_ref().unwrap()
    }

    fn env(&self) -> Vec<(String, String)> {
        let (access_id, secret, app_id) = self.running().credentials();
        vec![
            ("KIPU_ACCESS_ID".into(), access_id),
            ("KIPU_SECRET_KEY".into(), secret.expose_secret().to_string()),
            ("KIPU_APP_ID".into(), app_id),
            ("KIPU_BASE_URL".into(), self.running().base_url()),
        ]
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(sim) = self.sim.take() {
            self.runtime.block_on(sim.shutdown());
        }
    }
}

fn phigate(args: &[&str], env: &[(String, String)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("PHIGATE_LOG", "trace");
    for var in [
        "KIPU_ACCESS_ID",
        "KIPU_SECRET_KEY",
        "KIPU_APP_ID",
        "KIPU_BASE_URL",
        "KIPU_API_VERSION",
        "PHIGATE_KEK",
        "PHIGATE_KEK_FILE",
        "PHIGATE_PKCS11_MODULE",
        "PHIGATE_PHI_KEY",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("phigate runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn export(sim: &Sim, out: &Path, extra: &[&str]) -> Output {
    let out = out.to_string_lossy().into_owned();
    let mut args = vec!["kipu", "export", "--out", &out, "--quiet"];
    args.extend_from_slice(extra);
    phigate(&args, &sim.env())
}

/// Every file under `dir` (relative path → bytes), the checkpoint and key ring excluded.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if rel != "_export.json" && rel != "_keyring.json" {
                    out.insert(rel, std::fs::read(&path).unwrap());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn jsonl_rows(dir: &Path, table_dir: &str) -> Vec<serde_json::Value> {
    files_under(dir)
        .into_iter()
        .filter(|(name, _)| name.starts_with(table_dir))
        .flat_map(|(_, bytes)| {
            text(&bytes)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn summary(output: &Output) -> serde_json::Value {
    let stdout = text(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("summary is JSON: {stdout}"))
}

#[test]
fn an_unknown_endpoint_is_a_usage_error_listing_the_valid_ones() {
    let sim = Sim::start(5, "none");
    let dir = tempfile::tempdir().unwrap();
    let out = export(&sim, &dir.path().join("x"), &["patient_vital_sign"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown or non-exportable endpoint \"patient_vital_sign\""),
        "{err}"
    );
    for valid in [
        "patient_vital_signs",
        "patients_census",
        "patient_diagnosis_history",
    ] {
        assert!(err.contains(&format!("\n  {valid}")), "{err}");
    }
    // Writes and endpoints needing other ids are not exportable.
    assert!(!err.contains("\n  create_patient"));
    assert!(!err.contains("\n  provider_appointments"));
    assert!(
        !dir.path().join("x").exists(),
        "nothing is created on a usage error"
    );
}

#[test]
fn a_non_empty_output_directory_is_refused_unless_resume_or_force() {
    let sim = Sim::start(5, "none");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    let out = export(&sim, dir.path(), &["patients_census"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("exists and is not empty; use --resume"),
        "{}",
        text(&out.stderr)
    );
    let out = export(&sim, dir.path(), &["patients_census", "--resume"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "nothing to resume: no checkpoint"
    );
    assert!(text(&out.stderr).contains("no _export.json"));
    let out = export(
        &sim,
        dir.path(),
        &["patients_census", "--force", "--format", "jsonl"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(dir.path().join("notes.txt")).unwrap(),
        b"mine",
        "--force touches only its own files"
    );
    assert_eq!(summary(&out)["records"], 5);
    // A resume with other settings is refused.
    let out = export(
        &sim,
        dir.path(),
        &["patients_census", "--resume", "--format", "csv"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("other settings"));
    // An output path that is a file is a usage error.
    let out = export(&sim, &dir.path().join("notes.txt"), &["patients_census"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not a directory"));
}

fn vital_sign_rows(dir: &Path) -> Vec<(i64, String)> {
    jsonl_rows(dir, "patient_vital_signs/vital_signs/")
        .into_iter()
        .map(|r| (r["id"].as_i64().unwrap(), r.to_string()))
        .collect()
}

#[test]
fn a_fault_injected_export_of_10000_patients_loses_and_duplicates_no_row() {
    let faulty = Sim::start(
        10_000,
        "429=0.01,503=0.02,504=0.01,reset=0.01,truncate=0.01,retry-after=0",
    );
    let clean = Sim::start(10_000, "none");
    let faulty_dir = tempfile::tempdir().unwrap();
    let clean_dir = tempfile::tempdir().unwrap();
    let args = [
        "patient_vital_signs",
        "--format",
        "jsonl",
        "--part-patients",
        "1000",
        "--concurrency",
        "16",
        "--attempts",
        "10",
    ];
    let out = export(&faulty, faulty_dir.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got = summary(&out);
    let out = export(&clean, clean_dir.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let want = summary(&out);

    let mut faulty_rows = vital_sign_rows(faulty_dir.path());
    let clean_rows = vital_sign_rows(clean_dir.path());
    assert!(clean_rows.len() > 10_000, "every patient has vital signs");
    let ids: BTreeSet<i64> = faulty_rows.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), faulty_rows.len(), "no duplicated record");
    // Same rows, in the same order, as the export that met no fault.
    assert_eq!(faulty_rows.len(), clean_rows.len(), "no lost record");
    assert_eq!(faulty_rows, clean_rows);
    faulty_rows.sort();
    assert_eq!(got["records"], want["records"]);
    assert_eq!(got["endpoints"][0]["parts"], 10);
    let patients: BTreeSet<String> =
        jsonl_rows(faulty_dir.path(), "patient_vital_signs/vital_signs/")
            .iter()
            .map(|r| r["patient_id"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(
        patients.len(),
        10_000,
        "every census patient was fanned out to"
    );
}

#[test]
fn an_interrupted_then_resumed_export_is_identical_to_an_uninterrupted_one() {
    let clean = Sim::start(1_000, "none");
    // Same seed and data; some requests fail, and with one attempt the export stops mid-way.
    let failing = Sim::start(1_000, "503=0.002");
    let whole = tempfile::tempdir().unwrap();
    let resumed = tempfile::tempdir().unwrap();
    let args = [
        "patients_census",
        "patient_vital_signs",
        "patient_diagnosis_history",
        "--part-patients",
        "100",
        "--part-pages",
        "2",
    ];
    let out = export(&clean, whole.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let mut first: Vec<&str> = args.to_vec();
    first.extend(["--attempts", "1"]);
    let out = export(&failing, resumed.path(), &first);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the export stops on the injected 503"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("export stopped:") && err.contains("--resume"),
        "{err}"
    );
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(resumed.path().join("_export.json")).unwrap())
            .unwrap();
    let parts: u64 = checkpoint["endpoints"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["parts"].as_u64().unwrap())
        .sum();
    assert!(
        (1..25).contains(&parts),
        "stopped mid-way, after {parts} parts"
    );
    // No temporary file is left behind.
    assert!(
        files_under(resumed.path())
            .keys()
            .all(|k| !k.ends_with(".partial"))
    );

    let mut again: Vec<&str> = args.to_vec();
    again.push("--resume");
    let out = export(&clean, resumed.path(), &again);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["resumed"], true);

    let a = files_under(whole.path());
    let b = files_under(resumed.path());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(name.ends_with(".parquet"));
        assert!(b[name] == *bytes, "{name} differs");
    }
    // Resuming a finished export writes nothing new.
    let out = export(&clean, resumed.path(), &again);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(files_under(resumed.path()), a);
}

#[test]
fn no_canary_reaches_stdout_stderr_or_the_summary() {
    let sim = Sim::start(40, "503=0.05,retry-after=0");
    let canaries = sim.running().canaries();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out_s = out_dir.to_string_lossy().into_owned();
    // Without --quiet: progress bars are drawn if stderr were a terminal; log level trace.
    let out = phigate(
        &[
            "kipu",
            "export",
            "all",
            "--out",
            &out_s,
            "--format",
            "csv",
            "--part-patients",
            "7",
        ],
        &sim.env(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    for canary in &canaries {
        assert!(!stdout.contains(canary.as_str()), "canary in stdout");
        assert!(!stderr.contains(canary.as_str()), "canary in stderr");
    }
    // The files themselves hold the PHI (that is what an export is), canaries included.
    let files = files_under(&out_dir);
    let all: String = files.values().map(|b| text(b)).collect();
    assert!(canaries.iter().any(|c| all.contains(c.as_str())));
    assert!(summary(&out)["files"].as_u64().unwrap() > 10);
}

#[test]
fn deidentified_exports_drop_the_direct_identifiers() {
    let sim = Sim::start(30, "none");
    let dir = tempfile::tempdir().unwrap();
    let out = export(
        &sim,
        dir.path(),
        &["patients_census", "--deidentify", "--format", "jsonl"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows = jsonl_rows(dir.path(), "patients_census/patients/");
    assert_eq!(rows.len(), 30);
    for row in &rows {
        for dropped in [
            "first_name",
            "last_name",
            "ssn",
            "phone",
            "email",
            "mr_number",
            "casefile_id",
        ] {
            assert!(row.get(dropped).is_none(), "{dropped} is dropped");
        }
        if let Some(dob) = row["dob"].as_str() {
            assert_eq!(dob.len(), 4, "dates keep the year only");
        }
    }
    let all: String = files_under(dir.path()).values().map(|b| text(b)).collect();
    for index in 0..30 {
        let [name, mrn, phone, email, _note] = sim.running().simulator().patient_canaries(index);
        for canary in [name, mrn, phone, email] {
            assert!(
                !all.contains(&canary),
                "an identifier survived de-identification"
            );
        }
    }
}

fn read_dir_names(dir: &Path) -> Vec<PathBuf> {
    files_under(dir).keys().map(|k| dir.join(k)).collect()
}

#[test]
fn encrypted_exports_hold_no_plaintext_and_decrypt_to_the_plain_export() {
    let sim = Sim::start(20, "none");
    let plain = tempfile::tempdir().unwrap();
    let sealed = tempfile::tempdir().unwrap();
    let args = [
        "patients_census",
        "patient_vital_signs",
        "--format",
        "jsonl",
    ];
    let out = export(&sim, plain.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let sealed_s = sealed.path().to_string_lossy().into_owned();
    let mut env = sim.env();
    let mut cmd: Vec<&str> = vec!["kipu", "export", "--out", &sealed_s, "--quiet", "--encrypt"];
    cmd.extend_from_slice(&args);
    let out = phigate(&cmd, &env);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--encrypt without a key is a usage error"
    );
    assert!(text(&out.stderr).contains("PHIGATE_KEK"));
    env.push(("PHIGATE_KEK".into(), KEK.into()));
    let out = phigate(&cmd, &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(sealed.path().join("_keyring.json").is_file());

    let canaries = sim.running().canaries();
    let files = read_dir_names(sealed.path());
    assert!(
        files
            .iter()
            .all(|f| f.to_string_lossy().ends_with(".jsonl.sealed"))
    );
    for f in &files {
        let bytes = text(&std::fs::read(f).unwrap());
        assert!(
            canaries.iter().all(|c| !bytes.contains(c.as_str())),
            "plaintext in a sealed file"
        );
    }
    let names: Vec<String> = files
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    let mut decrypt: Vec<&str> = vec!["decrypt"];
    decrypt.extend(names.iter().map(String::as_str));
    let out = phigate(&decrypt, &[("PHIGATE_KEK".into(), KEK.into())]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let decrypted: BTreeMap<String, Vec<u8>> = files_under(sealed.path())
        .into_iter()
        .filter(|(k, _)| !k.ends_with(".sealed"))
        .collect();
    assert_eq!(decrypted, files_under(plain.path()));

    // The wrong root key opens nothing and says so; a changed byte is detected.
    let other_key = "HxwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgEAAAA=";
    let out = phigate(
        &["decrypt", "--force", &names[0]],
        &[("PHIGATE_KEK".into(), other_key.into())],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("configured root key"));
    let mut bytes = std::fs::read(&names[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&names[0], &bytes).unwrap();
    let out = phigate(
        &["decrypt", "--force", &names[0]],
        &[("PHIGATE_KEK".into(), KEK.into())],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("authentication failed"),
        "{}",
        text(&out.stderr)
    );
}

/// A size-limited tmpfs mounted for one test, unmounted when dropped. Mounting needs root
/// (CI's machine runs the suite as root); anywhere else the test fails and says why, unless
/// `PHIGATE_TEST_NO_MOUNT=1` states that this machine cannot mount.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(kib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => Some(Tmpfs { dir }),
            _ if std::env::var_os("PHIGATE_TEST_NO_MOUNT").is_some() => None,
            _ => panic!(
                "this test mounts a small tmpfs to fill the disk and needs root; \
                 set PHIGATE_TEST_NO_MOUNT=1 to skip it on a machine that cannot mount"
            ),
        }
    }

    fn resize(&self, kib: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={kib}k"), "tmpfs"])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount");
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn checkpoint_parts(dir: &Path) -> u64 {
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("_export.json")).unwrap()).unwrap();
    checkpoint["endpoints"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["parts"].as_u64().unwrap())
        .sum()
}

#[test]
fn a_full_disk_stops_the_export_cleanly_with_a_resumable_checkpoint() {
    let sim = Sim::start(1_000, "none");
    let args = [
        "patients_census",
        "patient_vital_signs",
        "patient_diagnosis_history",
        "--format",
        "jsonl",
        "--part-patients",
        "100",
        "--part-pages",
        "2",
    ];
    let whole = tempfile::tempdir().unwrap();
    let out = export(&sim, whole.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let total: usize = files_under(whole.path()).values().map(Vec::len).sum();

    // A disk with room for about a third of the export.
    let Some(disk) = Tmpfs::mount((total as u64 / 3 / 1024).max(64)) else {
        return;
    };
    let target = disk.path().join("export");
    let out = export(&sim, &target, &args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the export stops on a full disk"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("export stopped: the disk is full.") && err.contains("--resume"),
        "the message names the cause and the way on: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let parts = checkpoint_parts(&target);
    assert!(parts < 30, "stopped before the end, after {parts} parts");
    assert!(
        files_under(&target)
            .keys()
            .all(|k| !k.ends_with(".partial")),
        "no partial file is left behind"
    );

    // Room again: the same command with --resume finishes, identical to an uninterrupted run.
    disk.resize(64 * 1024);
    let mut again: Vec<&str> = args.to_vec();
    again.push("--resume");
    let out = export(&sim, &target, &again);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["resumed"], true);
    assert_eq!(files_under(&target), files_under(whole.path()));
}

#[test]
fn an_output_directory_it_may_not_write_is_refused_with_a_clear_message() {
    let sim = Sim::start(20, "none");
    // Root may write anywhere, so the export runs as `nobody` in a directory owned by root.
    let parent = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        parent.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let target = parent.path().join("export");
    let mut cmd = if nix_is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    cmd.args(["kipu", "export", "patients_census", "--quiet", "--out"])
        .arg(&target)
        .env("PHIGATE_LOG", "trace");
    for (k, v) in sim.env() {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.to_lowercase().contains("permission denied"),
        "the message names the cause: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!target.exists(), "nothing was created");
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| text(&o.stdout).trim() == "0")
}
