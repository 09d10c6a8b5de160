//! The SSE decoder and each stream translator over a 1,000-event stream of its native
//! format, fed one upstream event per call (tokens arrive one by one) and, for the decoder,
//! also in 4 KiB reads.

mod common;

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prism_gateway::providers::{stream_translator, Kind};
use prism_gateway::sse::Decoder;

fn total(events: &[Vec<u8>]) -> u64 {
    events.iter().map(|e| e.len() as u64).sum()
}

fn sse_decoder(c: &mut Criterion) {
    let events = common::anthropic_stream();
    let whole: Vec<u8> = events.concat();
    let reads: Vec<&[u8]> = whole.chunks(4096).collect();
    let mut group = c.benchmark_group("sse_decoder");
    group.throughput(Throughput::Bytes(total(&events)));
    group.bench_function("1000_events/per_event", |b| {
        b.iter(|| {
            let mut d = Decoder::new();
            let mut n = 0usize;
            for e in &events {
                let _ = d.push(black_box(e), |ev| n += ev.data.len());
            }
            n
        })
    });
    group.bench_function("1000_events/4KiB_reads", |b| {
        b.iter(|| {
            let mut d = Decoder::new();
            let mut n = 0usize;
            for r in &reads {
                let _ = d.push(black_box(r), |ev| n += ev.data.len());
            }
            n
        })
    });
    group.finish();
}

fn translators(c: &mut Criterion) {
    let parts = common::CtxParts::new();
    let mut group = c.benchmark_group("stream");
    let streams = [
        (Kind::Openai, common::openai_stream()),
        (Kind::Anthropic, common::anthropic_stream()),
        (Kind::Gemini, common::gemini_stream()),
        (Kind::Cohere, common::cohere_stream()),
    ];
    for (kind, events) in &streams {
        let model = common::model_for(*kind);
        let ctx = parts.ctx(*kind, model, true);
        let run = |events: &[Vec<u8>]| {
            let mut t = stream_translator(&ctx);
            let mut out = BytesMut::with_capacity(256 * 1024);
            for e in events {
                t.feed(black_box(e), &mut out)?;
            }
            t.finish(&mut out)?;
            Ok::<usize, prism_gateway::error::GatewayError>(out.len())
        };
        // Measure only streams that translate: a failure is reported and skipped.
        match run(events) {
            Ok(n) if n > 0 => {}
            Ok(_) => {
                eprintln!("skipping stream/{}: no output", kind.as_str());
                continue;
            }
            Err(e) => {
                eprintln!("skipping stream/{}: {e}", kind.as_str());
                continue;
            }
        }
        group.throughput(Throughput::Bytes(total(events)));
        group.bench_with_input(BenchmarkId::new(kind.as_str(), "1000_events"), events, |b, events| {
            b.iter(|| run(events))
        });
    }
    group.finish();
}

criterion_group!(benches, sse_decoder, translators);
criterion_main!(benches);
