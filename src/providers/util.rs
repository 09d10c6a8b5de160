//! Pieces every translator shares: the OpenAI chunk emitter (so the stream grammar of
//! `providers.md` §0.1 is written once), id generation, header helpers.

use bytes::{BufMut, BytesMut};
use serde_json::{json, Value};

use super::Usage;

const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `prefix` + 24 alphanumerics derived from `seed` (splitmix64): deterministic for tests,
/// distinct for distinct seeds.
pub fn gen_id(prefix: &str, seed: u64) -> String {
    let mut s = seed;
    let mut out = String::with_capacity(prefix.len() + 24);
    out.push_str(prefix);
    for _ in 0..24 {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.push(ALNUM[(z % 62) as usize] as char);
    }
    out
}

/// A random seed for ids (not cryptographic; ids only need to be unique).
pub fn random_seed() -> u64 {
    rand::random()
}

/// Parse `retry-after` (seconds or HTTP date) and `retry-after-ms` into whole seconds.
pub fn retry_after(headers: &http::HeaderMap, now: u64) -> Option<u64> {
    if let Some(ms) = header_str(headers, "retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some((ms / 1000.0).ceil() as u64);
        }
    }
    let v = header_str(headers, "retry-after")?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs);
    }
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(secs.ceil() as u64);
        }
    }
    httpdate_to_unix(v).map(|t| t.saturating_sub(now))
}

pub fn header_str<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// RFC 7231 IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to unix seconds.
pub fn httpdate_to_unix(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 {
        return None;
    }
    let day: u64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as u64
        + 1;
    let year: u64 = parts[3].parse().ok()?;
    let hms: Vec<u64> = parts[4].split(':').filter_map(|p| p.parse().ok()).collect();
    if hms.len() != 3 {
        return None;
    }
    Some(civil_to_unix(year, month, day)? + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

/// RFC 3339 (`2026-01-01T00:00:30Z`, fractional seconds and offsets allowed) to unix seconds.
pub fn rfc3339_to_unix(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.len() < 20 {
        return None;
    }
    let year: u64 = s.get(0..4)?.parse().ok()?;
    let month: u64 = s.get(5..7)?.parse().ok()?;
    let day: u64 = s.get(8..10)?.parse().ok()?;
    let h: u64 = s.get(11..13)?.parse().ok()?;
    let m: u64 = s.get(14..16)?.parse().ok()?;
    let sec: u64 = s.get(17..19)?.parse().ok()?;
    let mut t = civil_to_unix(year, month, day)? + h * 3600 + m * 60 + sec;
    let rest = s.get(19..)?;
    let tz_start = rest.find(['Z', 'z', '+', '-'])?;
    let tz = &rest[tz_start..];
    if tz.len() == 6 {
        let sign = &tz[0..1];
        let oh: u64 = tz.get(1..3)?.parse().ok()?;
        let om: u64 = tz.get(4..6)?.parse().ok()?;
        let off = oh * 3600 + om * 60;
        t = if sign == "+" { t.checked_sub(off)? } else { t + off };
    }
    Some(t)
}

fn civil_to_unix(y: u64, m: u64, d: u64) -> Option<u64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    // Days from civil, Howard Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y } as i64;
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    u64::try_from(days).ok().map(|d| d * 86400)
}

/// Seconds as an OpenAI-style duration (`1s`, `6m0s`, `1h2m3s`).
pub fn duration_string(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// OpenAI usage JSON with the optional details objects left out when absent.
pub fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    })
}

/// Writes the OpenAI `chat.completion.chunk` grammar: role chunk once and first, content and
/// tool-call deltas, one finish chunk, the usage chunk only when asked for, `[DONE]`.
#[derive(Debug, Clone)]
pub struct ChunkEmitter {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub include_usage: bool,
    role_sent: bool,
    finished: bool,
    /// A content, tool-call or finish chunk went out: the commit point.
    committed: bool,
}

