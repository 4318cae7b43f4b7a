//! Crash safety: a child process appends in a loop (eight concurrent appenders, so group-commit
//! batches are in flight) and prints every acknowledged index; it is killed with SIGKILL at a
//! varying point. After each of the repetitions (20 by default, `AUDIT_CRASH_REPS` for more,
//! see `bench/audit_crash.sh`) every acknowledged entry must be present with its content and
//! the whole log must verify.

mod common;

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use audit::*;
use common::*;

const CHILD_ENV: &str = "AUDIT_CRASH_CHILD_DIR";

/// Child mode: append until killed (bounded, in case the parent dies).
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let keys = keys(&dir);
    let rep = std::env::var("AUDIT_CRASH_REP").unwrap();
    runtime().block_on(async {
        let log = AuditLog::open(sqlite_config(&dir, Duration::from_millis(20)), keys.clone())
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for worker in 0..8u64 {
            let log = log.clone();
            let keys = Arc::clone(&keys);
            let rep = rep.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..20_000u64 {
                    let principal = format!("crash:{rep}:{worker}:{n}");
                    let index = log
                        .append(phi_read(keys.as_ref(), &principal, "P-1", n))
                        .await
                        .unwrap();
                    println!("\naudit-ack:{index}:{principal}");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn sigkill_during_appends_never_loses_an_acknowledged_entry() {
    let reps: u64 = std::env::var("AUDIT_CRASH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let verifier = keys(dir.path()).note_verifier();
    let exe = std::env::current_exe().unwrap();
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    for rep in 0..reps {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("AUDIT_CRASH_REP", rep.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let kill_after = 25 + (rep * 37) % 400;
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut seen = 0;
        let mut line = String::new();
        let record = |line: &str, acked: &mut BTreeMap<u64, String>| -> bool {
            if let Some((_, rest)) = line.trim_end().split_once("audit-ack:") {
                let (index, principal) = rest.split_once(':').unwrap();
                let previous = acked.insert(index.parse().unwrap(), principal.to_string());
                assert!(previous.is_none(), "index {index} acknowledged twice");
                return true;
            }
            false
        };
        while seen < kill_after {
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 {
                panic!("child writer exited early");
            }
            if record(&line, &mut acked) {
                seen += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Acknowledgements printed before the kill are still in the pipe.
        loop {
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 {
                break;
            }
            record(&line, &mut acked);
        }

        runtime().block_on(async {
            let log = AuditLog::open_read_only(&Storage::Sqlite {
                path: dir.path().join("audit.db"),
            })
            .await
            .unwrap();
            let report = verify_log(&log, &verifier).await.unwrap();
            assert!(report.is_intact(), "rep {rep}: {report:?}");
            let stored: BTreeMap<u64, String> = log
                .query(&QueryFilter::default())
                .await
                .unwrap()
                .into_iter()
                .map(|(e, _)| (e.index, e.event.principal().unwrap().to_string()))
                .collect();
            for (index, principal) in &acked {
                assert_eq!(
                    stored.get(index),
                    Some(principal),
                    "rep {rep}: acknowledged entry {index} lost"
                );
            }
            log.close().await;
        });
    }
    assert!(acked.len() as u64 >= reps * 25);
}
