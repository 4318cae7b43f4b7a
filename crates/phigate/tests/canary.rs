//! The canary suite: every phigate path that can see PHI runs at trace log level with canary
//! values in its input, and no canary may appear in stdout, stderr or any file it writes.
//!
//! # Adding a path (one place)
//!
//! Add an [`harness::Invocation`] to [`invocations`] below: the arguments (use `{data}` for the
//! run's data directory and `{input}` for files you supply with `.file(name, bytes)`), stdin,
//! environment and the exit code it must end with. Feed it the [`CANARIES`] (a simulator whose
//! patients carry them, a request body, an input file) so that the path really handles them.
//! Paths that talk to the Kipu API get a [`harness::Simulator`]: a `phigate sim` process whose
//! patients carry canaries (listed by `phigate sim --list-canaries`); its own logs are checked too.
//!
//! # Adding a gateway route (one place)
//!
//! Add a `GatewayRequest` (`R`) line to [`gateway_requests`]: who asks, the path (placeholders
//! `{patient}`, `{other}`, `{mrn}`, `{gap}`, `{sent}`), the statuses it may answer and, only
//! when the caller may read the record's PHI, `.record_phi()` (`.echoes_sent()` when the
//! response echoes the caller's own input by design). The test runs them all against one real
//! `phigate serve` (TLS, simulator data synced into its store, trace logs) and checks every
//! response, the gateway's stdout and stderr and its data directory.

#[path = "canary/mod.rs"]
mod harness;

use harness::gateway::{Gateway, GatewayRequest as R, Who, url_encode};
use harness::{Invocation, Simulator, assert_no_canaries, assert_none, run_and_check};

/// Values planted in inputs. They are shaped like the identifiers they stand for, so that both
/// the field allow-list and the scrubber are exercised.
const CANARIES: &[&str] = &[
    "Zebulon",
    "Quixote",
    "123-45-6789",
    "415-555-0142",
    "zebulon.q@example.org",
    "ZQ7731942",
    "1937-04-18",
    "03601",
];

const NOTE: &str = "Patient: Zebulon Quixote  DOB: 1937-04-18  MRN: ZQ7731942\n\
    SSN 123-45-6789, phone 415-555-0142, email zebulon.q@example.org.\n\
    Lives in Keene, NH 03601. Seen by Dr. Quixote.\n";

/// A test key-encryption key (base64 of 32 bytes) for the store.
const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

const PHI_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn record() -> String {
    serde_json::json!({
        "patients": [{
            "casefile_id": "1042:9b2f6a1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
            "first_name": "Zebulon", "last_name": "Quixote", "dob": "1937-04-18",
            "ssn": "123-45-6789", "phone": "415-555-0142", "email": "zebulon.q@example.org",
            "mr_number": "ZQ7731942", "address_zip": "03601",
            "notes": "Mr. Quixote called from 415-555-0142.",
            "new_unclassified_field": "Patient: Zebulon Quixote"
        }]
    })
    .to_string()
}

