//! What the mock answers, independent of any wire format: the deterministic text, the tool
//! calls, the embedding vectors, and random ids.
//!
//! Text reply: `prism-mock received {N} bytes. tok1 héllo tok3 ...` with exactly `tokens` words
//! (N = request body length). The second filler word is always `héllo` so that frame splitting
//! cuts through a multi-byte character now and then.

use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Limits a request put on the generated text.
#[derive(Debug, Default)]
pub struct Limits {
    pub max_tokens: Option<u64>,
    pub stop: Vec<String>,
}

impl Limits {
    /// Reads a stop field that is a string or an array of strings.
    pub fn stops_from(value: Option<&Value>) -> Vec<String> {
        match value {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Natural end of the reply.
    Stop,
    /// Cut by the request's max tokens.
    Length,
    /// Cut before this stop sequence.
    StopSequence(String),
}

/// A text reply, as the pieces streamed one per content event (`"w1"`, `" w2"`, ...).
#[derive(Debug)]
pub struct TextReply {
    pub pieces: Vec<String>,
    pub finish: Finish,
}

impl TextReply {
    pub fn text(&self) -> String {
        self.pieces.concat()
    }

    pub fn tokens(&self) -> u64 {
        self.pieces.len() as u64
    }
}

#[derive(Debug, Clone)]
pub struct ToolCall {
    pub name: String,
    pub args: Value,
    /// Compact JSON of `args`.
    pub args_json: String,
}

/// How the request constrains tool use, once decoded from the provider's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    /// Some tool must be called (OpenAI `required`, Anthropic `any`, Gemini `ANY`, Cohere `REQUIRED`).
    Any,
    /// This tool must be called.
    Named(String),
    /// Tools must not be called.
    None,
}

#[derive(Debug)]
pub struct ToolRequest {
    pub declared: Vec<String>,
    pub choice: ToolChoice,
    /// Parallel calls disabled by the request.
    pub single: bool,
    /// The last user message asks to "call tools".
    pub asked: bool,
}

impl ToolRequest {
    /// Whether the tool choice forces a call (providers then skip any preamble text).
    pub fn forced(&self) -> bool {
        matches!(self.choice, ToolChoice::Any | ToolChoice::Named(_))
    }

    /// The calls to make, or `None` for a text reply.
    pub fn calls(&self, directive: bool) -> Option<Vec<ToolCall>> {
        if self.declared.is_empty() || self.choice == ToolChoice::None {
            return None;
        }
        if !(self.forced() || self.asked || directive) {
            return None;
        }
        let mut names: Vec<String> = match &self.choice {
            ToolChoice::Named(name) => vec![name.clone()],
            _ => self.declared.iter().take(2).cloned().collect(),
        };
        if self.single {
            names.truncate(1);
        }
        let calls = names
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let args = if i == 0 { json!({"city": "Paris"}) } else { json!({}) };
                let args_json = args.to_string();
                ToolCall { name, args, args_json }
            })
            .collect();
        Some(calls)
    }
}

pub enum Reply {
    Text(TextReply),
    Tools(Vec<ToolCall>),
}

/// Completion tokens reported for each tool call.
pub const TOKENS_PER_CALL: u64 = 12;

/// The words of the reply, as streamed pieces.
pub fn pieces(body_len: usize, count: usize) -> Vec<String> {
    let head = [
        "prism-mock".to_owned(),
        "received".to_owned(),
        body_len.to_string(),
        "bytes.".to_owned(),
    ];
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let word = match head.get(i) {
            Some(w) => w.clone(),
            None => {
                let k = i - head.len() + 1;
                if k == 2 {
                    "héllo".to_owned()
                } else {
                    format!("tok{k}")
                }
            }
        };
        out.push(if i == 0 { word } else { format!(" {word}") });
    }
    out
}

