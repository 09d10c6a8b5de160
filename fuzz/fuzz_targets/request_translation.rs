//! Request translation for every provider kind: arbitrary JSON-ish bytes never panic, and a
//! request that translates becomes valid JSON sent to an absolute path.
//!
//! Input: `[flags][request body]`. Flags: bit 0 stream, bit 1 include_usage, bit 2 strict,
//! bit 3 base64 embeddings, bits 4-5 the endpoint (chat, embeddings, completions, chat).
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use prism_gateway::providers::{build_request, completions, Ctx, Endpoint, Kind, Options};

/// Valid JSON text. serde_json refuses numbers beyond `f64` ("number out of range") that the
/// grammar allows and the pass-through forwards as written
/// (`regressions/request_translation/openai-number-beyond-f64`): for those the syntax alone
/// is checked.
fn is_json(b: &[u8]) -> bool {
    match serde_json::from_slice::<serde_json::Value>(b) {
        Ok(_) => true,
        Err(e) if e.to_string().starts_with("number out of range") => {
            serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
        }
        Err(_) => false,
    }
}

fuzz_target!(|raw: &[u8]| {
    let Some((&flags, body)) = raw.split_first() else {
        return;
    };
    let endpoint = match (flags >> 4) & 3 {
        1 => Endpoint::Embeddings,
        2 => Endpoint::Completions,
        _ => Endpoint::Chat,
    };
    let options = Options {
        strict: flags & 4 != 0,
        ..Options::default()
    };
    // One remote image the gateway "fetched", so the inlining path is reachable.
    let mut images = HashMap::new();
    images.insert(
        "https://example.com/cat.jpg".to_string(),
        ("image/jpeg".to_string(), "/9j/4A==".to_string()),
    );
    // Legacy completions reach every kind but the OpenAI-compatible ones (Mistral aside)
    // rewritten as chat, as the proxy does.
    let chat_body = (endpoint == Endpoint::Completions)
        .then(|| completions::to_chat_request(body).ok())
        .flatten();
    for kind in Kind::ALL {
        let via_chat = endpoint == Endpoint::Completions && (!kind.is_openai_compatible() || kind == Kind::Mistral);
        let (body, endpoint) = if via_chat {
            match &chat_body {
                Some(b) => (&b[..], Endpoint::Chat),
                None => continue,
            }
        } else {
            (body, endpoint)
        };
        let ctx = Ctx {
            provider: kind.as_str(),
            kind,
            endpoint,
            client_model: "client-model",
            upstream_model: "upstream-model",
            stream: flags & 1 != 0,
            include_usage: flags & 2 != 0,
            created: 1_767_225_600,
            fallback_id: "chatcmpl-fuzz000000000000000000",
            id_seed: 7,
            options: &options,
            embed_base64: flags & 8 != 0,
            images: &images,
        };
        if let Ok(r) = build_request(body, &ctx) {
            assert!(r.path.starts_with('/'), "{}: relative path {:?}", kind.as_str(), r.path);
            // Whatever the client sent, what goes upstream is JSON (the OpenAI-compatible
            // pass-through once forwarded unpaired surrogate escapes verbatim:
            // `regressions/request_translation/`).
            assert!(
                is_json(&r.body.contiguous()),
                "{}: upstream body is not JSON: {:?}",
                kind.as_str(),
                String::from_utf8_lossy(&r.body.contiguous())
            );
        }
    }
});
