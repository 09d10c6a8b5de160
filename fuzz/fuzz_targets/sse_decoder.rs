//! The incremental SSE decoder: any split of any input decodes exactly as the whole input,
//! and as an independent reading of the line rules; with a small size limit, a split input
//! fails no later than the whole one and delivers a prefix of its events. Never a panic.
//!
//! Input: `[flags][n][n piece sizes][bytes]` (see `prism_fuzz::parse_input`). Flag bit 0
//! selects a small event size limit, `4 * (flags >> 1) + 1` bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_fuzz::{cut, parse_input, reference_sse};
use prism_gateway::sse::{Decoder, Event, LineDecoder};

/// Decode `parts`; the events delivered, and whether the size limit was hit.
fn decode(limit: Option<usize>, parts: &[&[u8]]) -> (Vec<Event>, bool) {
    let mut d = match limit {
        Some(l) => Decoder::with_limit(l),
        None => Decoder::new(),
    };
    let mut events = Vec::new();
    for p in parts {
        if d.push(p, |e| events.push(e)).is_err() {
            return (events, true);
        }
    }
    if let Some(e) = d.finish() {
        events.push(e);
    }
    assert!(!d.has_partial(), "decoder keeps data after finish");
    (events, false)
}

fn lines(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut d = LineDecoder::default();
    let mut out = Vec::new();
    for p in parts {
        d.push(p, |l| out.push(l.to_vec()));
    }
    out.extend(d.finish());
    out
}

fn reference_lines(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(p) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..p];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.is_empty() {
            out.push(line.to_vec());
        }
        rest = &rest[p + 1..];
    }
    if !rest.is_empty() {
        out.push(rest.to_vec());
    }
    out
}

fuzz_target!(|raw: &[u8]| {
    let Some(input) = parse_input(raw) else {
        return;
    };
    let parts = cut(input.data, &input.pieces);
    if input.flags & 1 == 0 {
        let (whole, whole_err) = decode(None, &[input.data]);
        let (split, split_err) = decode(None, &parts);
        assert!(!whole_err && !split_err, "the default limit cannot be reached here");
        assert_eq!(whole, split, "split (pieces {:?}) differs from whole", input.pieces);
        assert_eq!(whole, reference_sse(input.data), "decoder differs from the reference");
    } else {
        let limit = 4 * usize::from(input.flags >> 1) + 1;
        let (whole, whole_err) = decode(Some(limit), &[input.data]);
        let (split, split_err) = decode(Some(limit), &parts);
        assert!(split.len() <= whole.len() && whole[..split.len()] == split[..]);
        assert!(!whole_err || split_err, "whole input hit the limit, split did not");
        if !split_err {
            assert_eq!(whole, split);
        }
        // Every delivered event respects the limit.
        for e in whole.iter().chain(split.iter()) {
            assert!(
                e.data.len() < limit + 1,
                "event of {} bytes over limit {limit}",
                e.data.len()
            );
        }
    }
    assert_eq!(
        lines(&[input.data]),
        lines(&parts),
        "line decoder: split differs from whole"
    );
    assert_eq!(
        lines(&[input.data]),
        reference_lines(input.data),
        "line decoder differs from the reference"
    );
});
