//! Heap allocations per relayed SSE frame in the gateway's per-frame work, and its time.
//!
//! `proto-llm/tests/zero_alloc.rs` proves the framer and the usage extractor alone do not
//! allocate. This extends the measurement to what `core/src/relay.rs` (`relay_stream`) does
//! for every upstream read, in the same order: decode the chunked body
//! (`sluice_core::http::chunked::ChunkedDecoder`), release the previous read's frames (they
//! share the framer's buffer, and while they live `BytesMut` cannot reuse it), push into the
//! framer, cut frames, read usage, keep the frame, and write the frames to the client in one
//! chunk (`sluice_core::http::chunked::write_body`).
//!
//! Usage is read two ways. `extractor` is the bare `UsageExtractor` (data, `[DONE]` check,
//! extraction); `tracker` is what `relay_stream` runs, the production `UsageTracker` with text
//! capture (`relay::MAX_CAPTURED_TEXT`), which also collects the output text for estimates.
//!
//! A counting global allocator needs `unsafe impl GlobalAlloc`, hence this separate binary.
//! `cargo test` runs it too (`test = true` in `Cargo.toml`): it then counts, prints, fails
//! when the `extractor` relay allocates at all in the steady state, or the `tracker` relay
//! more often than its captured text can double in a whole stream (11 times, 512 bytes to
//! 1 MiB), and runs each timing once. Counts are facts; speed is never asserted.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use sluice_bench::corpus;
use sluice_core::http::chunked::{encode_chunk, write_body, ChunkedDecoder};
use sluice_proto_llm::sse::SseFramer;
use sluice_proto_llm::tokenize::{self, Encoding};
use sluice_proto_llm::track::{Api, UsageTracker};
use sluice_proto_llm::usage::{Usage, UsageExtractor};

struct Counting;

thread_local! {
    // Per thread, so nothing but the measured loop is counted.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds the
// `GlobalAlloc` contract; the only addition is a thread-local counter update, which does not
// allocate (a `const` thread-local `Cell` has no lazy initialisation).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is the same as `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through `alloc`/`realloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: as for `dealloc`, and `new_size` obeys the caller's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// The per-connection state of `relay_stream`, with the socket writes left out.
struct Relay {
    decoder: ChunkedDecoder,
    framer: SseFramer,
    extractor: UsageExtractor,
    tracker: UsageTracker,
    raw: Vec<u8>,
    payload: Vec<u8>,
    frames: Vec<Bytes>,
    out: Vec<u8>,
    usage: Option<Usage>,
}

impl Relay {
    fn new() -> Self {
        Self {
            decoder: ChunkedDecoder::new(),
            framer: SseFramer::new(256 * 1024),
            extractor: UsageExtractor::new(),
            tracker: UsageTracker::new(Api::ChatCompletions)
                .with_text_capture(sluice_core::relay::MAX_CAPTURED_TEXT),
            raw: Vec::with_capacity(16 * 1024),
            payload: Vec::with_capacity(16 * 1024),
            frames: Vec::with_capacity(16),
            out: Vec::with_capacity(16 * 1024),
            usage: None,
        }
    }

    /// One upstream read, as `relay_stream`'s loop body handles it; returns the frames relayed.
    fn read(&mut self, read: &[u8], usage: UsageBy) -> u64 {
        self.raw.extend_from_slice(read);
        self.payload.clear();
        let Ok(used) = self.decoder.decode(&self.raw, &mut self.payload) else {
            return 0;
        };
        self.raw.drain(..used);
        // As in relay.rs: the previous read's frames go before the push.
        self.frames.clear();
        self.framer.push(&self.payload);
        while let Ok(Some(frame)) = self.framer.next_frame() {
            match usage {
                UsageBy::Extractor => {
                    if let Some(data) = frame.data() {
                        if !frame.is_done() {
                            if let Some(u) = self.extractor.extract(&data) {
                                self.usage = Some(u);
                            }
                        }
                    }
                }
                UsageBy::Tracker => self.tracker.observe(&frame),
            }
            self.frames.push(frame.raw().clone());
        }
        let n = self.frames.len() as u64;
        if n > 0 {
            write_body(&mut self.out, &self.frames, true, false);
        }
        // Stands for the socket write, after which the pipeline clears `out`.
        black_box(&self.out);
        self.out.clear();
        n
    }

    fn saw_usage(&self, usage: UsageBy) -> bool {
        match usage {
            UsageBy::Extractor => self.usage.is_some_and(|u| u.total_tokens > 0),
            UsageBy::Tracker => self.tracker.usage().is_some_and(|u| u.total_tokens() > 0),
        }
    }
}

/// The upstream side of a long OpenAI stream: each SSE event in its own HTTP chunk, as
/// servers flush them; the stream never ends (no zero-size chunk), so it can be replayed.
fn upstream_chunks() -> Vec<Vec<u8>> {
    let (stream, _) = corpus::openai_stream(8);
    let mut framer = SseFramer::new(1 << 20);
    framer.push(&stream);
    let mut chunks = Vec::new();
    while let Ok(Some(frame)) = framer.next_frame() {
        let mut chunk = Vec::new();
        encode_chunk(&mut chunk, frame.raw());
        chunks.push(chunk);
    }
    chunks
}

/// How the upstream bytes are cut into reads.
#[derive(Clone, Copy)]
enum Reads {
    /// One HTTP chunk (one event) per read: a paced stream, the common case.
    PerEvent,
    /// Fixed-size reads that cut events and chunk headers anywhere.
    Sized(usize),
}

impl Reads {
    fn name(self) -> String {
        match self {
            Reads::PerEvent => "one_event_per_read".to_owned(),
            Reads::Sized(n) => format!("{n}B_reads"),
        }
    }

    fn cut(self, chunks: &[Vec<u8>]) -> Vec<Vec<u8>> {
        match self {
            Reads::PerEvent => chunks.to_vec(),
            Reads::Sized(n) => chunks.concat().chunks(n).map(<[u8]>::to_vec).collect(),
        }
    }
}

/// How usage is read from each frame.
#[derive(Clone, Copy, PartialEq, Eq)]
enum UsageBy {
    /// `UsageExtractor` alone.
    Extractor,
    /// `UsageTracker` with text capture, as `relay_stream` runs it.
    Tracker,
}

impl UsageBy {
    fn name(self) -> &'static str {
        match self {
            UsageBy::Extractor => "extractor",
            UsageBy::Tracker => "tracker",
        }
    }
}

