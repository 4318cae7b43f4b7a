//! Prints AES-256-GCM throughput in the same units as `openssl speed -evp aes-256-gcm`
//! (thousands of bytes per second), for `bench/crypto.sh` to compare in one run.
//!
//! Usage: aead_throughput SECONDS [SIZE...]   (prints lines `<layer> <block size> <kB/s>`)

use std::sync::Arc;
use std::time::{Duration, Instant};

use sealed::{DataKey, Keyring, ObjectContext, SoftwareKeyProvider};

fn rate(seconds: f64, size: usize, mut op: impl FnMut()) -> f64 {
    let deadline = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < deadline {
        for _ in 0..16 {
            op();
        }
        n += 16;
    }
    (n as f64 * size as f64) / start.elapsed().as_secs_f64() / 1000.0
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let key = DataKey::generate().expect("key");
    let provider = Arc::new(
        SoftwareKeyProvider::from_root(DataKey::generate().expect("root"), "env")
            .expect("provider"),
    );
    let ring = Keyring::new(provider, Vec::new()).expect("ring");
    ring.initialize().expect("init");
    let ctx = ObjectContext::new("bench", b"object-1");
    let sizes: Vec<usize> = std::env::args()
        .skip(2)
        .filter_map(|s| s.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1024, 1024 * 1024]
    } else {
        sizes
    };
    let core_key = aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, key.expose()).expect("key"),
    );
    for size in sizes {
        let data = vec![0x5au8; size];
        // What `openssl speed -evp` measures: prepared key, fixed nonce, in-place buffer.
        let mut buf = data.clone();
        let core = rate(seconds, size, || {
            let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key([7u8; 12]);
            let _tag = std::hint::black_box(
                core_key
                    .seal_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::empty(), &mut buf)
                    .expect("seal"),
            );
        });
        println!("aead_core {size} {core:.2}");
        let raw = rate(seconds, size, || {
            std::hint::black_box(key.encrypt(b"", &data).expect("encrypt"));
        });
        println!("aead_encrypt {size} {raw:.2}");
        let sealed = key.encrypt(b"", &data).expect("encrypt");
        let open = rate(seconds, size, || {
            std::hint::black_box(key.decrypt(b"", &sealed).expect("decrypt"));
        });
        println!("aead_decrypt {size} {open:.2}");
        let env = rate(seconds, size, || {
            std::hint::black_box(ring.seal(&ctx, &data).expect("seal"));
        });
        println!("envelope_seal {size} {env:.2}");
    }
}
