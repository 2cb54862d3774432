//! `bpe-openai` (what `sluice_proto_llm::tokenize` ships) and `tiktoken-rs` (a port of
//! tiktoken's own Rust core) must give the same count for every string, under both encodings,
//! with special-token text counted as ordinary text. If they ever differ, the production choice
//! in `bench/README.md` is void until the difference is understood.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use sluice_bench::corpus;
use sluice_proto_llm::tokenize::{self, Encoding};
use tiktoken_rs::{cl100k_base_singleton, o200k_base_singleton, CoreBPE};

fn check(encoding: Encoding, tiktoken: &CoreBPE, bpe: &bpe_openai::Tokenizer) {
    let corpus = corpus::parity_corpus();
    assert!(corpus.len() >= 300, "{} strings", corpus.len());
    let mut mismatches = Vec::new();
    for text in &corpus {
        let expected = tiktoken.encode_ordinary(text);
        let ours = tokenize::count(encoding, text);
        if ours != expected.len() as u64 || bpe.encode(text.as_str()) != expected {
            mismatches.push(format!(
                "{text:?}: tiktoken {} tokens, ours {ours}",
                expected.len()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} strings differ under {}:\n{}",
        mismatches.len(),
        corpus.len(),
        encoding.name(),
        mismatches.join("\n")
    );
}

#[test]
fn o200k_counts_match_tiktoken() {
    check(
        Encoding::O200kBase,
        o200k_base_singleton(),
        bpe_openai::o200k_base(),
    );
}

#[test]
fn cl100k_counts_match_tiktoken() {
    check(
        Encoding::Cl100kBase,
        cl100k_base_singleton(),
        bpe_openai::cl100k_base(),
    );
}

#[test]
fn special_token_text_is_ordinary() {
    for (encoding, tiktoken) in [
        (Encoding::O200kBase, o200k_base_singleton()),
        (Encoding::Cl100kBase, cl100k_base_singleton()),
    ] {
        let text = "<|endoftext|>";
        // With special tokens recognised it would be 1 token; the API counts user text as text.
        assert_eq!(tiktoken.encode_with_special_tokens(text).len(), 1);
        assert_eq!(
            tokenize::count(encoding, text),
            tiktoken.encode_ordinary(text).len() as u64
        );
        assert!(tokenize::count(encoding, text) > 1);
    }
}

#[test]
fn bench_texts_match_tiktoken() {
    // The 100 KB texts the `tokens` bench times, so its comparison is between equal counts.
    let texts = [
        corpus::english(100_000),
        corpus::mixed(100_000),
        corpus::code(20_000),
        corpus::other_scripts(20_000),
        corpus::DELTA_32.to_owned(),
    ];
    for (encoding, tiktoken) in [
        (Encoding::O200kBase, o200k_base_singleton()),
        (Encoding::Cl100kBase, cl100k_base_singleton()),
    ] {
        for text in &texts {
            assert_eq!(
                tokenize::count(encoding, text),
                tiktoken.encode_ordinary(text).len() as u64,
                "{} on {} bytes",
                encoding.name(),
                text.len()
            );
        }
        let deltas = corpus::deltas(1000);
        let ours: u64 = deltas.iter().map(|d| tokenize::count(encoding, d)).sum();
        let theirs: usize = deltas
            .iter()
            .map(|d| tiktoken.encode_ordinary(d).len())
            .sum();
        assert_eq!(ours, theirs as u64, "{} on the deltas", encoding.name());
    }
}
