//! Token counting: `tiktoken-rs` (its `*_singleton()` encoders, so the ranks are parsed once)
//! against `bpe-openai`, under `o200k_base` and `cl100k_base`, on
//! - one 32-byte content delta (`delta32`),
//! - 1000 different realistic deltas, counted one by one (`deltas1000`; elements = deltas),
//! - 100 KB of English prose and 100 KB of mixed text (code, CJK, other scripts, emoji).
//!
//! Counts are identical between the two libraries on all these inputs and on the parity
//! corpus: `bench/tests/token_parity.rs` asserts it.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_bench::corpus;
use std::hint::black_box;
use tiktoken_rs::{cl100k_base_singleton, o200k_base_singleton, CoreBPE};

type Candidates = [(
    &'static str,
    &'static CoreBPE,
    &'static bpe_openai::Tokenizer,
); 2];

fn candidates() -> Candidates {
    [
        ("o200k", o200k_base_singleton(), bpe_openai::o200k_base()),
        ("cl100k", cl100k_base_singleton(), bpe_openai::cl100k_base()),
    ]
}

fn tokens(c: &mut Criterion) {
    let deltas = corpus::deltas(1000);
    let english = corpus::english(100_000);
    let mixed = corpus::mixed(100_000);

    let mut group = c.benchmark_group("tokens/delta32");
    group.throughput(Throughput::Elements(1));
    for (enc, tiktoken, bpe) in candidates() {
        let text = corpus::DELTA_32;
        group.bench_function(BenchmarkId::new("tiktoken_rs", enc), |b| {
            b.iter(|| tiktoken.encode_ordinary(black_box(text)).len())
        });
        group.bench_function(BenchmarkId::new("bpe_openai", enc), |b| {
            b.iter(|| bpe.count(black_box(text)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("tokens/deltas1000");
    group.throughput(Throughput::Elements(deltas.len() as u64));
    for (enc, tiktoken, bpe) in candidates() {
        group.bench_function(BenchmarkId::new("tiktoken_rs", enc), |b| {
            b.iter(|| {
                deltas
                    .iter()
                    .map(|d| tiktoken.encode_ordinary(black_box(d)).len())
                    .sum::<usize>()
            })
        });
        group.bench_function(BenchmarkId::new("bpe_openai", enc), |b| {
            b.iter(|| {
                deltas
                    .iter()
                    .map(|d| bpe.count(black_box(d.as_str())))
                    .sum::<usize>()
            })
        });
    }
    group.finish();

    for (name, text) in [("english100k", &english), ("mixed100k", &mixed)] {
        let mut group = c.benchmark_group(format!("tokens/{name}"));
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.sample_size(20);
        for (enc, tiktoken, bpe) in candidates() {
            group.bench_function(BenchmarkId::new("tiktoken_rs", enc), |b| {
                b.iter(|| tiktoken.encode_ordinary(black_box(text)).len())
            });
            group.bench_function(BenchmarkId::new("bpe_openai", enc), |b| {
                b.iter(|| bpe.count(black_box(text.as_str())))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, tokens);
criterion_main!(benches);
