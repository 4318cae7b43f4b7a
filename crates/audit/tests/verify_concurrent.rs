//! Verification pinned to a tree head runs while appends continue (SQLite; the PostgreSQL
//! counterpart is in `postgres.rs`).

mod common;

use std::time::Duration;

use audit::*;
use common::*;

#[test]
fn sqlite_verification_while_appending_is_intact_and_covers_every_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    runtime().block_on(async {
        let mut cfg = sqlite_config(dir.path(), Duration::from_millis(3));
        // Copy search columns often, so verification also meets rows copied mid-run.
        cfg.search_batch = 256;
        let log = AuditLog::open(cfg, keys.clone()).await.unwrap();
        let overlapped = verify_while_appending(&log, &keys, 1500, 6).await;
        assert!(overlapped > 0, "no verification ran while appends went on");
        log.close().await;
    });
}
