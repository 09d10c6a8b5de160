//! The OpenAI-compatible stream translator (openai, mistral, vllm, ollama), chat and legacy
//! completions: any split equals the whole, the output is always complete OpenAI events.
//!
//! Input: `[flags][n][n piece sizes][upstream SSE]`. Flags: bit 0 include_usage, bit 1
//! legacy `/v1/completions`, bits 2-3 the kind (openai, mistral, vllm, ollama).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_fuzz::{check_translator, parse_input};
use prism_gateway::providers::Kind;

fuzz_target!(|raw: &[u8]| {
    let Some(input) = parse_input(raw) else {
        return;
    };
    let kind = match (input.flags >> 2) & 3 {
        0 => Kind::Openai,
        1 => Kind::Mistral,
        2 => Kind::Vllm,
        _ => Kind::Ollama,
    };
    check_translator(kind, input.flags & 2 != 0, input.flags & 1 != 0, &input);
});
