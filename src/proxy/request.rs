//! The client's request: its body (any size up to the limit, read by us so that nothing
//! depends on Pingora's 64 KiB replay buffer) and the few fields routing needs.

use bytes::{Bytes, BytesMut};
use pingora_proxy::Session;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{GatewayError, Result};
use crate::providers::Endpoint;

/// Read the whole body, refusing it as soon as it passes `limit`.
pub async fn read_body(session: &mut Session, limit: usize) -> Result<Bytes> {
    let declared = session
        .req_header()
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::too_large(limit));
    }
    let expects_continue = session
        .req_header()
        .headers
        .get("expect")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session
            .write_continue_response()
            .await
            .map_err(|_| GatewayError::invalid_request("client connection failed"))?;
    }
    // A body that arrives as one piece is kept as it came: no copy. Only a second piece
    // starts a buffer (sized from the declared length).
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                let have = first.as_ref().map_or(0, Bytes::len) + buf.len();
                if have + chunk.len() > limit {
                    return Err(GatewayError::too_large(limit));
                }
                match first.take() {
                    None if buf.is_empty() => first = Some(chunk),
                    None => buf.extend_from_slice(&chunk),
                    Some(f) => {
                        buf.reserve(declared.unwrap_or(f.len() + chunk.len()).min(limit));
                        buf.extend_from_slice(&f);
                        buf.extend_from_slice(&chunk);
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                return Err(GatewayError::invalid_request(format!(
                    "could not read the request body: {}",
                    e.etype().as_str()
                ))
                .with_code("body_read_error"))
            }
        }
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

/// The fields the gateway itself needs; everything else stays raw for the translator.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(default)]
    model: Option<Value>,
    #[serde(default)]
    stream: Option<Value>,
    #[serde(default)]
    stream_options: Option<Value>,
    #[serde(default, borrow)]
    messages: Option<&'a RawValue>,
    #[serde(default, borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
    #[serde(default)]
    encoding_format: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub embed_base64: bool,
}

fn type_error(param: &str, expected: &str) -> GatewayError {
    GatewayError::invalid_request(format!("Invalid type for '{param}': expected {expected}.")).with_param(param)
}

/// Check the request's shape and pull out the routing fields.
pub fn parse(body: &[u8], endpoint: Endpoint) -> Result<Parsed> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::invalid_request(
            "The request body is empty; send a JSON object (Content-Type: application/json).",
        ));
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        let what = if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
            "is not a JSON object"
        } else {
            "is not valid JSON"
        };
        return Err(GatewayError::invalid_request(format!(
            "The request body {what}. Send a JSON object (Content-Type: application/json)."
        )));
    }
    let peek: Peek = serde_json::from_slice(body).map_err(|e| {
        let what = if e.is_data() {
            "is not a JSON object"
        } else {
            "is not valid JSON"
        };
        GatewayError::invalid_request(format!(
            "The request body {what} ({e}). Send a JSON object (Content-Type: application/json)."
        ))
    })?;
    let model = match peek.model {
        None | Some(Value::Null) => {
            return Err(GatewayError::invalid_request("You must provide a model parameter.").with_param("model"))
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(GatewayError::invalid_request("The model parameter must not be empty.").with_param("model"))
        }
        Some(Value::String(s)) => s,
        Some(_) => return Err(type_error("model", "a string")),
    };
    let stream = match peek.stream {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(type_error("stream", "a boolean")),
    };
    let include_usage = match &peek.stream_options {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(type_error("stream_options.include_usage", "a boolean")),
        },
        Some(_) => return Err(type_error("stream_options", "an object")),
    };
    let first = |r: Option<&RawValue>| r.and_then(|r| r.get().bytes().next());
    match endpoint {
        Endpoint::Chat => match first(peek.messages) {
            None => {
                return Err(
                    GatewayError::invalid_request("You must provide a messages parameter.").with_param("messages")
                )
            }
            Some(b'[') => {
                if peek
                    .messages
                    .is_some_and(|m| m.get().trim_start_matches('[').trim_start().starts_with(']'))
                {
                    return Err(
                        GatewayError::invalid_request("messages must contain at least one message.")
                            .with_param("messages"),
                    );
                }
            }
            Some(_) => return Err(type_error("messages", "an array")),
        },
        Endpoint::Completions => match first(peek.prompt) {
            None | Some(b'n') => {
                return Err(GatewayError::invalid_request("You must provide a prompt parameter.").with_param("prompt"))
            }
            Some(b'"' | b'[') => {}
            Some(_) => return Err(type_error("prompt", "a string or an array")),
        },
        Endpoint::Embeddings => match first(peek.input) {
            None | Some(b'n') => {
                return Err(GatewayError::invalid_request("You must provide an input parameter.").with_param("input"))
            }
            Some(b'"' | b'[') => {}
            Some(_) => return Err(type_error("input", "a string or an array")),
        },
    }
    let embed_base64 = match &peek.encoding_format {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "float" => false,
        Some(Value::String(s)) if s == "base64" => true,
        Some(_) => {
            return Err(
                GatewayError::invalid_request("encoding_format must be 'float' or 'base64'.")
                    .with_param("encoding_format"),
            )
        }
    };
    Ok(Parsed {
        model,
        stream: stream && endpoint != Endpoint::Embeddings,
        include_usage: stream && include_usage,
        embed_base64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_anywhere_and_types_checked() {
        let p = parse(br#"{"messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true},"model":"a/b"}"#, Endpoint::Chat).unwrap();
        assert_eq!(p.model, "a/b");
        assert!(p.stream && p.include_usage);
        for (body, param) in [
            (&br#"{"messages":[]}"#[..], "model"),
            (br#"{"model":5,"messages":[]}"#, "model"),
            (br#"{"model":"m","messages":"hi"}"#, "messages"),
            (br#"{"model":"m"}"#, "messages"),
            (br#"{"model":"m","messages":[ ]}"#, "messages"),
            (br#"{"model":"m","messages":[{}],"stream":"yes"}"#, "stream"),
        ] {
            assert_eq!(
                parse(body, Endpoint::Chat).unwrap_err().param.as_deref(),
                Some(param),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(parse(b"{not json", Endpoint::Chat)
            .unwrap_err()
            .message
            .contains("not valid JSON"));
        assert!(parse(b"[1,2]", Endpoint::Chat)
            .unwrap_err()
            .message
            .contains("not a JSON object"));
        assert!(parse(b"", Endpoint::Chat).unwrap_err().message.contains("empty"));
        let p = parse(
            br#"{"model":"e","input":"hi","encoding_format":"base64"}"#,
            Endpoint::Embeddings,
        )
        .unwrap();
        assert!(p.embed_base64 && !p.stream);
        assert_eq!(
            parse(br#"{"model":"e","input":3}"#, Endpoint::Embeddings)
                .unwrap_err()
                .param
                .as_deref(),
            Some("input")
        );
    }
}
