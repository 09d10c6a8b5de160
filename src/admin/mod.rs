//! The control plane: its own listener (a Pingora service with one thread), bearer
//! `PRISM_ADMIN_KEY` on everything but `/healthz` and `/readyz`.

pub mod control;
pub mod keys;
pub mod org_configs;

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::json;

use crate::error::GatewayError;
use crate::state::App;

pub use control::ControlPlane;

/// Largest accepted control-plane request body.
pub const MAX_BODY: usize = 1 << 20;

pub struct Admin {
    pub app: Arc<App>,
    /// SHA-256 of `PRISM_ADMIN_KEY`; `None` means every protected endpoint answers 401.
    pub admin_key_hash: Option<[u8; 32]>,
    /// The runtime records (org configs, gateway keys); `None` when no store is attached.
    pub control: Option<Arc<ControlPlane>>,
}

/// The collections served under `/v1/`, and the record id when the path names one.
enum Resource<'a> {
    OrgConfigs(Option<&'a str>),
    Keys(Option<&'a str>),
}

fn resource(path: &str) -> Option<Resource<'_>> {
    let path = path.strip_suffix('/').unwrap_or(path);
    // `None`: the collection itself; `Some(id)`: one record (ids never contain `/`).
    fn item(rest: &str) -> Option<Option<&str>> {
        match rest.strip_prefix('/') {
            None if rest.is_empty() => Some(None),
            Some(id) if !id.is_empty() && !id.contains('/') => Some(Some(id)),
            _ => None,
        }
    }
    if let Some(rest) = path.strip_prefix("/v1/org_configs") {
        return item(rest).map(Resource::OrgConfigs);
    }
    if let Some(rest) = path.strip_prefix("/v1/keys") {
        return item(rest).map(Resource::Keys);
    }
    None
}

/// The whole request body, refused with 413 past `limit` (checked against Content-Length
/// first, then while reading).
async fn read_body(session: &mut ServerSession, limit: usize) -> Result<Vec<u8>, GatewayError> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::too_large(limit));
    }
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(GatewayError::too_large(limit));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(GatewayError::invalid_request(format!(
                    "Cannot read the request body: {e}"
                )))
            }
        }
    }
}

impl Admin {
    /// `/v1/org_configs` and `/v1/keys`: read the body when the method has one, then hand it
    /// to the handler. Handlers are synchronous: they hold the write lock, never across I/O
    /// with the client.
    async fn records(&self, session: &mut ServerSession, method: &str, res: Resource<'_>) -> Response<Vec<u8>> {
        let Some(cp) = &self.control else {
            return error_response(&GatewayError::unavailable("The control-plane store is not available."));
        };
        let body = if matches!(method, "POST" | "PATCH") {
            match read_body(session, MAX_BODY).await {
                Ok(b) => b,
                Err(e) => {
                    // The rest of an oversized body is not read: do not reuse the connection.
                    session.set_keepalive(None);
                    return error_response(&e);
                }
            }
        } else {
            Vec::new()
        };
        let answer = match (res, method) {
            (Resource::OrgConfigs(None), "GET") => org_configs::list(cp),
            (Resource::OrgConfigs(None), "POST") => org_configs::create(cp, &body),
            (Resource::OrgConfigs(Some(id)), "GET") => org_configs::get(cp, id),
            (Resource::OrgConfigs(Some(id)), "PATCH") => org_configs::patch(cp, id, &body),
            (Resource::OrgConfigs(Some(id)), "DELETE") => org_configs::delete(cp, id),
            (Resource::Keys(None), "GET") => keys::list(cp),
            (Resource::Keys(None), "POST") => keys::create(cp, &body),
            (Resource::Keys(Some(id)), "DELETE") => keys::delete(cp, id),
            (Resource::OrgConfigs(None), _) => {
                Err(GatewayError::method_not_allowed("Use GET or POST on /v1/org_configs."))
            }
            (Resource::OrgConfigs(Some(_)), _) => Err(GatewayError::method_not_allowed(
                "Use GET, PATCH or DELETE on /v1/org_configs/{id}.",
            )),
            (Resource::Keys(None), _) => Err(GatewayError::method_not_allowed("Use GET or POST on /v1/keys.")),
            (Resource::Keys(Some(_)), _) => Err(GatewayError::method_not_allowed("Use DELETE on /v1/keys/{id}.")),
        };
        match answer {
            Ok((status, body)) => json_response(status, &body),
            Err(e) => error_response(&e),
        }
    }
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
            ("GET", "/v1/providers/health") => {
                let table = self.app.table.load_full();
                match self.app.health.get() {
                    Some(h) => json_response(200, &h.report_json(&table)),
                    None => json_response(200, &json!({"object": "list", "data": []})),
                }
            }
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
            _ => match resource(&path) {
                Some(res) => self.records(session, method.as_str(), res).await,
                None => error_response(&GatewayError::not_found(format!(
                    "Unknown control-plane path {method} {path}"
                ))),
            },
        }
    }
}
