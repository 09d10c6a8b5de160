//! One LLM call: walk the candidates, translate for each, exchange with the upstream, and
//! relay the answer. Nothing reaches the client before a candidate's first real event (the
//! commit point); until then every upstream failure moves on to the next candidate. After
//! it, a failure ends the stream with an in-band error event, never a clean finish.

use std::collections::HashMap;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use pingora_proxy::Session;

use super::ctx::RequestCtx;
use super::request::Parsed;
use super::respond;
use crate::error::{Fault, GatewayError};
use crate::providers::{self, completions, Ctx, Endpoint, Kind, Notes, StreamTranslator};
use crate::router::Candidate;
use crate::upstream::{Exchange, Upstreams};

/// How an attempt ended.
enum Attempt {
    /// The answer (or a final error) reached the client.
    Done,
    /// Nothing was sent; the next candidate may try.
    Failed(GatewayError),
    /// The client went away or the request itself is at fault: stop.
    Stop(GatewayError),
}

pub struct Call<'a> {
    pub upstreams: &'a Upstreams,
    pub endpoint: Endpoint,
    pub body: &'a Bytes,
    pub parsed: &'a Parsed,
    pub max_response: usize,
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether a kind needs legacy completions rewritten to chat.
fn completions_via_chat(kind: Kind) -> bool {
    !kind.is_openai_compatible() || kind == Kind::Mistral
}

