//! The quota admit check (target P6: <= 50 ns; the quota issue: well under 100 ns): one
//! consumer with three limits (requests per minute, tokens per minute, tokens per day) and a
//! model-wide limit, on a 2-worker board. Measures admit + settle (drop of the reservation),
//! the whole cost a request pays, and admit alone for a refused request.

use criterion::{criterion_group, criterion_main, Criterion};
use sluice_core::config::load_str;
use sluice_core::quota::{Amounts, Board, LimitTable, QuotaShard};
use std::hint::black_box;
use std::rc::Rc;
use std::sync::Arc;

const CONFIG: &str = r#"
[backends.m]
provider = "mock"

[models.gpt]
targets = [{ backend = "m" }]

[models.gpt.limits]
requests_per_second = 1000000000

[consumers.team]
keys = ["key-of-team-a-0123456789"]

[consumers.team.limits]
requests_per_minute = 1000000000
tokens_per_minute = 1000000000000
tokens_per_day = 1000000000000000
"#;

/// Worker 0's shard of a 2-worker board for `toml`.
fn shard(toml: &str) -> Rc<QuotaShard> {
    match load_str(toml, "bench.toml", None, &|_| None) {
        Ok(cfg) => QuotaShard::new(0, Board::new(Arc::new(LimitTable::build(&cfg)), 2), false),
        Err(e) => {
            eprintln!("bench config does not load:\n{e}");
            std::process::exit(1);
        }
    }
}

fn bench(c: &mut Criterion) {
    let shard = shard(CONFIG);
    let amounts = Amounts {
        requests: 1,
        input_tokens: 200,
        output_tokens: 100,
        cost: 0,
    };
    let now = 1_795_430_661_007u64;
    let mut g = c.benchmark_group("quota");
    g.bench_function("admit_and_settle_4_limits", |b| {
        b.iter(|| {
            let r = shard.admit(black_box(Some(0)), 0, black_box(amounts), now);
            if let Ok(r) = &r {
                r.record(Amounts {
                    output_tokens: 40,
                    ..amounts
                });
            }
            drop(black_box(r));
        })
    });
    let refused = self::shard(&CONFIG.replace(
        "requests_per_minute = 1000000000",
        "requests_per_minute = 0",
    ));
    g.bench_function("admit_refused", |b| {
        b.iter(|| black_box(refused.admit(black_box(Some(0)), 0, amounts, now)).is_err())
    });
    let open = self::shard(
        "[backends.m]\nprovider = \"mock\"\n[models.gpt]\ntargets = [{ backend = \"m\" }]\n",
    );
    g.bench_function("admit_no_limits", |b| {
        b.iter(|| drop(black_box(open.admit(None, 0, amounts, now))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
