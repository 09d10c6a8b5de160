//! Shared harness for Prism's fuzz targets.
//!
//! Every stream target reads its input as
//!
//! ```text
//! [flags: u8][n: u8 (low 4 bits)][n piece sizes: u8 each][stream bytes ...]
//! ```
//!
//! The stream bytes are fed once whole and once cut into pieces whose sizes cycle through the
//! `n` sizes (a size of 0 counts as 1; `n == 0` means byte by byte). Both runs must produce the
//! same bytes, the same result, the same usage, commit state and upstream model, and the
//! output must always be a sequence of complete `data: ...\n\n` events.

use std::collections::HashMap;

use bytes::BytesMut;
use prism_gateway::error::GatewayError;
use prism_gateway::providers::{
    completions::CompletionsStream, stream_translator, Ctx, Endpoint, Kind, Options, StreamTranslator, Usage,
};
use prism_gateway::sse::Event;
use serde_json::Value;

/// A decoded fuzz input.
pub struct Input<'a> {
    pub flags: u8,
    pub pieces: Vec<usize>,
    pub data: &'a [u8],
}

/// Split a raw fuzz input into flags, piece sizes and data. `None` when too short.
pub fn parse_input(raw: &[u8]) -> Option<Input<'_>> {
    let (&flags, rest) = raw.split_first()?;
    let (&n, rest) = rest.split_first()?;
    let n = usize::from(n & 0x0f);
    if rest.len() < n {
        return None;
    }
    let (sizes, data) = rest.split_at(n);
    let mut pieces: Vec<usize> = sizes.iter().map(|&b| usize::from(b).max(1)).collect();
    if pieces.is_empty() {
        pieces.push(1);
    }
    Some(Input { flags, pieces, data })
}

/// Cut `data` into consecutive pieces whose sizes cycle through `pieces`.
pub fn cut<'a>(data: &'a [u8], pieces: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let n = pieces.get(i % pieces.len().max(1)).copied().unwrap_or(1).max(1);
        let end = (pos + n).min(data.len());
        out.push(&data[pos..end]);
        pos = end;
        i += 1;
    }
    out
}

/// Everything observable about one run of a stream translator.
#[derive(Debug, PartialEq)]
pub struct Run {
    pub out: Vec<u8>,
    pub result: Result<(), GatewayError>,
    pub committed: bool,
    pub usage: Option<Usage>,
    pub upstream_model: Option<String>,
}

/// Feed `parts` one by one, then finish. Stops at the first error, as the proxy does; the
/// output must end on an event boundary after every call (the proxy flushes it each time).
pub fn run_stream(mut t: Box<dyn StreamTranslator>, parts: &[&[u8]]) -> Run {
    let mut out = BytesMut::new();
    let mut result = Ok(());
    for p in parts {
        let r = t.feed(p, &mut out);
        assert_boundary(&out, "feed");
        if let Err(e) = r {
            result = Err(e);
            break;
        }
    }
    if result.is_ok() {
        result = t.finish(&mut out);
        assert_boundary(&out, "finish");
    }
    // The state the proxy reads once the stream ended, well or not.
    let run = Run {
        out: out.to_vec(),
        result,
        committed: t.committed(),
        usage: t.usage(),
        upstream_model: t.upstream_model().map(str::to_string),
    };
    if run.result.is_err() {
        // A caller that still calls finish after an error must not bring the process down
        // (what it returns then is not compared: the proxy stops at the first error).
        let mut scratch = BytesMut::new();
        let _ = t.finish(&mut scratch);
    }
    run
}

fn assert_boundary(out: &[u8], after: &str) {
    assert!(
        out.is_empty() || out.ends_with(b"\n\n"),
        "output does not end on an event boundary after {after}: {:?}",
        String::from_utf8_lossy(&out[out.len().saturating_sub(200)..])
    );
}

/// What the output of a translator must look like.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// `chat.completion.chunk` events (not legacy completions).
    pub chat: bool,
    pub include_usage: bool,
}