impl ChunkEmitter {
    pub fn new(id: &str, created: u64, model: &str, include_usage: bool) -> Self {
        ChunkEmitter {
            id: id.to_string(),
            created,
            model: model.to_string(),
            include_usage,
            role_sent: false,
            finished: false,
            committed: false,
        }
    }

    pub fn committed(&self) -> bool {
        self.committed
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    pub fn role_sent(&self) -> bool {
        self.role_sent
    }

    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":[{"index":0,
    /// "delta":<delta>,"logprobs":null,"finish_reason":…}]}`, written straight into `out`: no
    /// value tree per chunk (this runs for every event of every stream).
    fn write_delta_with(&self, finish_reason: Option<&str>, out: &mut BytesMut, delta: impl FnOnce(&mut BytesMut)) {
        out.put_slice(b"data: {\"id\":");
        put_json_str(&self.id, out);
        out.put_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        put_u64(self.created, out);
        out.put_slice(b",\"model\":");
        put_json_str(&self.model, out);
        out.put_slice(b",\"choices\":[{\"index\":0,\"delta\":");
        delta(out);
        out.put_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish_reason {
            Some(r) => put_json_str(r, out),
            None => out.put_slice(b"null"),
        }
        out.put_slice(b"}]");
        if self.include_usage {
            out.put_slice(b",\"usage\":null");
        }
        out.put_slice(b"}\n\n");
    }

    fn write_delta(&mut self, delta: Value, finish_reason: Option<&str>, out: &mut BytesMut) {
        self.write_delta_with(finish_reason, out, |out| put_json(&delta, out));
    }

    /// An already-shaped chunk (legacy completions), written as-is; it commits the stream.
    pub fn raw_chunk(&mut self, chunk: &Value, out: &mut BytesMut) {
        self.committed = true;
        write_data(chunk, out);
    }

    /// The role chunk; emitted once, before anything else.
    pub fn role(&mut self, out: &mut BytesMut) {
        if !self.role_sent {
            self.role_sent = true;
            self.write_delta_with(None, out, |out| out.put_slice(br#"{"role":"assistant","content":""}"#));
        }
    }

    pub fn content(&mut self, text: &str, out: &mut BytesMut) {
        if text.is_empty() || self.finished {
            return;
        }
        self.role(out);
        self.committed = true;
        self.write_delta_with(None, out, |out| {
            out.put_slice(br#"{"content":"#);
            put_json_str(text, out);
            out.put_slice(b"}");
        });
    }

    /// A delta with arbitrary extra fields (e.g. `reasoning_content`), committed.
    pub fn delta(&mut self, delta: Value, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.role(out);
        self.committed = true;
        self.write_delta(delta, None, out);
    }

    /// First fragment of tool call `index`: id, type, name and the first arguments.
    pub fn tool_call_start(&mut self, index: usize, id: &str, name: &str, arguments: &str, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.role(out);
        self.committed = true;
        self.write_delta_with(None, out, |out| {
            out.put_slice(br#"{"tool_calls":[{"index":"#);
            put_u64(index as u64, out);
            out.put_slice(br#","id":"#);
            put_json_str(id, out);
            out.put_slice(br#","type":"function","function":{"name":"#);
            put_json_str(name, out);
            out.put_slice(br#","arguments":"#);
            put_json_str(arguments, out);
            out.put_slice(b"}}]}");
        });
    }

    /// A later arguments fragment of tool call `index`; empty fragments are skipped.
    pub fn tool_call_args(&mut self, index: usize, arguments: &str, out: &mut BytesMut) {
        if arguments.is_empty() || self.finished {
            return;
        }
        self.role(out);
        self.committed = true;
        self.write_delta_with(None, out, |out| {
            out.put_slice(br#"{"tool_calls":[{"index":"#);
            put_u64(index as u64, out);
            out.put_slice(br#","function":{"arguments":"#);
            put_json_str(arguments, out);
            out.put_slice(b"}}]}");
        });
    }

    /// The finish chunk, once.
    pub fn finish(&mut self, reason: &str, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.role(out);
        self.committed = true;
        self.finished = true;
        self.write_delta_with(Some(reason), out, |out| out.put_slice(b"{}"));
    }

    /// The usage chunk (`choices: []`), only when the client asked for it.
    pub fn usage(&mut self, usage: Value, out: &mut BytesMut) {
        if !self.include_usage {
            return;
        }
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        });
        write_data(&chunk, out);
    }

    pub fn done(&self, out: &mut BytesMut) {
        out.put_slice(b"data: [DONE]\n\n");
    }
}

/// `data: <json>\n\n`
pub fn write_data(v: &Value, out: &mut BytesMut) {
    out.put_slice(b"data: ");
    put_json(v, out);
    out.put_slice(b"\n\n");
}

/// Serialize a value at the end of `out` (in place: no intermediate buffer).
pub fn put_json<T: serde::Serialize + ?Sized>(v: &T, out: &mut BytesMut) {
    let mark = out.len();
    // Writing to memory does not fail; a value that cannot be serialized leaves `null`.
    if serde_json::to_writer(out.writer(), v).is_err() {
        out.truncate(mark);
        out.put_slice(b"null");
    }
}

/// A JSON string literal, escaped.
pub fn put_json_str(s: &str, out: &mut BytesMut) {
    put_json(s, out);
}

pub fn put_u64(n: u64, out: &mut BytesMut) {
    put_json(&n, out);
}

/// Compact JSON string of a value (tool arguments); `"{}"` for null or absent.
pub fn arguments_string(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) if s.is_empty() => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Parse a `data:` URL into (mime, base64 data). `^data:([^;,]+)?(;[^,]*)?;base64,(.*)$`
pub fn parse_data_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let meta = meta.strip_suffix(";base64")?;
    let mime = meta.split(';').next().unwrap_or("").to_string();
    Some((mime, data.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_shaped() {
        let a = gen_id("call_", 1);
        assert_eq!(a, gen_id("call_", 1));
        assert_ne!(a, gen_id("call_", 2));
        assert_eq!(a.len(), 29);
        assert!(a[5..].chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn times_parse() {
        assert_eq!(rfc3339_to_unix("2026-01-01T00:00:30Z"), Some(1_767_225_630));
        assert_eq!(rfc3339_to_unix("2026-01-01T01:00:00+01:00"), Some(1_767_225_600));
        assert_eq!(httpdate_to_unix("Thu, 01 Jan 2026 00:00:10 GMT"), Some(1_767_225_610));
        assert_eq!(duration_string(30), "30s");
        assert_eq!(duration_string(360), "6m0s");
    }

    #[test]
    fn retry_after_forms() {
        let mut h = http::HeaderMap::new();
        h.insert("retry-after", http::HeaderValue::from_static("10"));
        assert_eq!(retry_after(&h, 0), Some(10));
        h.insert("retry-after-ms", http::HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h, 0), Some(2));
        let mut h = http::HeaderMap::new();
        h.insert(
            "retry-after",
            http::HeaderValue::from_static("Thu, 01 Jan 2026 00:00:10 GMT"),
        );
        assert_eq!(retry_after(&h, 1_767_225_600), Some(10));
    }

    #[test]
    fn data_urls() {
        assert_eq!(
            parse_data_url("data:image/png;base64,iVBO"),
            Some(("image/png".into(), "iVBO".into()))
        );
        assert_eq!(parse_data_url("data:;base64,xx"), Some(("".into(), "xx".into())));
        assert_eq!(parse_data_url("https://x"), None);
    }

    #[test]
    fn emitter_grammar() {
        let mut e = ChunkEmitter::new("id1", 5, "m", false);
        let mut out = BytesMut::new();
        e.content("", &mut out);
        assert!(out.is_empty());
        assert!(!e.committed());
        e.content("hi", &mut out);
        e.finish("stop", &mut out);
        e.finish("stop", &mut out);
        e.done(&mut out);
        let s = String::from_utf8(out.to_vec()).unwrap_or_default();
        assert_eq!(s.matches("data: ").count(), 4);
        assert!(!s.contains("usage"));
    }
}
