//! Request translation per provider kind: a streaming chat request with tools, its prompt
//! (conversation history) at about 1 KiB and about 1 MiB. And the OpenAI-compatible answer
//! on the way back (the per-request cost of the pass-through's non-streaming path).

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prism_gateway::providers::{build_request_shared, translate_response, Kind};

fn requests(c: &mut Criterion) {
    let parts = common::CtxParts::new();
    let mut group = c.benchmark_group("request");
    for (label, size) in [("1KiB", 1024), ("1MiB", 1024 * 1024)] {
        for kind in Kind::ALL {
            let model = common::model_for(kind);
            let body = bytes::Bytes::from(common::chat_request(model, size));
            let ctx = parts.ctx(kind, model, true);
            // Measure only requests that translate: a failure is reported and skipped.
            if let Err(e) = build_request_shared(&body, &ctx) {
                eprintln!("skipping request/{}/{label}: {e}", kind.as_str());
                continue;
            }
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_with_input(BenchmarkId::new(kind.as_str(), label), &body, |b, body| {
                b.iter(|| build_request_shared(black_box(body), &ctx))
            });
        }
    }
    group.finish();
}

/// A non-streaming OpenAI chat answer as the API sends it (the load test's mock answer).
const OPENAI_ANSWER: &str = r#"{"choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"annotations":[],"content":"prism-mock received 97 bytes. tok1 h\u00e9llo tok3 tok4 tok5 tok6 tok7 tok8 tok9 tok10 tok11 tok12 tok13 tok14 tok15 tok16","refusal":null,"role":"assistant"}}],"created":1795503741,"id":"chatcmpl-CsWTgX7sLfS6MVxyHqaG9PhXoIJDP","model":"gpt-4o-mini-2024-07-18","object":"chat.completion","service_tier":"default","system_fingerprint":"fp_prism_mock","usage":{"completion_tokens":20,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":0,"rejected_prediction_tokens":0},"prompt_tokens":24,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":0},"total_tokens":44}}"#;

fn responses(c: &mut Criterion) {
    let parts = common::CtxParts::new();
    let mut group = c.benchmark_group("response");
    for kind in [Kind::Openai, Kind::Vllm] {
        let ctx = parts.ctx(kind, "gpt-4o-mini", false);
        let body = OPENAI_ANSWER.as_bytes();
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new(kind.as_str(), "chat"), &body, |b, body| {
            b.iter(|| translate_response(black_box(body), &ctx))
        });
    }
    group.finish();
}

criterion_group!(benches, requests, responses);
criterion_main!(benches);
