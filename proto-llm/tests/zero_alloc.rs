//! Proves the hot path does not allocate per chunk: framing a single-`data` SSE event, reading
//! its fields and checking it for usage all reuse buffers once warmed up.
//!
//! A counting global allocator needs `unsafe impl GlobalAlloc`, hence its own test binary.
#![allow(unsafe_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sluice_proto_llm::sse::SseFramer;
use sluice_proto_llm::usage::UsageExtractor;

struct Counting;

thread_local! {
    // Per thread, so the test harness's own threads do not disturb the count.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const CHUNK: &[u8] = br#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hello \"world\""},"finish_reason":null}],"usage":null}

"#;
const USAGE_CHUNK: &[u8] = br#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":3},"completion_tokens_details":{"reasoning_tokens":4}}}

"#;

/// One relay step: frame what arrived, read it as the engine does, drop the frame.
fn relay(framer: &mut SseFramer, extractor: &mut UsageExtractor, read: &[u8]) -> (usize, u64) {
    framer.push(read);
    let mut frames = 0;
    let mut tokens = 0;
    while let Some(frame) = framer.next_frame().unwrap() {
        frames += 1;
        assert!(!frame.is_done() && !frame.is_comment());
        assert!(frame.event().is_none());
        let data = frame.data().unwrap();
        if let Some(usage) = extractor.extract(&data) {
            tokens += usage.total_tokens;
        }
    }
    (frames, tokens)
}

#[test]
fn relaying_single_data_frames_does_not_allocate() {
    let mut framer = SseFramer::new(64 * 1024);
    let mut extractor = UsageExtractor::new();
    let (head, tail) = CHUNK.split_at(CHUNK.len() / 2);

    // Warm up: buffers reach their steady size.
    for _ in 0..8 {
        relay(&mut framer, &mut extractor, CHUNK);
        relay(&mut framer, &mut extractor, USAGE_CHUNK);
        relay(&mut framer, &mut extractor, head);
        relay(&mut framer, &mut extractor, tail);
    }

    let before = allocations();
    drop(std::hint::black_box(vec![0u8; 16]));
    assert_eq!(allocations(), before + 1, "the counting allocator counts");

    let before = allocations();
    let mut frames = 0;
    let mut tokens = 0;
    for _ in 0..1_000 {
        for read in [CHUNK, USAGE_CHUNK, head, tail] {
            let (f, t) = relay(&mut framer, &mut extractor, read);
            frames += f;
            tokens += t;
        }
    }
    let allocated = allocations() - before;
    assert_eq!((frames, tokens), (3_000, 29_000));
    assert_eq!(allocated, 0, "{allocated} allocations for {frames} frames");
}