/// Check the OpenAI stream grammar: complete `data: <json object>\n\n` events, `[DONE]` once
/// and last (and only on success), and for chat: role chunk first, at most one finish chunk,
/// nothing but usage after it, and no `usage` key unless the client asked for usage.
pub fn check_output(run: &Run, expect: Expect) {
    let out = &run.out;
    if out.is_empty() {
        assert!(run.result.is_err(), "a successful stream produced no output");
        return;
    }
    assert!(out.ends_with(b"\n\n"), "output does not end with a blank line");
    let body = &out[..out.len() - 2];
    let events: Vec<&[u8]> = split_events(body);
    let mut done_at = None;
    let mut finished = false;
    for (i, ev) in events.iter().enumerate() {
        let Some(payload) = ev.strip_prefix(b"data: ") else {
            panic!("event {i} is not a data event: {:?}", String::from_utf8_lossy(ev));
        };
        assert!(
            !payload.contains(&b'\n') && !payload.contains(&b'\r'),
            "event {i} spans lines"
        );
        if payload == b"[DONE]" {
            assert!(done_at.is_none(), "[DONE] sent twice");
            done_at = Some(i);
            continue;
        }
        assert!(done_at.is_none(), "an event follows [DONE]");
        let v: Value = match serde_json::from_slice(payload) {
            Ok(v) => v,
            Err(e) => panic!("event {i} is not JSON ({e}): {:?}", String::from_utf8_lossy(payload)),
        };
        assert!(v.is_object(), "event {i} is not a JSON object");
        if !expect.chat {
            continue;
        }
        assert_eq!(v["object"], "chat.completion.chunk", "event {i}: wrong object");
        if !expect.include_usage {
            assert!(
                v.get("usage").is_none(),
                "event {i} has a usage key that was not asked for"
            );
        }
        let choices = v["choices"].as_array().cloned().unwrap_or_default();
        if i == 0 {
            assert_eq!(
                choices.first().map(|c| &c["delta"]["role"]),
                Some(&Value::from("assistant")),
                "the first event is not the role chunk"
            );
        }
        if choices.is_empty() {
            // The usage chunk.
            assert!(expect.include_usage, "usage chunk without include_usage");
            continue;
        }
        assert!(!finished, "event {i}: a chunk with choices after the finish chunk");
        if choices.iter().any(|c| !c["finish_reason"].is_null()) {
            finished = true;
        }
    }
    match &run.result {
        Ok(()) => assert_eq!(
            done_at,
            Some(events.len() - 1),
            "a successful stream does not end with [DONE]"
        ),
        Err(_) => assert!(done_at.is_none(), "a failed stream sent [DONE]"),
    }
}

fn split_events(body: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < body.len() {
        if body[i] == b'\n' && body[i + 1] == b'\n' {
            out.push(&body[start..i]);
            i += 2;
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(&body[start..]);
    out
}

/// Build a streaming translation context and hand it to `f`.
pub fn with_ctx<R>(kind: Kind, endpoint: Endpoint, include_usage: bool, f: impl FnOnce(&Ctx) -> R) -> R {
    let options = Options::default();
    let images = HashMap::new();
    let ctx = Ctx {
        provider: kind.as_str(),
        kind,
        endpoint,
        client_model: "client-model",
        upstream_model: "upstream-model",
        stream: true,
        include_usage,
        created: 1_767_225_600,
        fallback_id: "chatcmpl-fuzz000000000000000000",
        id_seed: 7,
        options: &options,
        embed_base64: false,
        images: &images,
    };
    f(&ctx)
}

/// The whole-versus-split property for one translator configuration.
///
/// `legacy`: for OpenAI-compatible kinds, the upstream speaks `/v1/completions` itself; for
/// the others, the chat translator is wrapped the way the proxy serves `/v1/completions`.
pub fn check_translator(kind: Kind, legacy: bool, include_usage: bool, input: &Input) {
    // The proxy sends legacy completions natively to OpenAI-compatible kinds except Mistral.
    let native_legacy = legacy && kind.is_openai_compatible() && kind != Kind::Mistral;
    let endpoint = if native_legacy {
        Endpoint::Completions
    } else {
        Endpoint::Chat
    };
    let make = || {
        with_ctx(kind, endpoint, include_usage, |ctx| {
            let inner = stream_translator(ctx);
            if legacy && !native_legacy {
                Box::new(CompletionsStream::new(inner)) as Box<dyn StreamTranslator>
            } else {
                inner
            }
        })
    };
    let whole = run_stream(make(), &[input.data]);
    let parts = cut(input.data, &input.pieces);
    let split = run_stream(make(), &parts);
    let expect = Expect {
        chat: !legacy,
        include_usage,
    };
    check_output(&whole, expect);
    check_output(&split, expect);
    assert_eq!(
        whole,
        split,
        "{} stream: split input (pieces {:?}) differs from whole",
        kind.as_str(),
        input.pieces
    );
}

/// An independent SSE reader written from the line rules (CR, LF and CRLF end a line; `:`
/// starts a comment; one space after the colon is dropped; `data` lines join with `\n`; a
/// blank line dispatches; at end of input the partial line is a line and a pending event is
/// delivered), to compare the incremental decoder with.
pub fn reference_sse(input: &[u8]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut event: Option<String> = None;
    let mut data: Option<String> = None;
    let mut line_fn = |line: &[u8], events: &mut Vec<Event>| {
        if line.is_empty() {
            match data.take() {
                Some(d) => events.push(Event {
                    event: event.take(),
                    data: d,
                }),
                None => event = None,
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(p) => {
                let v = &line[p + 1..];
                (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value).into_owned();
        match field {
            b"data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(&value);
                }
                None => data = Some(value),
            },
            b"event" => event = Some(value),
            _ => {}
        }
    };
    let mut start = 0;
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\n' => {
                line_fn(&input[start..i], &mut events);
                start = i + 1;
            }
            b'\r' => {
                line_fn(&input[start..i], &mut events);
                if input.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < input.len() {
        line_fn(&input[start..], &mut events);
    }
    // End of input: whatever is pending is delivered, as by a blank line.
    line_fn(b"", &mut events);
    events
}
