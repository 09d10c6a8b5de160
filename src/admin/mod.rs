//! The control plane: its own listener (a Pingora service with one thread), bearer
//! `PRISM_ADMIN_KEY` on everything but `/healthz` and `/readyz`.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::json;

use crate::state::App;

pub struct Admin {
    pub app: Arc<App>,
    /// SHA-256 of `PRISM_ADMIN_KEY`; `None` means every protected endpoint answers 401.
    pub admin_key_hash: Option<[u8; 32]>,
}

pub fn json_response(status: u16, body: &serde_json::Value) -> Response<Vec<u8>> {
    let bytes = body.to_string().into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", bytes.len())
        .body(bytes)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

pub fn error_response(e: &crate::error::GatewayError) -> Response<Vec<u8>> {
    json_response(e.status, &e.envelope())
}

impl Admin {
    fn authorized(&self, session: &ServerSession) -> bool {
        let Some(expected) = &self.admin_key_hash else {
            return false;
        };
        let presented = session
            .req_header()
            .headers
            .get("authorization")
            .and_then(|v| crate::auth::bearer(v.as_bytes()));
        match presented {
            Some(p) => {
                use subtle::ConstantTimeEq;
                bool::from(crate::auth::hash_key(p).ct_eq(expected))
            }
            None => false,
        }
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let method = session.req_header().method.clone();
        match (method.as_str(), path.as_str()) {
            ("GET", "/healthz") => return json_response(200, &json!({"status": "ok"})),
            ("GET", "/readyz") => {
                return if self.app.is_ready() {
                    json_response(200, &json!({"status": "ready"}))
                } else {
                    let why = if self.app.is_draining() { "draining" } else { "starting" };
                    json_response(503, &json!({"status": why}))
                };
            }
            _ => {}
        }
        if !self.authorized(session) {
            let msg = if self.admin_key_hash.is_none() {
                "The control plane is locked: set PRISM_ADMIN_KEY to use it."
            } else {
                "Missing or incorrect admin key: send `Authorization: Bearer $PRISM_ADMIN_KEY`."
            };
            return error_response(&crate::error::GatewayError::unauthorized(msg));
        }
        match (method.as_str(), path.as_str()) {
            ("POST", "/v1/reload") => match self.app.reload_file() {
                Ok(c) => json_response(
                    200,
                    &json!({"reloaded": true, "added": c.added, "removed": c.removed,
                            "changed": c.changed, "routes_changed": c.routes_changed}),
                ),
                Err(errors) => {
                    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    log::warn!("errors={list:?} config reload rejected, the running config stays");
                    json_response(
                        400,
                        &json!({"error": {"message": format!("config rejected: {}", list.join("; ")),
                                          "type": "invalid_request_error", "param": null,
                                          "code": "invalid_config"}, "errors": list}),
                    )
                }
            },
            _ => error_response(&crate::error::GatewayError::not_found(format!("Unknown control-plane path {method} {path}"))),
        }
    }
}