const SCENARIOS: [Reads; 3] = [Reads::PerEvent, Reads::Sized(1024), Reads::Sized(16 * 1024)];

/// Allocations per relayed frame once warmed up, for each way of cutting reads.
fn count_allocations(usage: UsageBy) -> Vec<(String, u64, u64)> {
    let chunks = upstream_chunks();
    SCENARIOS
        .iter()
        .map(|&reads| {
            let reads_list = reads.cut(&chunks);
            let mut relay = Relay::new();
            for _ in 0..4 {
                for read in &reads_list {
                    relay.read(read, usage);
                }
            }
            let before = allocations();
            let mut frames = 0;
            for _ in 0..50 {
                for read in &reads_list {
                    frames += relay.read(read, usage);
                }
            }
            let allocated = allocations() - before;
            assert!(relay.saw_usage(usage));
            (reads.name(), allocated, frames)
        })
        .collect()
}

/// Allocations made by one exact token count of a streaming delta (not on the relay path
/// today; reported so the cost is known before per-delta counting is added to it).
fn count_token_allocations() -> (u64, u64) {
    let deltas = corpus::deltas(1000);
    tokenize::count(Encoding::O200kBase, "warm up");
    let before = allocations();
    let mut tokens = 0;
    for delta in &deltas {
        tokens += tokenize::count(Encoding::O200kBase, delta);
    }
    black_box(tokens);
    (allocations() - before, deltas.len() as u64)
}

fn timing(c: &mut Criterion) {
    let chunks = upstream_chunks();
    let mut group = c.benchmark_group("alloc_per_frame/relay");
    for usage in [UsageBy::Extractor, UsageBy::Tracker] {
        for reads in SCENARIOS {
            let reads_list = reads.cut(&chunks);
            let mut relay = Relay::new();
            let frames: u64 = reads_list.iter().map(|r| relay.read(r, usage)).sum();
            group.throughput(Throughput::Elements(frames));
            let id = format!("{}/{}", usage.name(), reads.name());
            group.bench_function(BenchmarkId::from_parameter(id), |b| {
                b.iter(|| {
                    for read in &reads_list {
                        relay.read(black_box(read), usage);
                    }
                })
            });
        }
    }
    group.finish();
}

/// How often the tracker's captured text can grow in one stream (see `main`).
const MAX_TEXT_DOUBLINGS: u64 = (sluice_core::relay::MAX_CAPTURED_TEXT / 512).ilog2() as u64;

fn main() {
    println!("allocations per relayed frame (decode + frame + data + extract + write_body):");
    let mut failed = false;
    for usage in [UsageBy::Extractor, UsageBy::Tracker] {
        for (name, allocated, frames) in count_allocations(usage) {
            println!(
                "  {:<10} {name:<20} {allocated:>4} allocations / {frames} frames = {:.4} per frame",
                usage.name(),
                allocated as f64 / frames as f64
            );
            // The bare relay must not allocate at all. The tracker's text capture grows its
            // `String` by doubling, from 512 bytes up to `MAX_CAPTURED_TEXT`: at most
            // log2(1 MiB / 512) = 11 times in a whole stream, however long. More is per-frame
            // work.
            failed |= match usage {
                UsageBy::Extractor => allocated > 0,
                UsageBy::Tracker => allocated > MAX_TEXT_DOUBLINGS,
            };
        }
    }
    let (token_allocs, deltas) = count_token_allocations();
    println!(
        "  (not on the relay path) tokenize::count per delta: {:.2} allocations",
        token_allocs as f64 / deltas as f64
    );

    let mut criterion = Criterion::default().configure_from_args();
    timing(&mut criterion);
    criterion.final_summary();

    if failed {
        eprintln!("the relay allocates per frame in the steady state (target P6: 0)");
        std::process::exit(1);
    }
}