/// Every path, in one list.
fn invocations() -> Vec<Invocation> {
    let mut invalid_utf8 = NOTE.as_bytes().to_vec();
    invalid_utf8.extend_from_slice(b"\xff\xfe\xc3 trailing bytes\n");
    vec![
        Invocation::new(
            "phi eval",
            &[
                "phi",
                "eval",
                "--notes",
                "30",
                "--dump",
                "{data}/corpus.jsonl",
            ],
        ),
        Invocation::new("phi scrub tag (stdin)", &["phi", "scrub"]).stdin(NOTE),
        Invocation::new(
            "phi scrub mask (file)",
            &["phi", "scrub", "--mode", "mask", "{input}/note.txt"],
        )
        .file("note.txt", NOTE),
        Invocation::new(
            "phi scrub pseudonym",
            &["phi", "scrub", "--mode", "pseudonym"],
        )
        .env("PHIGATE_PHI_KEY", PHI_KEY)
        .stdin(NOTE),
        Invocation::new("phi scrub json logs", &["phi", "scrub"])
            .env("PHIGATE_LOG_FORMAT", "json")
            .stdin(NOTE),
        Invocation::new("phi scrub invalid utf-8", &["phi", "scrub"]).stdin(invalid_utf8),
        Invocation::new("phi detect", &["phi", "detect"]).stdin(NOTE),
        Invocation::new(
            "phi deid",
            &["phi", "deid", "--reference-date", "2026-01-01"],
        )
        .stdin(record()),
        Invocation::new("phi deid date shift", &["phi", "deid", "--date-shift"])
            .env("PHIGATE_PHI_KEY", PHI_KEY)
            .stdin(record()),
        // Bad input: the error says what is wrong and echoes nothing of the input.
        Invocation::new("phi deid not json", &["phi", "deid"])
            .stdin(format!("{{\"first_name\": \"Zebulon\", {NOTE}"))
            .exits(Some(2)),
        Invocation::new("phi deid unparseable date", &["phi", "deid"])
            .stdin(r#"{"dob": "Zebulon Quixote 123-45-6789"}"#)
            .exits(Some(1)),
        Invocation::new(
            "phi scrub pseudonym without key",
            &["phi", "scrub", "--mode", "pseudonym"],
        )
        .stdin(NOTE)
        .exits(Some(2)),
        Invocation::new(
            "phi scrub short key",
            &["phi", "scrub", "--mode", "pseudonym"],
        )
        .env("PHIGATE_PHI_KEY", "0011")
        .stdin(NOTE)
        .exits(Some(2)),
        Invocation::new(
            "phi bench bad corpus",
            &["phi", "bench", "--input", "{input}/bad.jsonl"],
        )
        .file("bad.jsonl", NOTE)
        .exits(Some(2)),
        Invocation::new(
            "phi scrub missing file",
            &["phi", "scrub", "{input}/absent.txt"],
        )
        .exits(Some(1)),
        // A panic whose message carries PHI goes through the scrubbing hook.
        Invocation::new("phi panic-test", &["phi", "panic-test", NOTE])
            .env("PHIGATE_ALLOW_TEST_PANIC", "1")
            .exits(Some(101)),
    ]
}

/// Invocations that reach PHI through the Kipu client, against a simulator (`sim`) and one
/// that cuts every response in half (`broken`).
fn kipu_invocations(sim: &[(String, String)], broken: &[(String, String)]) -> Vec<Invocation> {
    let wrong_secret: Vec<(String, String)> = sim
        .iter()
        .map(|(k, v)| match k.as_str() {
            "KIPU_SECRET_KEY" => (k.clone(), "not-the-secret".to_string()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    vec![
        // The records are the command's output: stdout must carry them, nothing else may.
        Invocation::new(
            "kipu get census, all pages",
            &[
                "kipu",
                "get",
                "get_patients_census",
                "--all-pages",
                "--per",
                "5",
            ],
        )
        .envs(sim)
        .stdout_is_data(),
        Invocation::new(
            "kipu get census with a PHI-shaped parameter",
            &[
                "kipu",
                "get",
                "patients_census",
                "--param",
                "first_name=Zebulon Quixote",
            ],
        )
        .envs(sim)
        .stdout_is_data(),
        // A PHI-shaped id in the path that does not exist: 404, and the id is not echoed.
        Invocation::new(
            "kipu get an unknown patient",
            &[
                "kipu",
                "get",
                "/api/patients/{patient_id}",
                "--id",
                "ZQ7731942",
            ],
        )
        .envs(sim)
        .exits(Some(1)),
        Invocation::new(
            "kipu get with the wrong secret",
            &["kipu", "get", "get_patients_census"],
        )
        .envs(&wrong_secret)
        .exits(Some(1)),
        // Every body is cut short after its headers: the partial records must not surface.
        Invocation::new(
            "kipu get with truncated responses",
            &["kipu", "get", "get_patients_census", "--timeout", "5"],
        )
        .envs(broken)
        .exits(Some(1)),
        // The synced store, its WAL and a backup are files in the data directory: the harness
        // scans their bytes, so this proves the records are sealed at rest.
        Invocation::new("sync once into the store", &["sync", "--once"])
            .envs(sim)
            .env("PHIGATE_KEK", KEK)
            .after(&["keys", "init"]),
        Invocation::new(
            "store backup after a sync",
            &["store", "backup", "{data}/backup.bin"],
        )
        .envs(sim)
        .env("PHIGATE_KEK", KEK)
        .after(&["keys", "init"])
        .after(&["sync", "--once"]),
        Invocation::new("sync against truncated responses", &["sync", "--once"])
            .envs(broken)
            .env("PHIGATE_KEK", KEK)
            .after(&["keys", "init"])
            .exits(Some(1)),
        // Exported files are PHI by design: written outside the scanned data directory, while
        // the progress output on stderr and the summary on stdout are checked.
        Invocation::new(
            "kipu export census and vital signs",
            &[
                "kipu",
                "export",
                "get_patients_census",
                "get_patient_vital_signs",
                "--out",
                "{input}/export",
                "--format",
                "jsonl",
            ],
        )
        .envs(sim),
        // Encrypted exports land in the data directory: their bytes must hold no canary
        // (JSONL, so that a plaintext leak would be visible, unlike zstd-compressed Parquet).
        Invocation::new(
            "kipu export --encrypt",
            &[
                "kipu",
                "export",
                "get_patients_census",
                "get_patient_vital_signs",
                "--out",
                "{data}/export",
                "--format",
                "jsonl",
                "--encrypt",
            ],
        )
        .envs(sim)
        .env("PHIGATE_KEK", KEK),
        Invocation::new(
            "kipu get an unknown endpoint with PHI in it",
            &["kipu", "get", "/api/Zebulon-Quixote/123-45-6789"],
        )
        .envs(sim)
        .exits(Some(1)),
    ]
}

/// Paths through the encrypted store and the audit log; patient ids come on stdin.
fn store_and_audit_invocations() -> Vec<Invocation> {
    let with_keys = |inv: Invocation| inv.env("PHIGATE_KEK", KEK).after(&["keys", "init"]);
    vec![
        with_keys(Invocation::new(
            "keys init + store stats",
            &["store", "stats"],
        )),
        with_keys(Invocation::new(
            "store invalidate a PHI-shaped patient id",
            &["store", "invalidate", "patient"],
        ))
        .stdin("ZQ7731942\n"),
        with_keys(Invocation::new(
            "store invalidate a PHI-shaped record id",
            &["store", "invalidate", "key", "kipu.response"],
        ))
        .stdin("/api/patients/ZQ7731942?first_name=Zebulon\n"),
        with_keys(Invocation::new(
            "store backup",
            &["store", "backup", "{data}/backup.bin"],
        )),
        Invocation::new("audit checkpoint", &["audit", "checkpoint"]).env("PHIGATE_KEK", KEK),
        Invocation::new(
            "audit disclosures for a PHI-shaped patient id",
            &["audit", "disclosures", "--patient", "-"],
        )
        .after(&["audit", "checkpoint"])
        .env("PHIGATE_KEK", KEK)
        .stdin("ZQ7731942\n"),
        Invocation::new(
            "audit export for a PHI-shaped patient id",
            &["audit", "export", "--patient", "-"],
        )
        .after(&["audit", "checkpoint"])
        .env("PHIGATE_KEK", KEK)
        .stdin("Zebulon Quixote\n"),
        // The log does not exist yet: the error names the file, not the patient.
        Invocation::new(
            "audit disclosures without a log",
            &["audit", "disclosures", "--patient", "-"],
        )
        .env("PHIGATE_KEK", KEK)
        .stdin("ZQ7731942\n")
        .exits(Some(1)),
        Invocation::new(
            "audit verify-export of a file of PHI",
            &["audit", "verify-export", "{input}/export.jsonl"],
        )
        .file("export.jsonl", NOTE)
        .exits(Some(1)),
    ]
}

/// Command-line errors: clap would echo a rejected value; phigate must not.
fn command_line_invocations() -> Vec<Invocation> {
    vec![
        Invocation::new(
            "a PHI value for a number",
            &["sim", "--patients", "Zebulon"],
        )
        .exits(Some(2)),
        Invocation::new("a PHI-shaped unknown subcommand", &["Quixote"]).exits(Some(2)),
        Invocation::new(
            "a PHI-shaped extra positional argument",
            &["store", "stats", "123-45-6789"],
        )
        .exits(Some(2)),
        Invocation::new(
            "a PHI value for an enum",
            &["phi", "scrub", "--mode", "zebulon.q@example.org"],
        )
        .exits(Some(2)),
        Invocation::new(
            "a PHI-shaped unknown flag",
            &["phi", "scrub", "--415-555-0142"],
        )
        .exits(Some(2)),
    ]
}

/// Planted in the gateway's requests (`{sent}`). Digit-only canaries such as a ZIP code are left
/// out here: hex request ids and hashes in the gateway's files could contain them by chance.
const SENT: &str =
    "Zebulon Quixote 123-45-6789 415-555-0142 zebulon.q@example.org ZQ7731942 1937-04-18";

/// Every gateway route, in one list: one line per request (kept unformatted so that it stays
/// one line each). Order matters where state changes: metrics come last.
#[rustfmt::skip]
fn gateway_requests() -> Vec<R> {
    use Who::{Analyst, Anonymous, Auditor, Clinician, Mtls, Service};
    let cohort = r#"{"patient_ids": ["{patient}"]}"#;
    let cohort_other = r#"{"patient_ids": ["{patient}", "{other}"]}"#;
    let cohort_sent = r#"{"patient_ids": ["{patient}", "{sent}"], "gap_types": ["{sent}"]}"#;
    let custom = r#"{"patient_id": "{patient}", "focus_areas": ["{sent}"], "max_length": 300}"#;
    let custom_sent = r#"{"patient_id": "{sent}"}"#;
    let broken = r#"{"patient_ids": ["{sent}""#;
    let glass = r#"{"patient_id": "{patient}", "reason": "{sent}"}"#;
    vec![
        // Public probes and documents: no PHI for anyone.
        R::get(Anonymous, "/health", &[200]),
        R::get(Anonymous, "/ready", &[200]),
        R::get(Anonymous, "/openapi.json", &[200]),
        R::get(Anonymous, "/.well-known/jwks.json", &[200]),
        // Authentication errors.
        R::get(Anonymous, "/api/v1/patients/{mrn}?q={sent}", &[401]),
        R::get(Anonymous, "/api/v1/care-gaps/patient/{patient}", &[401]),
        R::get(Anonymous, "/api/v1/patients", &[401]).header("authorization", "Bearer {sent}"),
        R::post(Anonymous, "/auth/token", r#"{"patient": "{sent}""#, &[400, 401]),
        R::post(Anonymous, "/auth/break-glass", glass, &[401]),
        R::get(Anonymous, "/{sent}", &[401, 404]),
        // Patients: the clinician and the service on the care team read the record.
        R::get(Clinician, "/api/v1/patients", &[200]).record_phi(),
        R::get(Clinician, "/api/v1/patients/{patient}", &[200]).record_phi(),
        R::get(Clinician, "/api/v1/patients/{patient}/diagnoses", &[200]).record_phi(),
        R::get(Clinician, "/api/v1/patients/{patient}/vitals", &[200]).record_phi(),
        R::get(Clinician, "/api/v1/patients/{patient}/appointments", &[200]).record_phi(),
        R::get(Clinician, "/api/v1/patients/{patient}/evaluations", &[200]).record_phi(),
        R::get(Clinician, "/api/v1/patients/{patient}/care-team", &[200]).record_phi(),
        R::get(Clinician, "/api/v1/patients/{patient}/admissions", &[200]).record_phi(),
        R::get(Service, "/api/v1/patients/{patient}", &[200]).record_phi(),
        R::get(Clinician, "/api/v1/patients/{patient}", &[200]).header("x-access-reason", "{sent}").record_phi(),
        // Patients: refusals and bad input.
        R::get(Clinician, "/api/v1/patients/{other}", &[404]),
        R::get(Clinician, "/api/v1/patients/{mrn}", &[404]),
        R::get(Clinician, "/api/v1/patients/{sent}?q={sent}", &[400, 404]),
        R::get(Clinician, "/api/v1/patients/{patient}/{sent}", &[404]),
        R::get(Clinician, "/api/v1/patients/{patient}", &[400]).header("x-access-reason", ""),
        R::get(Clinician, "/api/v1/patients/{patient}", &[400]).header("x-purpose-of-use", "{sent}"),
        R::get(Analyst, "/api/v1/patients", &[403]),
        R::get(Analyst, "/api/v1/patients/{patient}", &[403, 404]),
        R::get(Auditor, "/api/v1/patients/{patient}/diagnoses", &[403, 404]),
        R::get(Mtls, "/api/v1/patients/{patient}", &[404]),
        R::get(Mtls, "/api/v1/patients/{sent}", &[400, 404]).header("x-access-reason", "{sent}"),
        R::get(Mtls, "/{sent}", &[404]),
        // Care gaps.
        R::get(Clinician, "/api/v1/care-gaps/patient/{patient}?include_closed=true", &[200]).record_phi(),
        R::get(Service, "/api/v1/care-gaps/patient/{patient}", &[200]),
        R::post(Clinician, "/api/v1/care-gaps/cohort", cohort, &[200]),
        R::post(Clinician, "/api/v1/care-gaps/patient/{patient}/close/gap-00000000?closure_reason={sent}", "{}", &[404]),
        R::post(Clinician, "/api/v1/care-gaps/patient/{patient}/close/{gap}?closure_reason={sent}", "{}", &[200]).echoes_sent(),
        R::post(Clinician, "/api/v1/care-gaps/patient/{patient}/close/{gap}?closure_reason={sent}", "{}", &[409]),
        R::get(Service, "/api/v1/care-gaps/patient/{patient}?include_closed=true", &[200]),
        R::post(Clinician, "/api/v1/care-gaps/patient/{patient}/close/{sent}?closure_reason={sent}", "{}", &[400]),
        R::post(Clinician, "/api/v1/care-gaps/patient/{patient}/close/gap-00000000?closure_reason=x&closure_date={sent}", "{}", &[422]),
        R::post(Clinician, "/api/v1/care-gaps/cohort", cohort_other, &[404]),
        R::post(Clinician, "/api/v1/care-gaps/cohort", cohort_sent, &[400, 404, 422]),
        R::post(Clinician, "/api/v1/care-gaps/cohort", broken, &[400, 422]),
        R::get(Clinician, "/api/v1/care-gaps/patient/{patient}?lookback_months={sent}", &[422]),
        R::get(Clinician, "/api/v1/care-gaps/patient/{other}", &[404]),
        R::get(Analyst, "/api/v1/care-gaps/patient/{patient}", &[403, 404]),
        R::get(Auditor, "/api/v1/care-gaps/patient/{patient}", &[403, 404]),
        R::get(Mtls, "/api/v1/care-gaps/patient/{patient}", &[404]),
        R::get(Clinician, "/api/v1/care-gaps/guidelines", &[200]),
        R::get(Clinician, "/api/v1/care-gaps/metrics", &[200]),
        // Readmission.
        R::get(Clinician, "/api/v1/readmission/predict/{patient}?include_shap=true", &[200, 422]).record_phi(),
        R::get(Service, "/api/v1/readmission/predict/{patient}", &[200, 422]),
        R::post(Clinician, "/api/v1/readmission/predict/batch", cohort, &[200]).record_phi(),
        R::post(Clinician, "/api/v1/readmission/predict/batch", cohort_other, &[404]),
        R::post(Clinician, "/api/v1/readmission/predict/batch", cohort_sent, &[400, 404, 422]),
        R::get(Clinician, "/api/v1/readmission/predict/{patient}?encounter_id={sent}", &[400, 422]),
        R::get(Clinician, "/api/v1/readmission/predict/{other}", &[404]),
        R::get(Analyst, "/api/v1/readmission/predict/{patient}", &[403, 404]),
        R::get(Clinician, "/api/v1/readmission/model/info", &[200]),
        R::get(Clinician, "/api/v1/readmission/model/features", &[200]),
        R::get(Clinician, "/api/v1/readmission/interventions", &[200]),
        R::get(Clinician, "/api/v1/readmission/metrics", &[200]),
        // Summaries: the service gets them redacted, so no record PHI in its bodies.
        R::get(Clinician, "/api/v1/summarize/patient/{patient}?time_range=all_time", &[200]).record_phi(),
        R::get(Service, "/api/v1/summarize/patient/{patient}?time_range=all_time", &[200]),
        R::post(Clinician, "/api/v1/summarize/custom", custom, &[200]).record_phi(),
        R::post(Service, "/api/v1/summarize/custom", custom, &[200]),
        R::post(Clinician, "/api/v1/summarize/custom", custom_sent, &[400, 404]),
        R::get(Clinician, "/api/v1/summarize/problem/{patient}/F10.239", &[200, 422]).record_phi(),
        R::get(Clinician, "/api/v1/summarize/problem/{patient}/{sent}", &[400]),
        R::get(Clinician, "/api/v1/summarize/care-transition/{patient}/{sent}", &[400, 422]),
        R::get(Clinician, "/api/v1/summarize/care-transition/{patient}/x?recipient_type={sent}", &[422]),
        R::get(Clinician, "/api/v1/summarize/patient/{patient}?time_range={sent}", &[422]),
        R::get(Clinician, "/api/v1/summarize/patient/{other}", &[404]),
        R::get(Analyst, "/api/v1/summarize/patient/{patient}", &[403, 404]),
        R::get(Clinician, "/api/v1/summarize/rag/info", &[200]),
        R::get(Clinician, "/api/v1/summarize/llm-controls", &[200]),
        R::get(Clinician, "/api/v1/summarize/metrics", &[200]),
        R::get(Clinician, "/api/v1/summarize/{sent}", &[403, 404]),
        // Break-glass (a reason full of canaries) and the administration refused to the wrong roles.
        R::post(Clinician, "/auth/break-glass", glass, &[200, 201, 400, 404, 422]),
        R::get(Clinician, "/admin/break-glass", &[403]),
        R::get(Analyst, "/admin/break-glass", &[403]),
        // Metrics last: after every path above ran.
        R::get(Anonymous, "/metrics", &[200]),
        R::get(Mtls, "/metrics", &[200]),
    ]
}

#[tokio::test]
async fn no_canary_escapes_the_gateway_on_any_route() {
    const PATIENTS: u64 = 12;
    const SEED: u64 = 7;
    let gw = Gateway::start(PATIENTS, SEED);
    let record = Gateway::record_canaries(PATIENTS, SEED);
    let (user, patient, other) = gw.care_team_fixture().await;
    let tokens = gw.tokens(&user).await;
    let gap = gw
        .first_gap(&tokens[&Who::Clinician], &patient)
        .await
        .expect("the care-team patient has a care gap to close");
    let mrn = record
        .iter()
        .find(|c| c.starts_with("QX"))
        .expect("an MRN-shaped canary")
        .clone();
    let fill = |text: &str, in_url: bool| {
        let enc = |v: &str| if in_url { url_encode(v) } else { v.to_string() };
        text.replace("{patient}", &enc(&patient))
            .replace("{other}", &enc(&other))
            .replace("{mrn}", &enc(&mrn))
            .replace("{gap}", &gap)
            .replace("{sent}", &enc(SENT))
    };
    let record: Vec<&str> = record.iter().map(String::as_str).collect();
    let sent: Vec<&str> = SENT.split(' ').collect();
    let (mut findings, phi_served) = gw
        .run(&gateway_requests(), &fill, &tokens, &record, &sent)
        .await;
    let all: Vec<&str> = record.iter().chain(&sent).copied().collect();
    findings.extend(gw.stop(&all));
    assert_none(&findings);
    assert!(
        phi_served > 0,
        "no response allowed the record's PHI carried a canary: the paths were not exercised"
    );
}

#[test]
fn no_canary_escapes_any_phigate_path() {
    assert_no_canaries(&invocations(), CANARIES);
}

#[test]
fn no_canary_escapes_the_store_audit_or_command_line_paths() {
    let mut all = store_and_audit_invocations();
    all.extend(command_line_invocations());
    assert_no_canaries(&all, CANARIES);
}

#[test]
fn no_canary_escapes_the_kipu_client_or_the_simulator() {
    let sim = Simulator::start("phigate sim", 12, 7, &[]);
    let broken = Simulator::start(
        "phigate sim (truncating)",
        12,
        7,
        &["--faults", "truncate=1"],
    );
    let mut canaries = sim.canaries();
    canaries.extend(CANARIES.iter().copied());
    let canaries: Vec<String> = canaries.into_iter().map(str::to_string).collect();
    let canaries: Vec<&str> = canaries.iter().map(String::as_str).collect();

    let mut findings = run_and_check(&kipu_invocations(sim.env(), broken.env()), &canaries);
    findings.extend(sim.stop(&canaries));
    findings.extend(broken.stop(&canaries));
    assert_none(&findings);
}

#[test]
fn the_harness_reports_a_canary_it_finds_and_where() {
    // `phi eval --dump` writes the synthetic corpus, which contains the cue "Patient: ": a
    // stand-in canary the harness must find in the data directory, and only there.
    let findings = run_and_check(
        &[Invocation::new(
            "dump",
            &[
                "phi",
                "eval",
                "--notes",
                "20",
                "--dump",
                "{data}/corpus.jsonl",
            ],
        )],
        &["Patient: "],
    );
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].place, "file corpus.jsonl");
    assert_eq!(findings[0].invocation, "dump");
}

#[test]
fn the_harness_reports_an_unexpected_exit_status() {
    let findings = run_and_check(
        &[Invocation::new("refused", &["phi", "panic-test", "x"])],
        CANARIES,
    );
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(findings[0].place.starts_with("exit status"));
}

#[test]
fn scrub_output_keeps_the_text_and_replaces_the_identifiers() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phigate"))
        .args(["phi", "scrub"])
        .env("PHIGATE_LOG", "off")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"Call 415-555-0142 re: Mr. Quixote.")?;
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "Call [PHONE] re: Mr. [NAME]."
    );
}