/// The text reply for a request of `body_len` bytes asking `count` words under `limits`.
pub fn text_reply(body_len: usize, count: usize, limits: &Limits) -> TextReply {
    let mut pieces = pieces(body_len, count);
    let mut finish = Finish::Stop;
    if let Some(max) = limits.max_tokens {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        if pieces.len() > max {
            pieces.truncate(max);
            finish = Finish::Length;
        }
    }
    let text = pieces.concat();
    let hit = limits
        .stop
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
        .min_by_key(|(at, _)| *at);
    if let Some((at, stop)) = hit {
        let mut kept = Vec::new();
        let mut offset = 0;
        for piece in pieces {
            if offset >= at {
                break;
            }
            let end = offset + piece.len();
            if end <= at {
                kept.push(piece);
            } else {
                kept.push(piece[..at - offset].to_owned());
            }
            offset = end;
        }
        kept.retain(|p| !p.is_empty());
        pieces = kept;
        finish = Finish::StopSequence(stop.clone());
    }
    TextReply { pieces, finish }
}

/// Concatenated text of a message `content`: a string, or an array of parts/blocks with `text`.
pub fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Whether a user message asks for tool calls.
pub fn asks_for_tools(text: &str) -> bool {
    text.to_ascii_lowercase().contains("call tools")
}

/// Cuts a JSON string into small fragments, the way providers stream tool arguments.
pub fn fragments(s: &str, max_chars: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in s.chars() {
        cur.push(ch);
        if cur.chars().count() >= max_chars {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A deterministic unit-length vector for `text`: a splitmix64 sequence seeded by SHA-256(text).
pub fn embedding(text: &str, dims: usize) -> Vec<f32> {
    let digest = Sha256::digest(text.as_bytes());
    let mut seed_bytes = [0u8; 8];
    seed_bytes.copy_from_slice(&digest[..8]);
    let mut state = u64::from_le_bytes(seed_bytes);
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}

/// Little-endian f32 bytes, base64 (standard alphabet, padded): OpenAI's `encoding_format=base64`.
pub fn embedding_base64(v: &[f32]) -> String {
    use base64::Engine;
    let mut bytes = Vec::with_capacity(v.len() * 4);
    for x in v {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn rand_alnum(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

pub fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_limits() {
        let r = text_reply(42, 8, &Limits::default());
        assert_eq!(r.text(), "prism-mock received 42 bytes. tok1 héllo tok3 tok4");
        assert_eq!(r.tokens(), 8);
        assert_eq!(r.finish, Finish::Stop);

        let r = text_reply(
            42,
            8,
            &Limits {
                max_tokens: Some(3),
                stop: vec![],
            },
        );
        assert_eq!(r.text(), "prism-mock received 42");
        assert_eq!(r.finish, Finish::Length);

        let r = text_reply(
            42,
            8,
            &Limits {
                max_tokens: None,
                stop: vec!["zzz".into(), "ceived".into()],
            },
        );
        assert_eq!(r.text(), "prism-mock re");
        assert_eq!(r.finish, Finish::StopSequence("ceived".into()));
        assert_eq!(text_reply(1, 0, &Limits::default()).text(), "");
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding("hello", 8);
        assert_eq!(a, embedding("hello", 8));
        assert_ne!(a, embedding("world", 8));
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        assert_eq!(embedding("x", 3).len(), 3);
    }

    #[test]
    fn tool_selection() {
        let mut t = ToolRequest {
            declared: vec!["a".into(), "b".into(), "c".into()],
            choice: ToolChoice::Auto,
            single: false,
            asked: false,
        };
        assert!(t.calls(false).is_none());
        let calls = t.calls(true).unwrap_or_default();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].args_json, r#"{"city":"Paris"}"#);
        assert_eq!(calls[1].args_json, "{}");
        t.choice = ToolChoice::Named("c".into());
        assert_eq!(t.calls(false).unwrap_or_default()[0].name, "c");
        t.choice = ToolChoice::None;
        assert!(t.calls(true).is_none());
        assert_eq!(fragments(r#"{"city":"Paris"}"#, 5).concat(), r#"{"city":"Paris"}"#);
    }
}
