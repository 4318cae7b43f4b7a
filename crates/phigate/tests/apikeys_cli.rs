//! `phigate keys create|list|revoke|rotate-api-key` end to end: the real binary, SQLite files in
//! a temporary data directory.

use std::path::Path;
use std::process::{Command, Output};

const KEK: &str = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=";

fn phigate(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phigate"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PHIGATE_DATA_DIR", data)
        .env("PHIGATE_KEK", KEK)
        .args(args)
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn printed_key(o: &Output) -> String {
    out(o)
        .lines()
        .find(|l| l.starts_with("phg_"))
        .expect("the key is printed")
        .to_owned()
}

fn list(data: &Path) -> serde_json::Value {
    let o = phigate(data, &["keys", "list", "--json"]);
    assert!(o.status.success(), "{}", err(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn create_prints_the_key_once_and_list_never_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = phigate(
        &data,
        &[
            "keys",
            "create",
            "--service",
            "lab-feed",
            "--role",
            "service",
            "--role",
            "analyst",
            "--expires",
            "90d",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let key = printed_key(&o);
    assert_eq!(key.len(), 64);
    assert!(out(&o).contains("shown only this once"));
    assert!(!err(&o).contains(&key));

    let listed = list(&data);
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["service"], "lab-feed");
    assert_eq!(rows[0]["roles"], serde_json::json!(["analyst", "service"]));
    assert!(
        rows[0]["expires_at"].as_i64().unwrap() - rows[0]["created_at"].as_i64().unwrap()
            == 90 * 86_400
    );
    let id = rows[0]["id"].as_str().unwrap();
    assert!(key.starts_with(&format!("phg_{id}_")));
    let table = phigate(&data, &["keys", "list"]);
    assert!(out(&table).contains("lab-feed") && out(&table).contains("active"));
    let secret = key.rsplit_once('_').unwrap().1;
    assert!(!out(&table).contains(secret) && !err(&table).contains(secret));
    // Neither database file holds the key.
    for file in ["access.db", "audit.db"] {
        let bytes = std::fs::read(data.join(file)).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "{file} holds the key"
        );
    }
}

#[test]
fn revoke_and_rotate_change_the_listed_state_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = phigate(
        &data,
        &["keys", "create", "--service", "etl", "--role", "service"],
    );
    assert!(o.status.success(), "{}", err(&o));
    let first = list(&data)[0]["id"].as_str().unwrap().to_owned();

    let r = phigate(
        &data,
        &["keys", "rotate-api-key", &first, "--overlap", "1h"],
    );
    assert!(r.status.success(), "{}", err(&r));
    let new_key = printed_key(&r);
    let rows = list(&data);
    let old = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == first.as_str())
        .unwrap()
        .clone();
    let new_id = old["replaced_by"].as_str().unwrap().to_owned();
    assert!(new_key.starts_with(&format!("phg_{new_id}_")));
    let overlap = old["expires_at"].as_i64().unwrap() - chrono_now();
    assert!((3590..=3600).contains(&overlap), "overlap {overlap}");

    let v = phigate(&data, &["keys", "revoke", &new_id]);
    assert!(v.status.success(), "{}", err(&v));
    let rows = list(&data);
    let revoked = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == new_id.as_str())
        .unwrap();
    assert!(revoked["revoked_at"].is_i64());
    // Revoking twice is a usage error.
    assert_eq!(
        phigate(&data, &["keys", "revoke", &new_id]).status.code(),
        Some(2)
    );

    // The audit log verifies and holds the lifecycle events (no secrets).
    let audit = phigate(&data, &["audit", "export", "--kind", "key_lifecycle"]);
    assert!(audit.status.success(), "{}", err(&audit));
    let text = out(&audit);
    assert!(
        text.contains(&format!("apikey:{first}"))
            && text.contains("\"generated\"")
            && text.contains("\"rotated\"")
            && text.contains("\"retired\"")
    );
    assert!(!text.contains(new_key.rsplit_once('_').unwrap().1));
    let verify = phigate(&data, &["audit", "verify"]);
    assert!(verify.status.success(), "{}", err(&verify));
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn bad_roles_durations_and_unknown_keys_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for args in [
        &["keys", "create", "--service", "etl", "--role", "wizard"][..],
        &["keys", "create", "--service", "etl", "--role", "admin"][..],
        &[
            "keys",
            "create",
            "--service",
            "Bad Name",
            "--role",
            "service",
        ][..],
        &[
            "keys",
            "create",
            "--service",
            "etl",
            "--role",
            "service",
            "--expires",
            "soon",
        ][..],
        &["keys", "revoke", "0000000000000000"][..],
        &["keys", "rotate-api-key", "0000000000000000"][..],
    ] {
        let o = phigate(&data, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
        assert!(err(&o).starts_with("error: "), "{args:?}: {}", err(&o));
    }
    let o = phigate(
        &data,
        &["keys", "create", "--service", "etl", "--role", "admin"],
    );
    assert!(err(&o).contains("admin"));
    // No KEK configured: a configuration error naming the fix.
    let o = Command::new(env!("CARGO_BIN_EXE_phigate"))
        .env_clear()
        .env("PHIGATE_DATA_DIR", &data)
        .args(["keys", "list"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("PHIGATE_KEK"));
}
