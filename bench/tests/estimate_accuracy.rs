//! How close `estimate_prompt_tokens` (one pass over the raw body, no parse, no tokenizer)
//! comes to the exact prompt count, on bodies of every API shape, content kind and size.
//!
//! The rule it is held to: never more than 10% under the exact count of either encoding
//! (quota admission must not be fooled into letting a large prompt through), and on average
//! not far above it. Run with `-- --nocapture` to print the table kept in `bench/README.md`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use sluice_bench::corpus::{self, Api, Content};
use sluice_proto_llm::tokenize::{count_chat_prompt, estimate_prompt_tokens, Encoding};

struct Row {
    api: Api,
    content: Content,
    escaped: bool,
    bytes: usize,
    o200k: u64,
    cl100k: u64,
    estimate: u64,
}

impl Row {
    fn ratio(&self) -> f64 {
        self.estimate as f64 / self.o200k.max(self.cl100k) as f64
    }
}

fn exact(body: &[u8], encoding: Encoding) -> u64 {
    let messages = corpus::prompt_messages(body);
    count_chat_prompt(
        encoding,
        messages
            .iter()
            .map(|(role, text)| (role.as_str(), text.as_str())),
    )
}

fn measure(api: Api, content: Content, len: usize, turns: usize, escaped: bool) -> Row {
    let mut body = corpus::request_body(api, content, len, turns);
    if escaped {
        body = corpus::ascii_escaped(&body);
    }
    Row {
        api,
        content,
        escaped,
        bytes: body.len(),
        o200k: exact(&body, Encoding::O200kBase),
        cl100k: exact(&body, Encoding::Cl100kBase),
        estimate: estimate_prompt_tokens(&body),
    }
}

#[test]
fn estimate_is_upper_biased_within_bounds() {
    let mut rows = Vec::new();
    for api in Api::ALL {
        for content in Content::ALL {
            for (len, turns) in [(400, 1), (1_000, 2), (3_000, 4), (10_000, 8), (60_000, 16)] {
                rows.push(measure(api, content, len, turns, false));
            }
            rows.push(measure(api, content, 2_000, 2, true));
        }
    }
    // The table for the docs: chat bodies of each content kind at three sizes.
    println!("| body | bytes | o200k_base | cl100k_base | estimate | estimate / larger |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for content in Content::ALL {
        for (len, turns) in [(1_000, 2), (10_000, 8), (100_000, 16)] {
            let row = measure(Api::Chat, content, len, turns, false);
            println!(
                "| chat, {}, {} messages | {} | {} | {} | {} | {:.2} |",
                content.name(),
                turns + 1,
                row.bytes,
                row.o200k,
                row.cl100k,
                row.estimate,
                row.ratio()
            );
        }
        let row = measure(Api::Chat, content, 10_000, 8, true);
        println!(
            "| chat, {}, `\\u` escaped | {} | {} | {} | {} | {:.2} |",
            content.name(),
            row.bytes,
            row.o200k,
            row.cl100k,
            row.estimate,
            row.ratio()
        );
    }
    println!();
    println!("| API shape | bodies | min | mean | max |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for api in Api::ALL {
        let ratios: Vec<f64> = rows
            .iter()
            .filter(|r| r.api == api)
            .map(Row::ratio)
            .collect();
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ratios.iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {} | {min:.2} | {mean:.2} | {max:.2} |",
            api.name(),
            ratios.len()
        );
    }

    let under: Vec<String> = rows
        .iter()
        .filter(|r| r.ratio() < 0.9)
        .map(|r| {
            format!(
                "{} / {} / {} bytes{}: estimate {} for o200k {} cl100k {}",
                r.api.name(),
                r.content.name(),
                r.bytes,
                if r.escaped { " (escaped)" } else { "" },
                r.estimate,
                r.o200k,
                r.cl100k
            )
        })
        .collect();
    assert!(under.is_empty(), "under-estimates:\n{}", under.join("\n"));
    let mean = rows.iter().map(Row::ratio).sum::<f64>() / rows.len() as f64;
    assert!(
        mean < 1.35,
        "mean estimate / exact {mean:.2}: too coarse for admission"
    );
}

#[test]
fn pathological_text_is_not_badly_under_estimated() {
    // Not realistic prompts, but cheap ways to pack many tokens into few bytes.
    for text in [
        "a".repeat(5_000),
        "9".repeat(5_000),
        "!@#$%^&*()".repeat(500),
        "x1y2z3".repeat(800),
        "的".repeat(2_000),
        "😀".repeat(1_000),
        "\u{200d}".repeat(1_000),
    ] {
        let body = serde_json::to_vec(&serde_json::json!({
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": text}],
        }))
        .unwrap();
        let exact = exact(&body, Encoding::O200kBase).max(exact(&body, Encoding::Cl100kBase));
        let estimate = estimate_prompt_tokens(&body);
        println!(
            "{:?}...: exact {exact}, estimate {estimate}",
            text.chars().next()
        );
        assert!(estimate * 10 >= exact * 5, "{estimate} vs {exact}");
    }
}
