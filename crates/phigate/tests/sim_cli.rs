//! `phigate sim` as a real process: prints working credentials, serves signed requests, and
//! refuses impossible options with exit code 2.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

use kipu::signing::{self, ApiVersion, CanonicalString, RequestTarget};
use secrecy::SecretString;

fn phigate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phigate"));
    cmd.env("PHIGATE_LOG", "info")
        .env_remove("PHIGATE_DATABASE_URL");
    cmd
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn phigate_sim_prints_its_credentials_and_answers_a_signed_request() {
    let mut child = KillOnDrop(
        phigate()
            .args([
                "sim",
                "--patients",
                "25",
                "--seed",
                "9",
                "--api-version",
                "4",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut vars = std::collections::HashMap::new();
    let mut banner = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        banner.push_str(&line);
        if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
            vars.insert(k.to_owned(), v.to_owned());
        }
        if line.starts_with("export KIPU_BASE_URL=") {
            break;
        }
    }
    assert!(banner.contains("SYNTHETIC DATA"));
    let base = &vars["KIPU_BASE_URL"];
    assert!(base.starts_with("http://127.0.0.1:"));
    assert_eq!(vars["KIPU_API_VERSION"], "4");

    let target = RequestTarget::new(
        "/api/patients/census",
        &[],
        &[("per", "100")],
        &vars["KIPU_APP_ID"],
    )
    .unwrap();
    let date = signing::http_date(SystemTime::now());
    let canonical = CanonicalString::for_get(target.as_str(), &date);
    let secret = SecretString::from(vars["KIPU_SECRET_KEY"].clone());
    let signature = signing::sign(ApiVersion::V4, &secret, &canonical);
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{base}{}", target.as_str()))
        .header("Date", date)
        .header("Accept", ApiVersion::V4.accept_header())
        .header(
            "Authorization",
            format!("APIAuth-HMAC-SHA256 {}:{signature}", vars["KIPU_ACCESS_ID"]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["pagination"]["total_records"], 25);
    assert_eq!(body["patients"].as_array().unwrap().len(), 25);
}

#[test]
fn list_canaries_prints_five_per_generated_patient() {
    let out = phigate()
        .args(["sim", "--patients", "10", "--list-canaries"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // 10 census patients plus 2 soft-deleted ones.
    assert_eq!(text.lines().count(), 5 * 12);
    assert!(text.lines().any(|l| l.starts_with("QX")));
}

#[test]
fn impossible_options_exit_with_code_2_and_say_what_is_wrong() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let cases: [(&[&str], &str); 7] = [
        (&["--patients", "0"], "--patients"),
        (&["--patients", "1000001"], "--patients"),
        (&["--addr", "0.0.0.0:8080"], "loopback"),
        (&["--addr", "not-an-addr"], "--addr"),
        (&["--faults", "429=2"], "--faults"),
        (&["--api-version", "5"], "--api-version"),
        (&["--addr", &busy_addr], "cannot listen"),
    ];
    for (args, needle) in cases {
        let out = phigate()
            .arg("sim")
            .args(args)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    drop(busy);
}
