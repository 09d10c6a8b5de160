//! The cohere stream translator, chat and wrapped for legacy completions: any split equals the
//! whole, the output is always complete OpenAI events.
//!
//! Input: `[flags][n][n piece sizes][upstream SSE]`. Flags: bit 0 include_usage, bit 1
//! legacy `/v1/completions` (the chat stream rewritten as the proxy does).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_fuzz::{check_translator, parse_input};
use prism_gateway::providers::Kind;

fuzz_target!(|raw: &[u8]| {
    let Some(input) = parse_input(raw) else {
        return;
    };
    check_translator(Kind::Cohere, input.flags & 2 != 0, input.flags & 1 != 0, &input);
});
