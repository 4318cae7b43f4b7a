//! The gateway section's machinery: a real `phigate serve` process (TLS, development CA, the
//! built-in simulator synced into its store at start, `PHIGATE_LOG=trace`), callers with real
//! credentials, and the requests of [`GatewayRequest`] sent over HTTPS and checked.
//!
//! Two sets of canaries are checked: the simulator's (`record`: PHI of the synced patients) and
//! the ones a request carries (`sent`: planted by the test in paths, queries, headers and
//! bodies). A response body a role may legitimately receive with the record's PHI (a clinician
//! reading the record) is allowed `record` canaries; nothing is ever allowed a `sent` canary,
//! and every other body, every header, the gateway's stdout, stderr and every file of its data
//! directory may hold neither.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{Finding, contains, files_under};

/// Who sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Who {
    /// No credential.
    Anonymous,
    /// A clinician on `{patient}`'s care team.
    Clinician,
    /// A service principal on `{patient}`'s care team (gets redacted model output).
    Service,
    /// An analyst (de-identified data only: no PHI, no model on PHI).
    Analyst,
    /// An auditor (audit endpoints only).
    Auditor,
    /// A service authenticated by a client certificate on the mTLS listener (on no care team).
    Mtls,
}

/// One request of the gateway section. In `path` and `body`: `{patient}` is a synced patient
/// on the callers' care team, `{other}` a synced patient outside it, `{mrn}` a simulator
/// canary shaped like an id, `{sent}` the planted canaries (URL-encoded in a path).
#[derive(Debug, Clone)]
pub struct GatewayRequest {
    /// Who asks.
    pub who: Who,
    /// `GET` or `POST`.
    pub method: &'static str,
    /// Path and query.
    pub path: String,
    /// JSON body (sent as is after substitution).
    pub body: Option<String>,
    /// Headers replacing the defaults (`x-purpose-of-use: TREAT`, `x-access-reason: ...`); an
    /// empty value drops the header.
    pub headers: Vec<(&'static str, String)>,
    /// Statuses it may answer with.
    pub status: &'static [u16],
    /// The body may carry the record's PHI (a role allowed to read it).
    pub record_phi: bool,
    /// The body echoes what the caller sent (CoCo's closure echoes its reason): the planted
    /// canaries may come back in it, and nowhere else.
    pub echoes_sent: bool,
}

impl GatewayRequest {
    /// `GET path` by `who`, answering one of `status`.
    pub fn get(who: Who, path: &str, status: &'static [u16]) -> Self {
        Self {
            who,
            method: "GET",
            path: path.to_string(),
            body: None,
            headers: Vec::new(),
            status,
            record_phi: false,
            echoes_sent: false,
        }
    }

    /// `POST path` with a JSON `body`.
    pub fn post(who: Who, path: &str, body: &str, status: &'static [u16]) -> Self {
        Self {
            method: "POST",
            body: Some(body.to_string()),
            ..Self::get(who, path, status)
        }
    }

    /// Replaces (or, with `""`, drops) a default header.
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    /// The body is the record's PHI served to a role allowed to read it.
    pub fn record_phi(mut self) -> Self {
        self.record_phi = true;
        self
    }

    /// The body echoes the caller's input back to the caller (by design).
    pub fn echoes_sent(mut self) -> Self {
        self.echoes_sent = true;
        self
    }

