//! `/_mock/*`: control endpoints for tests. Never counted, never faulted.
//!
//! - `POST /_mock/fault` `{"directives":"status=503,retry_after=2","count":3}` arms a global fault
//!   for the next `count` requests (all of them when `count` is absent); `DELETE` disarms it.
//! - `GET /_mock/stats` → `{"requests":N,"by_path":{...}}`; `POST /_mock/reset` zeroes it all.
//! - `GET /_mock/last` → the last non-control request.

use http::{Method, Response};
use serde_json::{json, Map, Value};

use crate::body::MockBody;
use crate::directives::Directives;
use crate::respond::json_response;
use crate::state::State;

pub fn handle(state: &State, method: &Method, path: &str, body: &[u8]) -> Response<MockBody> {
    match (method.as_str(), path) {
        ("POST", "/_mock/fault") => arm(state, body),
        ("DELETE", "/_mock/fault") => {
            state.clear_fault();
            json_response(200, &json!({"cleared": true}))
        }
        ("GET", "/_mock/stats") => {
            let (requests, paths) = state.stats();
            let by_path: Map<String, Value> = paths.into_iter().map(|(p, n)| (p, json!(n))).collect();
            json_response(200, &json!({"requests": requests, "by_path": by_path}))
        }
        ("POST", "/_mock/reset") => {
            state.reset();
            json_response(200, &json!({"reset": true}))
        }
        ("GET", "/_mock/last") => last(state),
        _ => json_response(
            404,
            &json!({"error": format!("unknown control endpoint {method} {path}")}),
        ),
    }
}

fn arm(state: &State, body: &[u8]) -> Response<MockBody> {
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return json_response(400, &json!({"error": format!("invalid JSON: {e}")})),
    };
    let Some(list) = parsed.get("directives").and_then(Value::as_str) else {
        return json_response(400, &json!({"error": "\"directives\" (string) is required"}));
    };
    let count = match parsed.get("count") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) => Some(n),
            None => return json_response(400, &json!({"error": "\"count\" must be a non-negative integer"})),
        },
    };
    state.set_fault(Directives::parse(list), count);
    json_response(200, &json!({"armed": true, "directives": list, "count": count}))
}

fn last(state: &State) -> Response<MockBody> {
    let Some(last) = state.last() else {
        return json_response(404, &json!({"error": "no request received yet"}));
    };
    let mut headers = Map::new();
    for (name, value) in &last.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let body = serde_json::from_slice::<Value>(&last.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&last.body).into_owned()));
    json_response(
        200,
        &json!({
            "method": last.method.as_str(),
            "version": last.version,
            "path": last.path,
            "query": last.query,
            "headers": headers,
            "body": body,
            "body_len": last.body.len()
        }),
    )
}
