//! The data plane's `ProxyHttp` implementation, kept thin: `request_filter` answers every
//! request itself (auth, body, routing, the upstream exchange through our own connector
//! calls), so Pingora's proxy phases after it never run; `logging` writes the access log.

pub mod ctx;
pub mod request;
pub mod respond;
pub mod serve;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType};
use pingora_proxy::{ProxyHttp, Session};
use serde_json::json;

use crate::auth;
use crate::error::GatewayError;
use crate::health::Health;
use crate::providers::Endpoint;
use crate::router;
use crate::state::App;
use crate::table::SharedTable;
use crate::telemetry;
use crate::upstream::{images, Upstreams};
use ctx::RequestCtx;

pub struct Gateway {
    pub app: Arc<App>,
    pub table: SharedTable,
    pub upstreams: Arc<Upstreams>,
    pub health: Arc<Health>,
}

impl Gateway {
    pub fn new(app: Arc<App>, upstreams: Arc<Upstreams>, health: Arc<Health>) -> Self {
        Gateway {
            table: app.table.clone(),
            app,
            upstreams,
            health,
        }
    }

    async fn handle(&self, session: &mut Session, ctx: &mut RequestCtx) -> pingora_error::Result<()> {
        ctx.request_id = request_id(session);
        let (method, path) = {
            let req = session.req_header();
            (req.method.clone(), req.uri.path().to_string())
        };
        let endpoint = match path.trim_end_matches('/') {
            "/v1/chat/completions" | "/chat/completions" => Some(Endpoint::Chat),
            "/v1/completions" | "/completions" => Some(Endpoint::Completions),
            "/v1/embeddings" | "/embeddings" => Some(Endpoint::Embeddings),
            _ => None,
        };
        ctx.endpoint = endpoint.map(Endpoint::as_str).unwrap_or(match path.as_str() {
            "/v1/models" | "/models" => "models",
            "/healthz" => "healthz",
            _ => "other",
        });
        // One snapshot for the whole request, even if a reload swaps the table meanwhile.
        let table = self.table.load_full();
        if path == "/healthz" {
            let h = respond::header(200, "application/json", ctx);
            return respond::json(session, ctx, h, Bytes::from_static(b"{\"status\":\"ok\"}")).await;
        }
        if endpoint.is_none() && ctx.endpoint != "models" {
            let e = GatewayError::not_found(format!(
                "Unknown path {path}. This gateway serves the OpenAI API under /v1/."
            ));
            return respond::error(session, ctx, &e, None).await;
        }
        if table.auth_enabled {
            let presented = session
                .req_header()
                .headers
                .get("authorization")
                .and_then(|v| auth::bearer(v.as_bytes()))
                .map(str::to_string);
            match presented.as_deref().and_then(|k| table.keys.check(k)) {
                Some(id) => ctx.key_id = Some(id.to_string()),
                None => {
                    let msg = if presented.is_none() {
                        "Missing API key: send `Authorization: Bearer <gateway key>`."
                    } else {
                        "Incorrect API key provided."
                    };
                    session.set_keepalive(None);
                    return respond::error(session, ctx, &GatewayError::unauthorized(msg), None).await;
                }
            }
        }
        let Some(endpoint) = endpoint else {
            if method != http::Method::GET {
                return respond::error(
                    session,
                    ctx,
                    &GatewayError::method_not_allowed("Use GET /v1/models."),
                    None,
                )
                .await;
            }
            let data: Vec<_> = router::list_models(&table, &self.app.discovered())
                .into_iter()
                .map(|(id, owner)| json!({"id": id, "object": "model", "created": 0, "owned_by": owner}))
                .collect();
            let body = Bytes::from(json!({"object": "list", "data": data}).to_string());
            let h = respond::header(200, "application/json", ctx);
            return respond::json(session, ctx, h, body).await;
        };
        if method != http::Method::POST {
            let e = GatewayError::method_not_allowed(format!("Use POST {path}."));
            return respond::error(session, ctx, &e, None).await;
        }
        let body = match request::read_body(session, table.max_body).await {
            Ok(b) => b,
            Err(e) => {
                session.set_keepalive(None);
                return respond::error(session, ctx, &e, None).await;
            }
        };
        let parsed = match request::parse(&body, endpoint) {
            Ok(p) => p,
            Err(e) => return respond::error(session, ctx, &e, None).await,
        };
        ctx.model = Some(parsed.model.clone());
        if parsed.stream {
            telemetry::metrics::METRICS.stream_started();
            ctx.stream = true;
        }
        let candidates = match router::resolve(&table, &parsed.model, rand::random()) {
            Ok(c) => c,
            Err(e) => return respond::error(session, ctx, &e, None).await,
        };
        let config = self.app.config.load_full();
        let call = serve::Call {
            upstreams: &self.upstreams,
            health: &self.health,
            policy: &config.health,
            endpoint,
            body: &body,
            parsed: &parsed,
            max_response: table.max_response,
            images: &images::ImagePolicy {
                max_bytes: config.server.image_max_size.0,
                timeout: config.server.image_timeout.0,
                max_images: 8,
                allow_private: config.server.image_allow_private,
            },
            no_images: Default::default(),
        };
        call.run(session, ctx, &candidates).await
    }
}

/// The client's `x-request-id` when it is sane, else a new one.
fn request_id(session: &Session) -> String {
    session
        .req_header()
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| crate::providers::util::gen_id("req_", rand::random()))
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    /// Answers every request here; returning `true` tells Pingora the response is sent.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> pingora_error::Result<bool> {
        // Counted as a plain request until the body says it streams; `logging` balances it.
        telemetry::metrics::METRICS.request_started(false);
        if let Err(e) = self.handle(session, ctx).await {
            // Only the client connection can fail here; there is nobody left to answer.
            ctx.status = ctx.status.max(499);
            log::debug!(
                "request_id={} client connection error: {}",
                ctx.request_id,
                e.etype().as_str()
            );
        }
        Ok(true)
    }

    /// Never reached: `request_filter` always answers.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> pingora_error::Result<Box<HttpPeer>> {
        Error::e_explain(
            ErrorType::InternalError,
            "prism answers every request in request_filter",
        )
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        telemetry::metrics::METRICS.request_finished(ctx);
        telemetry::access_log(session, ctx);
        ctx.logged = true;
    }
}
