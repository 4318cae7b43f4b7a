//! The canary harness: runs phigate as real processes at `PHIGATE_LOG=trace` and proves that
//! none of a list of canary strings reaches stdout, stderr or any file written under the
//! process's data directory.
//!
//! Each invocation gets a fresh data directory (passed as `--data-dir`, `PHIGATE_DATA_DIR`,
//! `HOME` and `XDG_DATA_HOME`, so nothing lands outside it) and a separate input directory for
//! files the test supplies, which is not scanned. In arguments, `{data}` and `{input}` are
//! replaced with those directories' paths.
//!
//! A finding names the invocation, the stream or file, and the canary itself, and nothing of
//! the text around it: a canary report must not become a leak of its own.

#![allow(dead_code)]

pub mod gateway;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One phigate run.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// A short name used in reports.
    pub name: String,
    /// Arguments after `phigate` (with `{data}` / `{input}` placeholders).
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Bytes written to stdin (stdin is closed otherwise).
    pub stdin: Option<Vec<u8>>,
    /// Files created in the input directory before the run: (file name, contents).
    pub input_files: Vec<(String, Vec<u8>)>,
    /// The exit code the run must end with (`None`: any). Pin it: a run that fails before
    /// reaching the path under test proves nothing.
    pub expect_exit: Option<i32>,
    /// The run is killed after this long (a hung server must not hang the suite).
    pub timeout: Duration,
    /// stdout is the command's data channel (e.g. `kipu get` prints the records asked for): it
    /// is not scanned for leaks, and must instead carry at least one canary, proving the path
    /// really handled PHI. stderr and files are scanned as always.
    pub stdout_is_data: bool,
    /// Commands run first in the same data directory (e.g. `keys init`), each of which must
    /// succeed; their output is scanned like the invocation's own.
    pub setup: Vec<Vec<String>>,
}

impl Invocation {
    /// An invocation of `args`, expected to succeed.
    pub fn new(name: &str, args: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            args: args.iter().map(|a| (*a).to_string()).collect(),
            env: Vec::new(),
            stdin: None,
            input_files: Vec::new(),
            expect_exit: Some(0),
            timeout: Duration::from_secs(120),
            stdout_is_data: false,
            setup: Vec::new(),
        }
    }

    /// Runs `args` first, in the same data directory and environment (no stdin).
    pub fn after(mut self, args: &[&str]) -> Self {
        self.setup
            .push(args.iter().map(|a| (*a).to_string()).collect());
        self
    }

    /// Adds every environment variable of `vars` (e.g. a simulator's credentials).
    pub fn envs(mut self, vars: &[(String, String)]) -> Self {
        self.env.extend(vars.iter().cloned());
        self
    }

    /// Marks stdout as the command's data channel (see [`Invocation::stdout_is_data`]).
    pub fn stdout_is_data(mut self) -> Self {
        self.stdout_is_data = true;
        self
    }

    /// Sets stdin.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Adds an input file.
    pub fn file(mut self, name: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.input_files.push((name.to_string(), contents.into()));
        self
    }

    /// Sets the expected exit code (`None`: any).
    pub fn exits(mut self, code: Option<i32>) -> Self {
        self.expect_exit = code;
        self
    }
}

/// Where a canary was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The invocation's name.
    pub invocation: String,
    /// `stdout`, `stderr`, `exit status`, or `file <path relative to the data dir>`.
    pub place: String,
    /// The canary found (or, for an exit status finding, what was expected).
    pub canary: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invocation `{}`: `{}` in {}",
            self.invocation, self.canary, self.place
        )
    }
}

