//! `phigate kipu sign` and `phigate kipu get` through the real binary: the golden vectors of
//! kipu-api.md §1.6, configuration errors (exit 2, naming the variable), and `get` against a
//! simulator on loopback.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_phigate");
const DATE: &str = "Wed, 06 Nov 2019 15:38:34 GMT";

fn phigate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("PHIGATE_LOG", "warn");
    for var in [
        "KIPU_ACCESS_ID",
        "KIPU_SECRET_KEY",
        "KIPU_APP_ID",
        "KIPU_BASE_URL",
        "KIPU_API_VERSION",
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

const SIGN_ENV: &[(&str, &str)] = &[
    ("KIPU_ACCESS_ID", "test_id"),
    ("KIPU_SECRET_KEY", "test_secret"),
];

fn sign(method: &str, uri: &str, version: &str, body: Option<&std::path::Path>) -> Output {
    let mut args = vec![
        "kipu",
        "sign",
        "--method",
        method,
        "--uri",
        uri,
        "--date",
        DATE,
        "--version",
        version,
    ];
    let body_arg;
    if let Some(path) = body {
        body_arg = path.to_string_lossy().into_owned();
        args.extend([
            "--content-type",
            "application/json",
            "--body-file",
            &body_arg,
        ]);
    }
    phigate(&args, SIGN_ENV)
}

#[test]
fn sign_reproduces_the_golden_get_and_patch_vectors() {
    let cases = [
        (
            "GET",
            "/api/patients/census?app_id=test_app",
            "/tq1hhuodh0l8KAi1sHr40CBQlI=",
            "4u2PWWi+HBDsdzLn+2Z+FfBTy9H0l09akLXk8PYP0DU=",
        ),
        (
            "GET",
            "/api/test",
            "6HLRhEj+GtC6K99/2XuB+M/9TD4=",
            "0PhwBlIP7PRRE5lwcPZgktJbP9t+GQhPALBVWgNUC/w=",
        ),
        (
            "PATCH",
            "/api/patients/42?app_id=test_app",
            "n+2OeHLtsnHYtFTinZJFGTEIasw=",
            "R+pw37cPJtFPWYQTzGer732XAm6zi1GAOyjpyaOZnA8=",
        ),
    ];
    for (method, uri, v3, v4) in cases {
        let out = sign(method, uri, "3", None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains(&format!("canonical string: ,,{uri},{DATE}\n")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("Authorization: APIAuth test_id:{v3}\n")),
            "{stdout}"
        );
        assert!(stdout.contains("Accept: application/vnd.kipusystems+json; version=3"));
        assert!(!stdout.contains("Content-MD5"));
        let out = sign(method, uri, "4", None);
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains(&format!(
                "Authorization: APIAuth-HMAC-SHA256 test_id:{v4}\n"
            )),
            "{stdout}"
        );
    }
}

#[test]
fn sign_reproduces_the_golden_post_with_body_vector() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(
        &body,
        br#"{"document": {"recipient_id": "test_app", "data": {"first_name": "John"}}}"#,
    )
    .unwrap();
    let out = sign("POST", "/api/patients?app_id=test_app", "3", Some(&body));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!(
        "canonical string: application/json,p9r4jtQp5glFy0hl6r/oxg==,/api/patients?app_id=test_app,{DATE}\n"
    )));
    assert!(
        stdout.contains("Authorization: APIAuth test_id:J1lneVpnAAS8HmKsPOV8PZMyQ3I=\n"),
        "{stdout}"
    );
    assert!(stdout.contains("Content-MD5: p9r4jtQp5glFy0hl6r/oxg==\n"));
    let out = sign("POST", "/api/patients?app_id=test_app", "4", Some(&body));
    assert!(
        text(&out.stdout)
            .contains("APIAuth-HMAC-SHA256 test_id:YIL+pOtrxXzBORiMKcDTNe3NUH5acFLC438ErAQthWQ=\n")
    );
}

