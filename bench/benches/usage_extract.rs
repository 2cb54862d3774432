//! Usage extraction from one `chat.completion.chunk` `data:` payload, two inputs:
//! - `content_chunk`: a 252-byte content delta with `"usage":null` (every chunk but the last);
//! - `usage_chunk`: the final chunk with the usage object (once per stream).
//!
//! Implementations, all returning the same `Usage` (checked before timing):
//! - `production`: `UsageExtractor` (memmem pre-check, then a simd-json tape into reused buffers);
//! - `simd_json_borrowed`: copy + `simd_json::to_borrowed_value`, then read `usage`;
//! - `serde_json_typed`: `serde_json::from_slice` into a struct that only keeps `usage`;
//! - `sonic_rs_typed`: `sonic_rs::from_slice` into the same struct;
//! - `sonic_rs_get`: `sonic_rs::get(json, ["usage"])` (lazy, skips the rest) + typed `usage`;
//! - `targeted_scan`: the pre-check, then `sluice_bench::scan` (no parse, no tree).
//!
//! Target P6: <= 300 ns/chunk.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::Deserialize;
use simd_json::prelude::*;
use sluice_bench::{corpus, scan};
use sluice_proto_llm::usage::{Usage, UsageExtractor};
use std::hint::black_box;

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    reasoning_tokens: Option<u64>,
}

impl WireUsage {
    fn into_usage(self) -> Option<Usage> {
        if self.prompt_tokens.is_none() && self.completion_tokens.is_none() {
            return None;
        }
        let prompt_tokens = self.prompt_tokens.unwrap_or(0);
        let completion_tokens = self.completion_tokens.unwrap_or(0);
        Some(Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: self
                .total_tokens
                .unwrap_or(prompt_tokens + completion_tokens),
            cached_tokens: self
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            reasoning_tokens: self
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        })
    }
}

fn serde_json_typed(json: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<Chunk>(json)
        .ok()?
        .usage?
        .into_usage()
}

fn sonic_rs_typed(json: &[u8]) -> Option<Usage> {
    sonic_rs::from_slice::<Chunk>(json)
        .ok()?
        .usage?
        .into_usage()
}

fn sonic_rs_get(json: &[u8]) -> Option<Usage> {
    let usage = sonic_rs::get(json, ["usage"]).ok()?;
    sonic_rs::from_str::<Option<WireUsage>>(usage.as_raw_str())
        .ok()??
        .into_usage()
}

fn simd_json_borrowed(scratch: &mut Vec<u8>, json: &[u8]) -> Option<Usage> {
    scratch.clear();
    scratch.extend_from_slice(json);
    let doc = simd_json::to_borrowed_value(scratch).ok()?;
    let usage = doc.get("usage").filter(|u| u.is_object())?;
    let detail = |details: &str, field: &str| usage.get(details).and_then(|d| d.get_u64(field));
    WireUsage {
        prompt_tokens: usage.get_u64("prompt_tokens"),
        completion_tokens: usage.get_u64("completion_tokens"),
        total_tokens: usage.get_u64("total_tokens"),
        prompt_tokens_details: Some(PromptDetails {
            cached_tokens: detail("prompt_tokens_details", "cached_tokens"),
        }),
        completion_tokens_details: Some(CompletionDetails {
            reasoning_tokens: detail("completion_tokens_details", "reasoning_tokens"),
        }),
    }
    .into_usage()
}

fn usage_extract(c: &mut Criterion) {
    for (name, input) in [
        ("content_chunk", corpus::CONTENT_CHUNK),
        ("usage_chunk", corpus::USAGE_CHUNK),
    ] {
        let mut extractor = UsageExtractor::new();
        let mut scratch = Vec::with_capacity(1024);
        let expected = extractor.extract(input);
        assert_eq!(expected.is_some(), name == "usage_chunk");
        assert_eq!(simd_json_borrowed(&mut scratch, input), expected);
        assert_eq!(serde_json_typed(input), expected);
        assert_eq!(sonic_rs_typed(input), expected);
        assert_eq!(sonic_rs_get(input), expected);
        assert_eq!(scan::scan_usage(input), expected);

        let mut group = c.benchmark_group(format!("usage_extract/{name}"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("production", |b| {
            b.iter(|| extractor.extract(black_box(input)))
        });
        group.bench_function("simd_json_borrowed", |b| {
            b.iter(|| simd_json_borrowed(&mut scratch, black_box(input)))
        });
        group.bench_function("serde_json_typed", |b| {
            b.iter(|| serde_json_typed(black_box(input)))
        });
        group.bench_function("sonic_rs_typed", |b| {
            b.iter(|| sonic_rs_typed(black_box(input)))
        });
        group.bench_function("sonic_rs_get", |b| {
            b.iter(|| sonic_rs_get(black_box(input)))
        });
        group.bench_function("targeted_scan", |b| {
            b.iter(|| scan::scan_usage(black_box(input)))
        });
        group.finish();
    }
}

criterion_group!(benches, usage_extract);
criterion_main!(benches);