/// Runs every invocation and returns every canary occurrence and every unexpected exit status.
pub fn run_and_check(invocations: &[Invocation], canaries: &[&str]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for inv in invocations {
        let data = tempfile::tempdir().expect("create a data dir");
        let input = tempfile::tempdir().expect("create an input dir");
        for (name, contents) in &inv.input_files {
            std::fs::write(input.path().join(name), contents).expect("write an input file");
        }
        let fill = |arg: &str| {
            arg.replace("{data}", &data.path().display().to_string())
                .replace("{input}", &input.path().display().to_string())
        };
        for step in &inv.setup {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_phigate"));
            cmd.arg("--data-dir")
                .arg(data.path())
                .args(step.iter().map(|a| fill(a)))
                .env("PHIGATE_LOG", "trace")
                .env("PHIGATE_DATA_DIR", data.path())
                .env("HOME", data.path())
                .env("XDG_DATA_HOME", data.path())
                .env_remove("RUST_BACKTRACE")
                .stdin(Stdio::null());
            for (k, v) in &inv.env {
                cmd.env(k, fill(v));
            }
            let output = cmd.output().expect("run a setup step");
            let step_name = format!("{} (setup: {})", inv.name, step.join(" "));
            if !output.status.success() {
                findings.push(Finding {
                    invocation: step_name.clone(),
                    place: format!("exit status (got {:?})", output.status.code()),
                    canary: "expected exit 0".into(),
                });
            }
            for canary in canaries {
                for (place, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
                    if contains(bytes, canary.as_bytes()) {
                        findings.push(Finding {
                            invocation: step_name.clone(),
                            place: place.into(),
                            canary: (*canary).into(),
                        });
                    }
                }
            }
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_phigate"));
        cmd.arg("--data-dir")
            .arg(data.path())
            .args(inv.args.iter().map(|a| fill(a)))
            .env("PHIGATE_LOG", "trace")
            .env("PHIGATE_DATA_DIR", data.path())
            .env("HOME", data.path())
            .env("XDG_DATA_HOME", data.path())
            .env_remove("RUST_BACKTRACE")
            .stdin(if inv.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &inv.env {
            cmd.env(k, fill(v));
        }
        let mut child = cmd.spawn().expect("spawn phigate");
        if let Some(bytes) = &inv.stdin {
            let mut stdin = child.stdin.take().expect("stdin is piped");
            // A command that exits before reading all of stdin closes the pipe; that is its
            // business, not a harness failure.
            let _ = stdin.write_all(bytes);
        }
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for phigate") {
                break Some(status);
            }
            if started.elapsed() > inv.timeout {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = child.wait_with_output().expect("collect phigate output");
        match (status.and_then(|s| s.code()), inv.expect_exit) {
            (code, Some(expected)) if code != Some(expected) => findings.push(Finding {
                invocation: inv.name.clone(),
                place: format!("exit status (got {code:?})"),
                canary: format!("expected exit {expected}"),
            }),
            _ => {}
        }
        if inv.stdout_is_data
            && !canaries
                .iter()
                .any(|c| contains(&output.stdout, c.as_bytes()))
        {
            findings.push(Finding {
                invocation: inv.name.clone(),
                place: "stdout (no canary: the path was not exercised)".into(),
                canary: "any".into(),
            });
        }
        for canary in canaries {
            let c = canary.as_bytes();
            for (place, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
                if place == "stdout" && inv.stdout_is_data {
                    continue;
                }
                if contains(bytes, c) {
                    findings.push(Finding {
                        invocation: inv.name.clone(),
                        place: place.into(),
                        canary: (*canary).into(),
                    });
                }
            }
        }
        for file in files_under(data.path()) {
            let rel = file
                .strip_prefix(data.path())
                .unwrap_or(&file)
                .display()
                .to_string();
            let bytes = std::fs::read(&file).unwrap_or_default();
            for canary in canaries {
                if contains(&bytes, canary.as_bytes()) || rel.contains(canary) {
                    findings.push(Finding {
                        invocation: inv.name.clone(),
                        place: format!("file {rel}"),
                        canary: (*canary).into(),
                    });
                }
            }
        }
    }
    findings
}

/// Panics listing every finding (invocation, place, canary) if there is any.
pub fn assert_no_canaries(invocations: &[Invocation], canaries: &[&str]) {
    let findings = run_and_check(invocations, canaries);
    if !findings.is_empty() {
        let list: Vec<String> = findings.iter().map(ToString::to_string).collect();
        panic!(
            "{} canary finding(s):\n  {}",
            findings.len(),
            list.join("\n  ")
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// A `phigate sim` process at trace log level, whose patients carry the canaries that the
/// invocations using it must not leak. Its own stdout, stderr and data directory are checked
/// too when it stops: the simulator's request logs are a PHI path like any other.
pub struct Simulator {
    name: String,
    child: std::process::Child,
    env: Vec<(String, String)>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
    stdout: std::thread::JoinHandle<Vec<u8>>,
    data: tempfile::TempDir,
    canaries: Vec<String>,
}

impl Simulator {
    /// Starts `phigate sim --patients N --seed S` plus `extra` arguments on a free loopback
    /// port and waits for its credentials.
    pub fn start(name: &str, patients: u64, seed: u64, extra: &[&str]) -> Self {
        use std::io::BufRead as _;
        let bin = env!("CARGO_BIN_EXE_phigate");
        let common = [
            "sim".to_string(),
            "--patients".into(),
            patients.to_string(),
            "--seed".into(),
            seed.to_string(),
        ];
        let listed = Command::new(bin)
            .args(&common)
            .arg("--list-canaries")
            .env("PHIGATE_LOG", "off")
            .output()
            .expect("run phigate sim --list-canaries");
        assert!(
            listed.status.success(),
            "phigate sim --list-canaries failed"
        );
        let canaries: Vec<String> = String::from_utf8(listed.stdout)
            .expect("canaries are UTF-8")
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        assert!(!canaries.is_empty(), "the simulator listed no canaries");

        let data = tempfile::tempdir().expect("create the simulator's data dir");
        let mut child = Command::new(bin)
            .arg("--data-dir")
            .arg(data.path())
            .args(&common)
            .args(extra)
            .env("PHIGATE_LOG", "trace")
            .env("HOME", data.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn phigate sim");
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
        let stderr = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stderr_pipe, &mut buf);
            buf
        });
        let mut reader = std::io::BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut head = Vec::new();
        let mut env = Vec::new();
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .expect("read the simulator's stdout");
            assert!(n > 0, "phigate sim exited before printing its credentials");
            head.extend_from_slice(line.as_bytes());
            if let Some((key, value)) = line
                .trim_end()
                .strip_prefix("export ")
                .and_then(|kv| kv.split_once('='))
            {
                env.push((key.to_string(), value.to_string()));
                if key == "KIPU_BASE_URL" {
                    break;
                }
            }
        }
        let stdout = std::thread::spawn(move || {
            let mut rest = head;
            let _ = std::io::Read::read_to_end(&mut reader, &mut rest);
            rest
        });
        Self {
            name: name.to_string(),
            child,
            env,
            stderr,
            stdout,
            data,
            canaries,
        }
    }

    /// The `KIPU_*` variables that point a client at this simulator.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The canaries its patients carry.
    pub fn canaries(&self) -> Vec<&str> {
        self.canaries.iter().map(String::as_str).collect()
    }

    /// Stops the simulator and returns the canaries found in its own output and files.
    pub fn stop(mut self, canaries: &[&str]) -> Vec<Finding> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stdout = self.stdout.join().expect("join the stdout reader");
        let stderr = self.stderr.join().expect("join the stderr reader");
        let mut findings = Vec::new();
        for canary in canaries {
            for (place, bytes) in [("stdout", &stdout), ("stderr", &stderr)] {
                if contains(bytes, canary.as_bytes()) {
                    findings.push(Finding {
                        invocation: self.name.clone(),
                        place: place.into(),
                        canary: (*canary).into(),
                    });
                }
            }
            for file in files_under(self.data.path()) {
                if contains(&std::fs::read(&file).unwrap_or_default(), canary.as_bytes()) {
                    findings.push(Finding {
                        invocation: self.name.clone(),
                        place: format!("file {}", file.display()),
                        canary: (*canary).into(),
                    });
                }
            }
        }
        findings
    }
}

/// Panics listing the findings, if any.
pub fn assert_none(findings: &[Finding]) {
    if !findings.is_empty() {
        let list: Vec<String> = findings.iter().map(ToString::to_string).collect();
        panic!(
            "{} canary finding(s):\n  {}",
            findings.len(),
            list.join("\n  ")
        );
    }
}
