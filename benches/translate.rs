//! Request translation per provider kind: a streaming chat request with tools, its prompt
//! (conversation history) at about 1 KiB and about 1 MiB.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prism_gateway::providers::{build_request, Kind};

fn requests(c: &mut Criterion) {
    let parts = common::CtxParts::new();
    let mut group = c.benchmark_group("request");
    for (label, size) in [("1KiB", 1024), ("1MiB", 1024 * 1024)] {
        for kind in Kind::ALL {
            let model = common::model_for(kind);
            let body = common::chat_request(model, size);
            let ctx = parts.ctx(kind, model, true);
            // Measure only requests that translate: a failure is reported and skipped.
            if let Err(e) = build_request(&body, &ctx) {
                eprintln!("skipping request/{}/{label}: {e}", kind.as_str());
                continue;
            }
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_with_input(BenchmarkId::new(kind.as_str(), label), &body, |b, body| {
                b.iter(|| build_request(black_box(body), &ctx))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, requests);
criterion_main!(benches);