    fn name(&self) -> String {
        format!("{:?} {} {}", self.who, self.method, self.path)
    }
}

/// A running `phigate serve`; killed on drop (or by [`Gateway::stop`], which checks it).
pub struct Gateway {
    child: Child,
    dir: tempfile::TempDir,
    public: String,
    mtls: String,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Starts `phigate serve` on loopback with the built-in simulator (`patients`, `seed`),
    /// which it syncs into its store before it prints `ready`.
    pub fn start(patients: u64, seed: u64) -> Self {
        let dir = tempfile::tempdir().expect("create the gateway's data dir");
        std::fs::write(
            dir.path().join("phigate.toml"),
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\nmtls_listen = \"127.0.0.1:0\"\n\
                 [rate_limit]\nauth_per_minute = 600\nauth_burst = 100\n\
                 per_principal_burst = 1000\nper_address_burst = 1000\n\
                 [simulator]\npatients = {patients}\nseed = {seed}\n"
            ),
        )
        .expect("write phigate.toml");
        let mut child = Command::new(env!("CARGO_BIN_EXE_phigate"))
            .arg("serve")
            .env("PHIGATE_DATA_DIR", dir.path())
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("PHIGATE_LOG", "trace")
            .env_remove("RUST_BACKTRACE")
            .env_remove("PHIGATE_LOG_FORMAT")
            .env_remove("PHIGATE_KEK")
            .env_remove("PHIGATE_KEK_FILE")
            .env_remove("PHIGATE_PKCS11_MODULE")
            .env_remove("PHIGATE_DATABASE_URL")
            .env_remove("PHIGATE_CONFIG")
            .env_remove("KIPU_ACCESS_ID")
            .env_remove("KIPU_SECRET_KEY")
            .env_remove("KIPU_APP_ID")
            .env_remove("KIPU_BASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn phigate serve");
        let mut err_pipe = child.stderr.take().expect("stderr is piped");
        let stderr = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err_pipe.read_to_end(&mut buf);
            buf
        });
        let mut reader = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut head = Vec::new();
        let mut public = None;
        let mut mtls = None;
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .expect("read the gateway's stdout");
            if n == 0 {
                break;
            }
            head.extend_from_slice(line.as_bytes());
            let line = line.trim_end();
            if let Some(rest) = line.strip_prefix("listening https://") {
                public = rest.split_whitespace().next().map(str::to_string);
            } else if let Some(rest) = line.strip_prefix("listening-mtls https://") {
                mtls = rest.split_whitespace().next().map(str::to_string);
            } else if line == "ready" {
                break;
            }
        }
        let stdout = std::thread::spawn(move || {
            let mut rest = head;
            let _ = reader.read_to_end(&mut rest);
            rest
        });
        let mut gw = Self {
            child,
            dir,
            public: String::new(),
            mtls: String::new(),
            stdout: Some(stdout),
            stderr: Some(stderr),
        };
        match (public, mtls) {
            (Some(p), Some(m)) => {
                gw.public = format!("https://{p}");
                gw.mtls = format!("https://{m}");
            }
            _ => {
                let _ = gw.child.kill();
                let _ = gw.child.wait();
                let err = gw.stderr.take().map(|h| h.join().unwrap_or_default());
                panic!(
                    "the gateway did not start ({} bytes on stderr)",
                    err.map_or(0, |e| e.len())
                );
            }
        }
        gw
    }

    /// A client trusting the gateway's development CA.
    pub fn client(&self) -> reqwest::Client {
        let ca = std::fs::read(self.dir.path().join("tls").join("dev-ca.pem")).expect("dev CA");
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("a PEM CA")])
            .build()
            .expect("a client")
    }

    /// A client presenting the development client certificate (for the mTLS listener).
    pub fn mtls_client(&self) -> reqwest::Client {
        let tls = self.dir.path().join("tls");
        let ca = std::fs::read(tls.join("dev-ca.pem")).expect("dev CA");
        let mut identity = std::fs::read(tls.join("client.pem")).expect("client certificate");
        identity.extend(std::fs::read(tls.join("client.key")).expect("client key"));
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("a PEM CA")])
            .identity(reqwest::Identity::from_pem(&identity).expect("a PEM identity"))
            .build()
            .expect("an mTLS client")
    }

    /// The id of the first care gap of `patient` as `token`'s caller sees it (`None` when the
    /// rules find none).
    pub async fn first_gap(&self, token: &str, patient: &str) -> Option<String> {
        let body: serde_json::Value = self
            .client()
            .get(format!(
                "{}/api/v1/care-gaps/patient/{}",
                self.public,
                url_encode(patient)
            ))
            .bearer_auth(token)
            .header("x-purpose-of-use", "TREAT")
            .header("x-access-reason", "canary suite")
            .send()
            .await
            .expect("care gaps")
            .json()
            .await
            .expect("a care-gap body");
        body["care_gaps"][0]["gap_id"].as_str().map(str::to_string)
    }

    /// The canaries of the simulator the gateway synced (the same configuration).
    pub fn record_canaries(patients: u64, seed: u64) -> Vec<String> {
        kipu_sim::Simulator::new(&kipu_sim::SimConfig {
            patients,
            seed,
            ..kipu_sim::SimConfig::default()
        })
        .expect("a simulator configuration")
        .canaries()
    }

    fn kek(&self) -> Arc<sealed::SoftwareKeyProvider> {
        Arc::new(
            sealed::SoftwareKeyProvider::from_key_file(&self.dir.path().join("dev-kek.key"))
                .expect("the development KEK"),
        )
    }

    /// `(user, patient, other)`: a current care-team member (Kipu user id) of `patient`, and a
    /// patient whose team does not include that member; from the store the gateway synced.
    pub async fn care_team_fixture(&self) -> (String, String, String) {
        let db = store::Database::connect(&store::BackendConfig::Sqlite {
            path: self.dir.path().join("store.db"),
        })
        .await
        .expect("open the store");
        let store = db
            .open(self.kek(), store::TtlPolicy::default())
            .await
            .expect("unseal the store");
        let today = chrono::Utc::now().date_naive().to_string();
        let mut teams: Vec<(String, Vec<String>)> = Vec::new();
        for r in store.list_kind("ehr.care_team").await.expect("care teams") {
            let v: serde_json::Value = serde_json::from_slice(r.value.expose()).expect("JSON");
            let members = v["care_team"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|m| m["end_date"].as_str().is_none_or(|d| d >= today.as_str()))
                        .map(|m| m["user_id"].to_string())
                        .collect()
                })
                .unwrap_or_default();
            let patient = r
                .patient
                .map(|p| p.expose().clone())
                .or_else(|| v["patient_id"].as_str().map(str::to_string))
                .expect("a care team names its patient");
            teams.push((patient, members));
        }
        for (patient, members) in &teams {
            for user in members {
                if let Some((other, _)) = teams.iter().find(|(_, m)| !m.contains(user)) {
                    return (user.clone(), patient.clone(), other.clone());
                }
            }
        }
        panic!("the synced store has no usable care team");
    }

    /// A bearer token for every caller: clinician and service as `kipu-user-<user>`.
    pub async fn tokens(&self, user: &str) -> HashMap<Who, String> {
        let dir = self.dir.path();
        let keys = Arc::new(
            audit::FileKeys::open_or_create(&dir.join("audit-keys"), "phigate-audit", self.kek())
                .expect("audit keys"),
        );
        let log = audit::AuditLog::open(
            audit::LogConfig::new(audit::Storage::Sqlite {
                path: dir.join("audit.db"),
            }),
            keys.clone(),
        )
        .await
        .expect("open the audit log");
        let access = access::Access::open(access::AccessConfig::new(
            access::Backend::Sqlite {
                path: dir.join("access.db"),
            },
            self.kek(),
            log,
            keys,
            "phigate",
            "phigate-api",
        ))
        .await
        .expect("open access");
        let team = format!("kipu-user-{user}");
        let mut out = HashMap::new();
        for (who, service, role) in [
            (Who::Clinician, team.as_str(), access::Role::Clinician),
            (Who::Service, team.as_str(), access::Role::Service),
            (Who::Analyst, "canary-analyst", access::Role::Analyst),
            (Who::Auditor, "canary-auditor", access::Role::Auditor),
        ] {
            let key = access
                .create_api_key("admin:canary", service, &[role], None)
                .await
                .expect("create an API key");
            use secrecy::ExposeSecret as _;
            let resp = self
                .client()
                .post(format!("{}/auth/token", self.public))
                .header("x-api-key", key.secret.expose_secret())
                .send()
                .await
                .expect("token exchange");
            assert_eq!(resp.status(), 200, "token exchange for {who:?}");
            let body: serde_json::Value = resp.json().await.expect("a token body");
            out.insert(
                who,
                body["access_token"]
                    .as_str()
                    .expect("an access token")
                    .to_string(),
            );
        }
        out
    }

    /// Sends every request and returns what it found: a status not allowed, a canary in a
    /// response. Also returns how many bodies allowed the record's PHI carried some (so that
    /// the test can prove the record's paths were really exercised).
    pub async fn run(
        &self,
        requests: &[GatewayRequest],
        fill: &dyn Fn(&str, bool) -> String,
        tokens: &HashMap<Who, String>,
        record: &[&str],
        sent: &[&str],
    ) -> (Vec<Finding>, usize) {
        let (client, mtls) = (self.client(), self.mtls_client());
        let mut findings = Vec::new();
        let mut phi_served = 0;
        for r in requests {
            let name = r.name();
            let (base, client) = match r.who {
                Who::Mtls => (&self.mtls, &mtls),
                _ => (&self.public, &client),
            };
            let url = format!("{base}{}", fill(&r.path, true));
            let mut req = match r.method {
                "POST" => client.post(&url),
                _ => client.get(&url),
            };
            let mut headers: Vec<(&str, String)> = vec![
                ("x-purpose-of-use", "TREAT".into()),
                ("x-access-reason", "canary suite".into()),
            ];
            for (k, v) in &r.headers {
                headers.retain(|(h, _)| h != k);
                headers.push((k, fill(v, false)));
            }
            for (k, v) in headers.iter().filter(|(_, v)| !v.is_empty()) {
                req = req.header(*k, v.as_str());
            }
            if let Some(t) = tokens.get(&r.who) {
                req = req.bearer_auth(t);
            }
            if let Some(b) = &r.body {
                req = req
                    .header("content-type", "application/json")
                    .body(fill(b, false));
            }
            let resp = req.send().await.expect("send a request to the gateway");
            let status = resp.status().as_u16();
            if !r.status.contains(&status) {
                findings.push(Finding {
                    invocation: name.clone(),
                    place: format!("status (got {status})"),
                    canary: format!("expected one of {:?}", r.status),
                });
            }
            let head = format!("{:?}", resp.headers()).into_bytes();
            let body = resp.bytes().await.expect("a response body").to_vec();
            if r.record_phi && record.iter().any(|c| contains(&body, c.as_bytes())) {
                phi_served += 1;
            }
            for c in record.iter().chain(sent) {
                let body_ok =
                    (r.record_phi && record.contains(c)) || (r.echoes_sent && sent.contains(c));
                for (place, bytes, allowed) in [
                    ("response headers", &head, false),
                    ("response body", &body, body_ok),
                ] {
                    if !allowed && contains(bytes, c.as_bytes()) {
                        findings.push(Finding {
                            invocation: name.clone(),
                            place: place.into(),
                            canary: (*c).into(),
                        });
                    }
                }
            }
        }
        (findings, phi_served)
    }

    /// Stops the gateway and returns every canary in its stdout, stderr and data directory.
    pub fn stop(mut self, canaries: &[&str]) -> Vec<Finding> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stdout = self
            .stdout
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        assert!(!stderr.is_empty(), "the gateway logs at trace level");
        let mut findings = Vec::new();
        let files: Vec<(String, Vec<u8>)> = files_under(self.dir.path())
            .into_iter()
            .map(|f| {
                let rel = f
                    .strip_prefix(self.dir.path())
                    .unwrap_or(&f)
                    .display()
                    .to_string();
                (rel, std::fs::read(&f).unwrap_or_default())
            })
            .collect();
        for c in canaries {
            for (place, bytes) in [("stdout", &stdout), ("stderr", &stderr)] {
                if contains(bytes, c.as_bytes()) {
                    findings.push(Finding {
                        invocation: "phigate serve".into(),
                        place: place.into(),
                        canary: (*c).into(),
                    });
                }
            }
            for (rel, bytes) in &files {
                if contains(bytes, c.as_bytes()) || rel.contains(c) {
                    findings.push(Finding {
                        invocation: "phigate serve".into(),
                        place: format!("file {rel}"),
                        canary: (*c).into(),
                    });
                }
            }
        }
        findings
    }
}

/// Percent-encodes everything but ASCII letters and digits.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