#[test]
fn sign_never_prints_the_secret_and_refuses_bad_input_with_exit_2() {
    let out = sign("GET", "/api/test", "3", None);
    assert!(
        !text(&out.stdout).contains("test_secret") && !text(&out.stderr).contains("test_secret")
    );

    let out = phigate(
        &[
            "kipu",
            "sign",
            "--method",
            "GET",
            "--uri",
            "/api/test",
            "--date",
            DATE,
            "--version",
            "3",
        ],
        &[("KIPU_ACCESS_ID", "x")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("KIPU_SECRET_KEY"),
        "{}",
        text(&out.stderr)
    );

    for (flag, bad, needle) in [
        ("--version", "5", "--version"),
        ("--date", "yesterday", "--date"),
        ("--uri", "api/test", "--uri"),
    ] {
        let mut args = vec![
            "kipu",
            "sign",
            "--method",
            "GET",
            "--uri",
            "/api/test",
            "--date",
            DATE,
            "--version",
            "3",
        ];
        let pos = args.iter().position(|a| *a == flag).unwrap();
        args[pos + 1] = bad;
        let out = phigate(&args, SIGN_ENV);
        assert_eq!(out.status.code(), Some(2), "{flag}");
        assert!(text(&out.stderr).contains(needle), "{}", text(&out.stderr));
    }
}

#[test]
fn get_refuses_missing_or_malformed_configuration_naming_the_variable() {
    let out = phigate(&["kipu", "get", "patients_census"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("KIPU_ACCESS_ID"));

    let base = [
        ("KIPU_ACCESS_ID", "a"),
        ("KIPU_SECRET_KEY", "b"),
        ("KIPU_APP_ID", "c"),
    ];
    let with = |extra: (&'static str, &'static str)| {
        let mut env = base.to_vec();
        env.push(extra);
        phigate(&["kipu", "get", "patients_census"], &env)
    };
    let out = with(("KIPU_API_VERSION", "5"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("KIPU_API_VERSION must be 3 or 4"));
    let out = with(("KIPU_BASE_URL", "http://api.kipuapi.com"));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("KIPU_BASE_URL") && err.contains("unencrypted"),
        "{err}"
    );

    let out = phigate(&["kipu", "get", "census"], &base);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown endpoint") && err.contains("get_patients_census"),
        "{err}"
    );
    let out = phigate(&["kipu", "get", "create_patient"], &base);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("only reads"));
    let out = phigate(&["kipu", "get", "get_patient"], &base);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("patient_id"));
}

#[test]
fn get_fetches_from_the_simulator_by_name_template_and_path_and_streams_all_pages() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = runtime
        .block_on(kipu_sim::spawn(kipu_sim::SimConfig {
            patients: 57,
            ..Default::default()
        }))
        .unwrap();
    let (access_id, secret, app_id) = sim.credentials();
    let secret = secrecy::ExposeSecret::expose_secret(&secret).to_string();
    let base_url = sim.base_url();
    let env = [
        ("KIPU_ACCESS_ID", access_id.as_str()),
        ("KIPU_SECRET_KEY", secret.as_str()),
        ("KIPU_APP_ID", app_id.as_str()),
        ("KIPU_BASE_URL", base_url.as_str()),
    ];

    let out = phigate(
        &["kipu", "get", "get_patients_census", "--param", "per=5"],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["patients"].as_array().unwrap().len(), 5);

    let out = phigate(
        &[
            "kipu",
            "get",
            "patients_census",
            "--all-pages",
            "--per",
            "10",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 57, "JSON lines, one per patient");

    let patient = sim.simulator().casefile_id(3);
    let out = phigate(
        &[
            "kipu",
            "get",
            "/api/patients/{patient_id}/vital_signs",
            "--id",
            &patient,
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let by_template: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = phigate(
        &[
            "kipu",
            "get",
            &format!("/api/patients/{patient}/vital_signs"),
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let by_path: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(by_template, by_path);
    assert!(by_path["vital_signs"].is_array());

    // A refused request: status and template on stderr, no canary, no id.
    let canary = sim.canaries().remove(0);
    let out = phigate(&["kipu", "get", "get_patient", "--id", &canary], &env);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("404") && err.contains("/api/patients/{patient_id}"),
        "{err}"
    );
    assert!(!err.contains(&canary), "{err}");
    runtime.block_on(sim.shutdown());
}
