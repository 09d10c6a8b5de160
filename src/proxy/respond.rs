//! Writing answers to the client: JSON bodies, OpenAI error envelopes, SSE headers. Every
//! answer carries `x-request-id`.

use bytes::Bytes;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::ctx::RequestCtx;
use crate::error::GatewayError;
use crate::providers::Notes;

/// Response header with the gateway's common headers. Built without a case map (names go out
/// in lower case, as HTTP/2 requires and HTTP/1.1 allows), from static names.
pub fn header(status: u16, content_type: &'static str, ctx: &RequestCtx) -> ResponseHeader {
    use http::header::{HeaderName, HeaderValue};
    let code = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    // Building from a valid StatusCode does not fail; the fallback keeps it panic-free.
    let mut h = ResponseHeader::build_no_case(code, Some(8))
        .unwrap_or_else(|_| ResponseHeader::from(http::Response::new(()).into_parts().0));
    let _ = h.insert_header(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let _ = h.insert_header(HeaderName::from_static("x-request-id"), ctx.request_id.as_str());
    if let Some(p) = &ctx.provider {
        let _ = h.insert_header(HeaderName::from_static("x-prism-provider"), p.as_str());
    }
    if let Some(m) = &ctx.upstream_model {
        let _ = h.insert_header(HeaderName::from_static("x-prism-upstream-model"), m.as_str());
    }
    h
}

pub fn add_notes(h: &mut ResponseHeader, notes: &Notes) {
    for (name, list) in [
        ("x-prism-dropped-params", &notes.dropped),
        ("x-prism-adjusted-params", &notes.adjusted),
        ("x-prism-warnings", &notes.warnings),
    ] {
        if !list.is_empty() {
            let _ = h.insert_header(name, list.join(","));
        }
    }
}

/// A complete JSON answer.
pub async fn json(
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut h: ResponseHeader,
    body: Bytes,
) -> pingora_error::Result<()> {
    ctx.status = h.status.as_u16();
    let _ = h.insert_header(http::header::CONTENT_LENGTH, http::HeaderValue::from(body.len()));
    if ctx.ttft.is_none() {
        ctx.ttft = Some(ctx.started.elapsed());
    }
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(body), true).await
}

/// An error as the OpenAI envelope, with retry hints.
pub async fn error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    e: &GatewayError,
    notes: Option<&Notes>,
) -> pingora_error::Result<()> {
    let mut h = header(e.status, "application/json", ctx);
    if !e.retryable {
        let _ = h.insert_header("x-should-retry", "false");
    }
    if let Some(s) = e.retry_after {
        let _ = h.insert_header("retry-after", s.to_string());
    }
    for (k, v) in &e.headers {
        let _ = h.insert_header(k.clone(), v.as_str());
    }
    if let Some(n) = notes {
        add_notes(&mut h, n);
    }
    ctx.error = Some(e.label());
    let mut e = e.clone();
    e.message = crate::error::scrub_secrets(&e.message, None);
    json(session, ctx, h, e.body()).await
}
