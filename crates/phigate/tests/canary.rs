//! The canary suite: every phigate path that can see PHI runs at trace log level with canary
//! values in its input, and no canary may appear in stdout, stderr or any file it writes.
//!
//! # Adding a path (one place)
//!
//! Add an [`harness::Invocation`] to [`invocations`] below: the arguments (use `{data}` for the
//! run's data directory and `{input}` for files you supply with `.file(name, bytes)`), stdin,
//! environment and the exit code it must end with. Feed it the [`CANARIES`] (a simulator whose
//! patients carry them, a request body, an input file) so that the path really handles them.
//! Paths that need the Kipu simulator or the gateway are added by those features when they land.

#[path = "canary/mod.rs"]
mod harness;

use harness::{Invocation, assert_no_canaries, run_and_check};

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

#[test]
fn no_canary_escapes_any_phigate_path() {
    assert_no_canaries(&invocations(), CANARIES);
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
