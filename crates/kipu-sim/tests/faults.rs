//! Fault injection: rates, determinism, recovery on retry, and never before authentication.

mod common;

use common::{Req, start};
use kipu_sim::{FaultSpec, SimConfig};

fn config(spec: &str) -> SimConfig {
    SimConfig {
        patients: 50,
        faults: FaultSpec::parse(spec).unwrap(),
        ..SimConfig::default()
    }
}

#[derive(Debug, Default, PartialEq)]
struct Tally {
    ok: u32,
    s429: u32,
    s503: u32,
    transport: u32,
    short_body: u32,
}

async fn outcome(s: &common::Signer, target: String, t: &mut Tally) -> bool {
    match s.send(Req::get(target)).await {
        Err(_) => {
            t.transport += 1;
            false
        }
        Ok(r) => {
            let status = r.status().as_u16();
            if status == 429 {
                let secs: u32 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(secs == 1 || secs == 2, "Retry-After {secs}");
            }
            match (status, r.bytes().await) {
                (_, Err(_)) => t.short_body += 1,
                (200, Ok(_)) => {
                    t.ok += 1;
                    return true;
                }
                (429, Ok(_)) => t.s429 += 1,
                (503, Ok(_)) => t.s503 += 1,
                (500 | 502 | 504, Ok(_)) => {}
                (other, _) => panic!("unexpected status {other}"),
            }
            false
        }
    }
}

#[tokio::test]
async fn faults_occur_at_about_the_configured_rates_over_distinct_targets() {
    let (sim, s) = start(config(
        "429=0.1,503=0.1,reset=0.1,truncate=0.1,retry-after=2",
    ))
    .await;
    let mut t = Tally::default();
    let n = 1000;
    for i in 0..n {
        let q = format!("q{i}");
        outcome(&s, s.target("/api/roles", &[], &[("probe", &q)]), &mut t).await;
    }
    // Expected 100 of each fault and 600 successes; binomial sd is about 9.5 and 15.5.
    for (name, got, want) in [
        ("429", t.s429, 100),
        ("503", t.s503, 100),
        ("reset", t.transport, 100),
        ("truncate", t.short_body, 100),
        ("ok", t.ok, 600),
    ] {
        let tolerance = if name == "ok" { 80 } else { 45 };
        assert!(
            got.abs_diff(want) <= tolerance,
            "{name}: {got} vs {want} ({t:?})"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_retried_target_eventually_succeeds() {
    let (sim, s) = start(config("429=0.3,500=0.2,reset=0.1,truncate=0.1")).await;
    for i in 0..40 {
        let p = (i % 3 + 1).to_string();
        let target = s.target(
            "/api/patients/census",
            &[],
            &[("page", &p), ("per", "7"), ("n", &i.to_string())],
        );
        let mut t = Tally::default();
        let mut attempts = 0;
        while !outcome(&s, target.clone(), &mut t).await {
            attempts += 1;
            assert!(attempts < 60, "target never succeeded");
        }
    }
    sim.shutdown().await;
}

async fn decisions(seed: u64, order: &[usize]) -> Vec<(usize, u16)> {
    let (sim, s) = start(SimConfig {
        seed,
        ..config("429=0.25,503=0.25")
    })
    .await;
    let mut out = Vec::new();
    for &i in order {
        let r = s
            .send(Req::get(s.target(
                "/api/flags",
                &[],
                &[("i", &i.to_string())],
            )))
            .await
            .unwrap();
        out.push((i, r.status().as_u16()));
    }
    sim.shutdown().await;
    out.sort_unstable();
    out
}

#[tokio::test]
async fn fault_decisions_depend_on_seed_and_target_not_on_request_order() {
    let forward: Vec<usize> = (0..60).flat_map(|i| [i, i]).collect();
    let backward: Vec<usize> = forward.iter().rev().copied().collect();
    let a = decisions(5, &forward).await;
    assert_eq!(a, decisions(5, &backward).await);
    assert_ne!(a, decisions(6, &forward).await);
}

#[tokio::test]
async fn a_bad_signature_is_always_a_plain_401_even_when_every_request_faults() {
    let (sim, s) = start(config("503=0.5,reset=0.5")).await;
    let target = s.target("/api/roles", &[], &[]);
    for _ in 0..20 {
        let r = s
            .send(Req {
                date_offset: -5000,
                ..Req::get(target.clone())
            })
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }
    sim.shutdown().await;
}
