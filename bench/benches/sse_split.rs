//! SSE framing throughput: frames per second through `SseFramer` for an OpenAI chat stream
//! (the `openai_chat_include_usage.sse` fixture, repeated), fed whole and in 1 KiB reads.
//! Criterion reports elements/s; ns/frame = 1e9 / (frames/s). Target P6: <= 20 ns/frame.
//! `floor/push_split_freeze` is the buffer work alone (copy in, cut the known frame lengths
//! off as `Bytes`), the least any zero-copy framer over `BytesMut` can cost.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_bench::corpus;
use sluice_proto_llm::sse::SseFramer;
use std::hint::black_box;

/// Drain every complete frame; returns how many there were.
fn drain(framer: &mut SseFramer) -> u64 {
    let mut frames = 0;
    while let Ok(Some(frame)) = framer.next_frame() {
        black_box(&frame);
        frames += 1;
    }
    frames
}

fn sse_split(c: &mut Criterion) {
    let (stream, frames) = corpus::openai_stream(100);
    let mut group = c.benchmark_group("sse_split");
    group.throughput(Throughput::Elements(frames));

    let mut framer = SseFramer::new(1 << 20);
    group.bench_function("whole", |b| {
        b.iter(|| {
            framer.push(black_box(&stream));
            let n = drain(&mut framer);
            assert_eq!(n, frames);
        })
    });

    let mut framer = SseFramer::new(1 << 20);
    group.bench_function("1KiB_reads", |b| {
        b.iter(|| {
            let mut n = 0;
            for read in black_box(&stream).chunks(1024) {
                framer.push(read);
                n += drain(&mut framer);
            }
            assert_eq!(n, frames);
        })
    });

    // What the relay does with each frame besides cutting it: look at its data and `[DONE]`.
    let mut framer = SseFramer::new(1 << 20);
    group.bench_function("1KiB_reads+data", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for read in black_box(&stream).chunks(1024) {
                framer.push(read);
                while let Ok(Some(frame)) = framer.next_frame() {
                    black_box((frame.data(), frame.is_done()));
                    n += 1;
                }
            }
            assert_eq!(n, frames);
        })
    });

    let mut lens = Vec::new();
    let mut framer = SseFramer::new(1 << 20);
    framer.push(&stream);
    while let Ok(Some(frame)) = framer.next_frame() {
        lens.push(frame.raw().len());
    }
    let mut buf = bytes::BytesMut::with_capacity(8 * 1024);
    group.bench_function("floor/push_split_freeze", |b| {
        b.iter(|| {
            buf.extend_from_slice(black_box(&stream));
            for &len in &lens {
                black_box(buf.split_to(len).freeze());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, sse_split);
criterion_main!(benches);
