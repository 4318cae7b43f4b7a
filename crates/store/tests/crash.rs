//! `kill -9` during writes: no committed record is lost and no half-written record exists.
//!
//! The parent initialises a SQLite store, then re-runs this test binary as a child (the
//! `#[ignore]`d `crash_writer_child`, selected by name, with `PHIGATE_STORE_CRASH_DB` set). The
//! child writes records in a loop and prints `committed <n>` after each `put` returns. The parent
//! reads those lines, sends SIGKILL mid-stream, reopens the store and checks every reported id.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::provider;
use store::{BackendConfig, Database, TtlPolicy};

fn value_for(n: u64) -> Vec<u8> {
    let mut v = format!("record-{n}-").into_bytes();
    v.resize(4096 + (n as usize % 512), (n % 251) as u8);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_loses_no_committed_record_and_leaves_no_torn_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let config = BackendConfig::Sqlite { path: path.clone() };
    Database::connect(&config)
        .await
        .unwrap()
        .init_keys(provider(7))
        .await
        .unwrap();

    let mut all_committed: Vec<u64> = Vec::new();
    for round in 0..5u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("PHIGATE_STORE_CRASH_DB", &path)
            .env("PHIGATE_STORE_CRASH_START", (round * 1_000_000).to_string())
            .args([
                "--ignored",
                "--exact",
                "crash_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let kill_after = 20 + round * 7;
        let mut seen = 0;
        while let Some(Ok(line)) = lines.next() {
            if let Some(n) = line.strip_prefix("committed ") {
                all_committed.push(n.trim().parse().unwrap());
                seen += 1;
                if seen == kill_after {
                    child.kill().unwrap(); // SIGKILL on Unix
                    break;
                }
            }
        }
        // Lines already printed before the kill are commits too.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("committed ") {
                all_committed.push(n.trim().parse().unwrap());
            }
        }
        child.wait().unwrap();
        assert!(
            seen >= kill_after,
            "round {round}: child stopped early after {seen} commits"
        );

        let store = Database::connect(&config)
            .await
            .unwrap()
            .open(provider(7), TtlPolicy::default())
            .await
            .unwrap();
        for n in &all_committed {
            let rec = store
                .get("crash", &n.to_string())
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("committed record {n} lost"));
            assert_eq!(rec.value.expose(), &value_for(*n), "record {n} is intact");
        }
        let (ok, bad) = store.verify_all().await.unwrap();
        assert_eq!(bad, 0, "round {round}: {bad} rows do not open");
        assert!(ok >= all_committed.len() as u64);
        // Count the test's own kind only: the store keeps records of its own (its sealed HMAC
        // key) that `verify_all` also counts. Each round may also have landed the one write
        // that was in flight when it was killed.
        let crash_rows = store
            .stats()
            .await
            .unwrap()
            .live_by_kind
            .get("crash")
            .copied()
            .unwrap_or(0);
        assert!(crash_rows >= all_committed.len() as u64);
        assert!(
            crash_rows <= all_committed.len() as u64 + round + 1,
            "round {round}: rows appeared that nobody wrote"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of kill_9_during_writes_loses_no_committed_record_and_leaves_no_torn_one"]
async fn crash_writer_child() {
    let path =
        PathBuf::from(std::env::var_os("PHIGATE_STORE_CRASH_DB").expect("run by the crash test"));
    let start: u64 = std::env::var("PHIGATE_STORE_CRASH_START")
        .unwrap()
        .parse()
        .unwrap();
    let store = Database::connect(&BackendConfig::Sqlite { path })
        .await
        .unwrap()
        .open(provider(7), TtlPolicy::default())
        .await
        .unwrap();
    let mut out = std::io::stdout().lock();
    for n in start.. {
        store
            .put(
                "crash",
                &n.to_string(),
                Some("crash-patient"),
                &value_for(n),
            )
            .await
            .unwrap();
        writeln!(out, "committed {n}").unwrap();
        out.flush().unwrap();
    }
}
