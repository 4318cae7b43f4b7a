//! Detection throughput on generated clinical notes and on pathological input.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use phi::{Detector, Mode, redact};

fn bench(c: &mut Criterion) {
    let detector = Detector::global();
    let notes = phi::eval::generate(200, 42);
    let corpus: String = notes
        .iter()
        .map(|n| n.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let mut group = c.benchmark_group("phi");
    group.throughput(Throughput::Bytes(corpus.len() as u64));
    group.bench_function("detect_notes", |b| {
        b.iter(|| detector.detect(std::hint::black_box(&corpus)))
    });
    group.bench_function("detect_and_tag_notes", |b| {
        b.iter(|| {
            let spans = detector.detect(&corpus);
            redact(&corpus, &spans, Mode::Tag)
        })
    });
    let pathological = "1-".repeat(128 * 1024);
    group.throughput(Throughput::Bytes(pathological.len() as u64));
    group.bench_function("detect_pathological_digits_dashes", |b| {
        b.iter(|| detector.detect(std::hint::black_box(&pathological)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
