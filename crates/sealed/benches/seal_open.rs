//! Seal/open throughput at 1 KiB and 1 MiB: the raw AES-256-GCM layer (`DataKey`) and the full
//! envelope (`Keyring::seal`/`open`: fresh data key, wrap, encrypt).

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sealed::{DataKey, Keyring, ObjectContext, SoftwareKeyProvider};

fn bench(c: &mut Criterion) {
    let key = DataKey::generate().unwrap();
    let provider =
        Arc::new(SoftwareKeyProvider::from_root(DataKey::generate().unwrap(), "env").unwrap());
    let ring = Keyring::new(provider, Vec::new()).unwrap();
    ring.initialize().unwrap();
    let ctx = ObjectContext::new("bench", b"object-1");
    for (name, size) in [("1KiB", 1024usize), ("1MiB", 1024 * 1024)] {
        let data = vec![0x5au8; size];
        let mut group = c.benchmark_group(format!("aead/{name}"));
        group.throughput(Throughput::Bytes(size as u64));
        let sealed_raw = key.encrypt(b"aad", &data).unwrap();
        group.bench_function("aes256gcm_encrypt", |b| {
            b.iter(|| key.encrypt(b"aad", &data).unwrap())
        });
        group.bench_function("aes256gcm_decrypt", |b| {
            b.iter(|| key.decrypt(b"aad", &sealed_raw).unwrap())
        });
        let sealed = ring.seal(&ctx, &data).unwrap();
        group.bench_function("envelope_seal", |b| {
            b.iter(|| ring.seal(&ctx, &data).unwrap())
        });
        group.bench_function("envelope_open", |b| {
            b.iter(|| ring.open(&ctx, &sealed).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