impl Call<'_> {
    /// Try each candidate in order; answer the client exactly once.
    pub async fn run(&self, session: &mut Session, ctx: &mut RequestCtx, candidates: &[Candidate]) -> pingora_error::Result<()> {
        let mut first_client_error: Option<GatewayError> = None;
        let mut last_error: Option<GatewayError> = None;
        let mut chat_body: Option<Bytes> = None;
        for (i, cand) in candidates.iter().enumerate() {
            ctx.attempts += 1;
            ctx.provider = Some(cand.provider.name.clone());
            let outcome = self.attempt(session, ctx, cand, &mut chat_body).await;
            match outcome {
                Attempt::Done => return Ok(()),
                Attempt::Stop(e) => return respond::error(session, ctx, &e, None).await,
                Attempt::Failed(e) => {
                    log::debug!("request_id={} provider={} status={} attempt failed: {}", ctx.request_id, cand.provider.name, e.status, e.message);
                    if let Some(next) = candidates.get(i + 1) {
                        ctx.failovers.push((cand.provider.name.clone(), next.provider.name.clone(), e.label()));
                    }
                    if e.fault == Fault::Client && first_client_error.is_none() {
                        first_client_error = Some(e);
                    } else {
                        last_error = Some(e);
                    }
                }
            }
        }
        let e = match (first_client_error, last_error) {
            (Some(e), _) => e,
            (None, Some(e)) if candidates.len() == 1 => e,
            (None, Some(e)) => {
                let retry = e.retry_after.unwrap_or(1);
                GatewayError::unavailable(format!(
                    "No provider could serve model `{}` ({} tried); last error: {}",
                    self.parsed.model,
                    candidates.len(),
                    e.message
                ))
                .with_retry_after(Some(retry))
            }
            (None, None) => GatewayError::model_not_found(&self.parsed.model),
        };
        respond::error(session, ctx, &e, None).await
    }

    async fn attempt(&self, session: &mut Session, ctx: &mut RequestCtx, cand: &Candidate, chat_body: &mut Option<Bytes>) -> Attempt {
        let p = &cand.provider;
        let via_chat = self.endpoint == Endpoint::Completions && completions_via_chat(p.kind);
        let body: &[u8] = if via_chat {
            if chat_body.is_none() {
                match completions::to_chat_request(self.body) {
                    Ok(b) => *chat_body = Some(b),
                    Err(e) => return Attempt::Stop(e),
                }
            }
            chat_body.as_deref().unwrap_or_default()
        } else {
            self.body
        };
        let fallback_id = providers::util::gen_id(
            if self.endpoint == Endpoint::Completions { "cmpl-" } else { "chatcmpl-" },
            providers::util::random_seed(),
        );
        let images = HashMap::new();
        let tctx = Ctx {
            provider: &p.name,
            kind: p.kind,
            endpoint: if via_chat { Endpoint::Chat } else { self.endpoint },
            client_model: &self.parsed.model,
            upstream_model: &cand.model,
            stream: self.parsed.stream,
            include_usage: self.parsed.include_usage,
            created: now_unix(),
            fallback_id: &fallback_id,
            id_seed: providers::util::random_seed(),
            options: &p.options,
            embed_base64: self.parsed.embed_base64,
            images: &images,
        };
        let req = match providers::build_request(body, &tctx) {
            Ok(r) => r,
            Err(e) => return Attempt::Failed(e.with_fault(Fault::Client)),
        };
        let t0 = Instant::now();
        let sent = self.upstreams.send(p, &req).await;
        ctx.upstream_time += t0.elapsed();
        let mut x = match sent {
            Ok(x) => x,
            Err((_, e)) => return Attempt::Failed(e),
        };
        if !(200..300).contains(&x.status) {
            let status = x.status;
            let headers = std::mem::take(&mut x.headers);
            let raw = x.read_all(1 << 20).await.unwrap_or_default();
            self.upstreams.release(x).await;
            let e = providers::translate_error(p.kind, status, &headers, &raw, now_unix());
            // The client's own mistakes are not retried elsewhere.
            return if e.fault == Fault::Client { Attempt::Stop(e) } else { Attempt::Failed(e) };
        }
        if self.parsed.stream {
            let inner = providers::stream_translator(&tctx);
            let translator: Box<dyn StreamTranslator> =
                if via_chat { Box::new(completions::CompletionsStream::new(inner)) } else { inner };
            self.relay_stream(session, ctx, x, translator, &req.notes).await
        } else {
            let t0 = Instant::now();
            let read = x.read_all(self.max_response).await;
            ctx.upstream_time += t0.elapsed();
            let raw = match read {
                Ok(b) => b,
                Err(e) => {
                    x.abort().await;
                    return Attempt::Failed(e);
                }
            };
            self.upstreams.release(x).await;
            let translated = match providers::translate_response(&raw, &tctx) {
                Ok(t) => t,
                Err(e) => return Attempt::Failed(e),
            };
            let body = if via_chat {
                match completions::from_chat_response(&translated.body) {
                    Ok(b) => b,
                    Err(e) => return Attempt::Failed(e),
                }
            } else {
                translated.body
            };
            ctx.usage = translated.usage;
            ctx.upstream_model = translated.upstream_model;
            let mut h = respond::header(200, "application/json", ctx);
            respond::add_notes(&mut h, &req.notes);
            match respond::json(session, ctx, h, body).await {
                Ok(()) => Attempt::Done,
                Err(_) => {
                    ctx.status = 499;
                    Attempt::Done
                }
            }
        }
    }

    /// Relay a stream through its translator, holding everything until the commit point.
    async fn relay_stream(&self, session: &mut Session, ctx: &mut RequestCtx, mut x: Exchange, mut t: Box<dyn StreamTranslator>, notes: &Notes) -> Attempt {
        let mut out = BytesMut::new();
        let mut started = false;
        loop {
            let t0 = Instant::now();
            let chunk = x.read_chunk().await;
            ctx.upstream_time += t0.elapsed();
            let (result, end) = match chunk {
                Ok(Some(c)) => (t.feed(&c, &mut out), false),
                Ok(None) => (t.finish(&mut out), true),
                Err(e) => (Err(e), true),
            };
            if let Err(e) = result {
                if !started {
                    x.abort().await;
                    return Attempt::Failed(e);
                }
                // After the commit point: what was translated, then the error event, then close.
                out.extend_from_slice(&e.sse_event());
                ctx.error = Some(e.label());
                let _ = session.write_response_body(Some(out.split().freeze()), true).await;
                session.set_keepalive(None);
                x.abort().await;
                self.finish_ctx(ctx, t.as_ref());
                return Attempt::Done;
            }
            if !started && (t.committed() || end) {
                started = true;
                ctx.ttft = Some(ctx.started.elapsed());
                self.finish_ctx(ctx, t.as_ref());
                let mut h = respond::header(200, "text/event-stream", ctx);
                let _ = h.insert_header("cache-control", "no-cache");
                respond::add_notes(&mut h, notes);
                ctx.status = 200;
                if session.write_response_header(Box::new(h), false).await.is_err() {
                    x.abort().await;
                    ctx.status = 499;
                    return Attempt::Done;
                }
            }
            if started
                && (!out.is_empty() || end)
                && session.write_response_body(Some(out.split().freeze()), end).await.is_err()
            {
                {
                    // The client went away: stop reading from the upstream too.
                    x.abort().await;
                    ctx.status = 499;
                    return Attempt::Done;
                }
            }
            if end {
                self.finish_ctx(ctx, t.as_ref());
                self.upstreams.release(x).await;
                return Attempt::Done;
            }
        }
    }

    fn finish_ctx(&self, ctx: &mut RequestCtx, t: &dyn StreamTranslator) {
        ctx.usage = t.usage().or(ctx.usage);
        if let Some(m) = t.upstream_model() {
            ctx.upstream_model = Some(m.to_string());
        }
    }
}
