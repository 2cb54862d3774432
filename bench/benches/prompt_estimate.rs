//! `estimate_prompt_tokens` on Chat Completions bodies of 1 KB, 10 KB and 100 KB (English, and
//! mixed scripts), against the exact count it stands in for (serde_json parse of the body plus
//! `count_chat_prompt` with `bpe-openai`). Throughput is in body bytes.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_bench::corpus::{self, Api, Content};
use sluice_proto_llm::tokenize::{count_chat_prompt, estimate_prompt_tokens, Encoding};
use std::hint::black_box;

fn exact(body: &[u8]) -> u64 {
    let messages = corpus::prompt_messages(body);
    count_chat_prompt(
        Encoding::O200kBase,
        messages
            .iter()
            .map(|(role, text)| (role.as_str(), text.as_str())),
    )
}

fn prompt_estimate(c: &mut Criterion) {
    for content in [Content::English, Content::Mixed] {
        let mut group = c.benchmark_group(format!("prompt_estimate/{}", content.name()));
        for (label, len, turns) in [
            ("1KB", 1_000, 2),
            ("10KB", 10_000, 8),
            ("100KB", 100_000, 16),
        ] {
            let body = corpus::request_body(Api::Chat, content, len, turns);
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_function(BenchmarkId::new("estimate", label), |b| {
                b.iter(|| estimate_prompt_tokens(black_box(&body)))
            });
            if len <= 10_000 {
                group.bench_function(BenchmarkId::new("exact_parse_and_count", label), |b| {
                    b.iter(|| exact(black_box(&body)))
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, prompt_estimate);
criterion_main!(benches);
