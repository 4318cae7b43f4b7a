//! Prints AES-256-GCM throughput in the units of `openssl speed -evp aes-256-gcm` (thousands of
//! bytes per second of CPU time), for `bench/crypto.sh` to compare in one run.
//!
//! Usage: aead_throughput SECONDS [SIZE...]   (prints lines `<layer> <block size> <kB/s>`)
//!
//! Like `openssl speed` (which divides by the process's user CPU time unless `-elapsed` is
//! given), rates are per second of this thread's CPU time, read from
//! `/proc/thread-self/schedstat`, so that time the shared machine gives to other processes
//! counts against neither side. With `PHIGATE_BENCH_CLOCK=wall` (what `bench/crypto.sh` sets
//! for its `wall` mode, next to `openssl speed -elapsed`), or where that file is missing, the
//! wall clock is used.
//!
//! Layers (the judged ones are phigate's real per-message paths):
//!
//! * `aead_core`: the primitive as `openssl speed` drives OpenSSL: prepared key, fixed nonce,
//!   encryption in place. Reference only.
//! * `aead_encrypt` (judged): `DataKey::encrypt`: random nonce, output buffer, copy, seal.
//! * `aead_decrypt` (judged): `DataKey::decrypt` and dropping the result (the wipe).
//! * `envelope_seal` / `envelope_open`: `Keyring::seal`/`open`, which add a fresh data key per
//!   object (key schedule), its wrap/unwrap under the KEK and the framing.
//! * `ref_drbg_per_nonce`: the previous encrypt path (one DRBG call per nonce), for comparison.
//! * `ref_randnonce_key`: aws-lc's `RandomizedNonceKey` (nonce drawn inside aws-lc per call)
//!   with the same output buffer, for comparison.
//! * `ref_zeroizing_vec_open`: the previous decrypt path (`Zeroizing<Vec<u8>>`, byte-wise
//!   volatile wipe), for comparison.

use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, RandomizedNonceKey, UnboundKey};
use sealed::{DataKey, Keyring, ObjectContext, SoftwareKeyProvider};
use zeroize::Zeroizing;

/// This thread's CPU time in nanoseconds, if the kernel reports it.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

struct Clock {
    cpu: bool,
}

impl Clock {
    fn new() -> Self {
        let wall = std::env::var("PHIGATE_BENCH_CLOCK").is_ok_and(|v| v == "wall");
        let cpu = !wall && thread_cpu_ns().is_some();
        if !cpu && !wall {
            eprintln!("note: /proc/thread-self/schedstat unavailable; using wall-clock time");
        }
        Self { cpu }
    }

    fn now_ns(&self, wall: Instant) -> u64 {
        if self.cpu {
            thread_cpu_ns().unwrap_or(0)
        } else {
            u64::try_from(wall.elapsed().as_nanos()).unwrap_or(u64::MAX)
        }
    }

    /// Thousands of bytes per second of `op` on `size`-byte blocks over about `seconds`.
    fn rate(&self, seconds: f64, size: usize, mut op: impl FnMut()) -> f64 {
        // Batch so that reading the clock (a /proc read) is a negligible share of the time.
        let mut batch: u64 = 1;
        loop {
            let start = Instant::now();
            for _ in 0..batch {
                op();
            }
            if start.elapsed().as_millis() >= 20 || batch >= 1 << 24 {
                break;
            }
            batch *= 2;
        }
        let wall = Instant::now();
        let budget = (seconds * 1e9) as u64;
        let start = self.now_ns(wall);
        let mut ops: u64 = 0;
        let mut spent;
        loop {
            for _ in 0..batch {
                op();
            }
            ops += batch;
            spent = self.now_ns(wall).saturating_sub(start);
            if spent >= budget {
                break;
            }
        }
        (ops as f64 * size as f64) / (spent as f64 / 1e9) / 1000.0
    }
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let sizes: Vec<usize> = std::env::args()
        .skip(2)
        .filter_map(|s| s.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1024, 1024 * 1024]
    } else {
        sizes
    };
    let clock = Clock::new();
    let key = DataKey::generate().expect("key");
    let provider = Arc::new(
        SoftwareKeyProvider::from_root(DataKey::generate().expect("root"), "env")
            .expect("provider"),
    );
    let ring = Keyring::new(provider, Vec::new()).expect("ring");
    ring.initialize().expect("init");
    let ctx = ObjectContext::new("bench", b"object-1");
    let aad = b"phigate/sealed/payload/v1 bench";
    let core_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.expose()).expect("key"));
    let rand_key = RandomizedNonceKey::new(&AES_256_GCM, key.expose()).expect("key");

    for size in sizes {
        let data = vec![0x5au8; size];
        let report = |layer: &str, rate: f64| println!("{layer} {size} {rate:.2}");

        let mut buf = data.clone();
        report(
            "aead_core",
            clock.rate(seconds, size, || {
                let nonce = Nonce::assume_unique_for_key([7u8; 12]);
                let _tag = std::hint::black_box(
                    core_key
                        .seal_in_place_separate_tag(nonce, Aad::empty(), &mut buf)
                        .expect("seal"),
                );
            }),
        );
        report(
            "aead_encrypt",
            clock.rate(seconds, size, || {
                std::hint::black_box(key.encrypt(aad, &data).expect("encrypt"));
            }),
        );
        let sealed = key.encrypt(aad, &data).expect("encrypt");
        report(
            "aead_decrypt",
            clock.rate(seconds, size, || {
                std::hint::black_box(key.decrypt(aad, &sealed).expect("decrypt"));
            }),
        );
        report(
            "envelope_seal",
            clock.rate(seconds, size, || {
                std::hint::black_box(ring.seal(&ctx, &data).expect("seal"));
            }),
        );
        let envelope = ring.seal(&ctx, &data).expect("seal");
        report(
            "envelope_open",
            clock.rate(seconds, size, || {
                std::hint::black_box(ring.open(&ctx, &envelope).expect("open"));
            }),
        );
        report(
            "ref_drbg_per_nonce",
            clock.rate(seconds, size, || {
                let mut nonce = [0u8; 12];
                aws_lc_rs::rand::fill(&mut nonce).expect("rand");
                let mut out = Vec::with_capacity(12 + size + 16);
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&data);
                let tag = core_key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        &mut out[12..],
                    )
                    .expect("seal");
                out.extend_from_slice(tag.as_ref());
                std::hint::black_box(out);
            }),
        );
        report(
            "ref_randnonce_key",
            clock.rate(seconds, size, || {
                let mut out = Vec::with_capacity(12 + size + 16);
                out.extend_from_slice(&[0u8; 12]);
                out.extend_from_slice(&data);
                let (nonce, tag) = rand_key
                    .seal_in_place_separate_tag(Aad::from(aad), &mut out[12..])
                    .expect("seal");
                out[..12].copy_from_slice(nonce.as_ref());
                out.extend_from_slice(tag.as_ref());
                std::hint::black_box(out);
            }),
        );
        report(
            "ref_zeroizing_vec_open",
            clock.rate(seconds, size, || {
                let (nonce, body) = sealed.split_at(12);
                let mut buf = Zeroizing::new(body.to_vec());
                let len = core_key
                    .open_in_place(
                        Nonce::try_assume_unique_for_key(nonce).expect("nonce"),
                        Aad::from(aad),
                        buf.as_mut_slice(),
                    )
                    .expect("open")
                    .len();
                buf.truncate(len);
                std::hint::black_box(buf);
            }),
        );
    }
}
