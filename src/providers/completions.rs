//! Legacy `/v1/completions` for kinds without a native text-completion endpoint: the request
//! becomes a one-message chat request, the chat answer (or stream) becomes `text_completion`.

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};

use super::{util, StreamTranslator, Usage};
use crate::error::{GatewayError, Result};
use crate::sse;

/// Rewrite a completions request body as a chat request body.
pub fn to_chat_request(body: &[u8]) -> Result<Bytes> {
    let v: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| GatewayError::invalid_request(format!("Request body is not a JSON object: {e}")))?;
    let mut out = Map::new();
    for (k, val) in v {
        match k.as_str() {
            "prompt" => {
                let text = match &val {
                    Value::String(s) => s.clone(),
                    Value::Array(a) if a.len() == 1 && a[0].is_string() => {
                        a[0].as_str().unwrap_or_default().to_string()
                    }
                    _ => {
                        return Err(GatewayError::unsupported_param(
                            "prompt",
                            "prompt must be a string (or a list of one string) for this provider",
                        ))
                    }
                };
                out.insert("messages".into(), json!([{"role": "user", "content": text}]));
            }
            "echo" if val == Value::Bool(true) => {
                return Err(GatewayError::unsupported_param(
                    "echo",
                    "echo is not supported for this provider",
                ))
            }
            "best_of" if val.as_u64().is_some_and(|n| n > 1) => {
                return Err(GatewayError::unsupported_param(
                    "best_of",
                    "best_of is not supported for this provider",
                ))
            }
            "logprobs" if !val.is_null() => {
                return Err(GatewayError::unsupported_param(
                    "logprobs",
                    "logprobs is not supported for this provider",
                ))
            }
            "suffix" if val.as_str().is_some_and(|s| !s.is_empty()) => {
                return Err(GatewayError::unsupported_param(
                    "suffix",
                    "suffix is not supported for this provider",
                ))
            }
            "echo" | "best_of" | "logprobs" | "suffix" => {}
            _ => {
                out.insert(k, val);
            }
        }
    }
    if !out.contains_key("messages") {
        return Err(GatewayError::invalid_request("you must provide a prompt").with_param("prompt"));
    }
    Ok(Bytes::from(serde_json::to_vec(&Value::Object(out)).unwrap_or_default()))
}

/// A `chat.completion` body as a `text_completion` body.
pub fn from_chat_response(body: &[u8]) -> Result<Bytes> {
    let mut v: Value = serde_json::from_slice(body).map_err(|e| GatewayError::internal(e.to_string()))?;
    let choices: Vec<Value> = v["choices"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    json!({"text": c["message"]["content"].as_str().unwrap_or_default(),
                           "index": c["index"], "logprobs": null, "finish_reason": c["finish_reason"]})
                })
                .collect()
        })
        .unwrap_or_default();
    v["object"] = json!("text_completion");
    v["choices"] = Value::Array(choices);
    Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
}

/// Wraps a chat stream translator and rewrites its chunks as `text_completion` chunks.
pub struct CompletionsStream {
    inner: Box<dyn StreamTranslator>,
    decoder: sse::Decoder,
    scratch: BytesMut,
}

impl CompletionsStream {
    pub fn new(inner: Box<dyn StreamTranslator>) -> Self {
        CompletionsStream {
            inner,
            decoder: sse::Decoder::new(),
            scratch: BytesMut::new(),
        }
    }

    fn convert(&mut self, out: &mut BytesMut) {
        let chat = self.scratch.split();
        let mut events = Vec::new();
        // The inner translator writes complete, small events: the limit cannot be reached.
        let _ = self.decoder.push(&chat, |e| events.push(e));
        for e in events {
            if e.data == "[DONE]" {
                out.extend_from_slice(b"data: [DONE]\n\n");
                continue;
            }
            let Ok(mut v) = serde_json::from_str::<Value>(&e.data) else {
                continue;
            };
            v["object"] = json!("text_completion");
            if let Some(choices) = v["choices"].as_array() {
                let Some(c) = choices.first() else {
                    util::write_data(&v, out);
                    continue;
                };
                let text = c["delta"]["content"].as_str().unwrap_or_default();
                let finish = &c["finish_reason"];
                // The role chunk and tool deltas carry no text.
                if text.is_empty() && finish.is_null() {
                    continue;
                }
                v["choices"] = json!([{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]);
            }
            util::write_data(&v, out);
        }
    }
}

impl StreamTranslator for CompletionsStream {
    fn feed(&mut self, input: &[u8], out: &mut BytesMut) -> Result<()> {
        let r = self.inner.feed(input, &mut self.scratch);
        self.convert(out);
        r
    }

    fn finish(&mut self, out: &mut BytesMut) -> Result<()> {
        let r = self.inner.finish(&mut self.scratch);
        self.convert(out);
        r
    }

    fn committed(&self) -> bool {
        self.inner.committed()
    }

    fn usage(&self) -> Option<Usage> {
        self.inner.usage()
    }

    fn upstream_model(&self) -> Option<&str> {
        self.inner.upstream_model()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_response() {
        let b = to_chat_request(br#"{"model":"m","prompt":"Say hi","max_tokens":5,"stream":true}"#).unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["messages"][0]["content"], "Say hi");
        assert_eq!(v["max_tokens"], 5);
        assert!(v.get("prompt").is_none());
        assert_eq!(
            to_chat_request(br#"{"model":"m","prompt":["a","b"]}"#)
                .unwrap_err()
                .param
                .as_deref(),
            Some("prompt")
        );
        assert_eq!(
            to_chat_request(br#"{"model":"m","prompt":"x","echo":true}"#)
                .unwrap_err()
                .param
                .as_deref(),
            Some("echo")
        );
        let r = from_chat_response(br#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#).unwrap();
        let v: Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], "hi");
        assert_eq!(v["usage"]["total_tokens"], 2);
    }
}
