//! One LLM call: walk the candidates, translate for each, exchange with the upstream, and
//! relay the answer. Nothing reaches the client before a candidate's first real event (the
//! commit point); until then every upstream failure moves on to the next candidate. After
//! it, a failure ends the stream with an in-band error event, never a clean finish.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pingora_proxy::Session;
use secrecy::ExposeSecret;

use super::ctx::RequestCtx;
use super::request::Parsed;
use super::respond;
use crate::config::HealthSection;
use crate::error::{Fault, GatewayError};
use crate::health::{Gate, Health, Outcome};
use crate::providers::{self, completions, Ctx, Endpoint, Kind, Notes, StreamTranslator};
use crate::router::Candidate;
use crate::upstream::{images, Exchange, Upstreams};

/// How an attempt ended.
enum Attempt {
    /// The answer (or a final error) reached the client.
    Done,
    /// Nothing was sent; the next candidate may try.
    Failed(GatewayError),
    /// The client went away or the request itself is at fault: stop.
    Stop(GatewayError),
}

/// What a stream relay needs to know about its attempt.
struct Relay<'a> {
    notes: &'a Notes,
    sent_at: Instant,
    /// The provider key, scrubbed from any error text sent to the client.
    secret: Option<&'a str>,
}

pub struct Call<'a> {
    pub upstreams: &'a Upstreams,
    pub health: &'a Health,
    pub policy: &'a HealthSection,
    pub endpoint: Endpoint,
    pub body: &'a Bytes,
    pub parsed: &'a Parsed,
    pub max_response: usize,
    pub images: &'a images::ImagePolicy,
    pub no_images: HashMap<String, (String, String)>,
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
    /// Try each candidate in order, skipping ejected ones; answer the client exactly once.
    pub async fn run(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        candidates: &[Candidate],
    ) -> pingora_error::Result<()> {
        self.health.deposit_retry_budget(self.policy.retry_budget);
        let mut first_client_error: Option<GatewayError> = None;
        let mut last_error: Option<GatewayError> = None;
        let mut chat_body: Option<Bytes> = None;
        let mut chat_images = None;
        let mut soonest_back: Option<Duration> = None;
        let mut all_rate_limited = true;
        for (i, cand) in candidates.iter().enumerate() {
            let p = &cand.provider;
            let next = candidates.get(i + 1).map(|c| c.provider.name.clone());
            let mut gate = self.health.gate(p);
            // Retries stay on the last candidate; earlier ones fail over at once.
            let mut retries_left = if next.is_none() { self.policy.retries } else { 0 };
            let mut backoff_step = 0u32;
            loop {
                if let Gate::Skip(wait) = gate {
                    soonest_back = Some(soonest_back.map_or(wait, |w| w.min(wait)));
                    let rate_limited = self.health.is_rate_limited(p);
                    all_rate_limited &= rate_limited;
                    if let Some(n) = &next {
                        let reason = if rate_limited { "rate_limited" } else { "ejected" };
                        ctx.failovers.push((p.name.clone(), n.clone(), reason));
                    }
                    break;
                }
                ctx.attempts += 1;
                ctx.provider = Some(p.name.clone());
                let (outcome, report) = self.attempt(session, ctx, cand, &mut chat_body, &mut chat_images).await;
                match report {
                    Some(o) => self.health.report(p, o),
                    None if gate == Gate::Trial => self.health.release(p),
                    None => {}
                }
                let e = match outcome {
                    Attempt::Done => return Ok(()),
                    Attempt::Stop(e) => return respond::error(session, ctx, &e, None).await,
                    Attempt::Failed(e) => e,
                };
                log::debug!(
                    "request_id={} provider={} status={} reason={} attempt failed: {}",
                    ctx.request_id,
                    p.name,
                    e.status,
                    e.label(),
                    e.message
                );
                let wait = e.retry_after.map(Duration::from_secs).unwrap_or_default();
                let may_retry = retries_left > 0
                    && e.retryable
                    && e.fault != Fault::Client
                    && wait <= self.policy.max_retry_wait.0
                    && self.health.take_retry_token();
                if may_retry {
                    retries_left -= 1;
                    tokio::time::sleep(backoff(self.policy.retry_backoff.0, backoff_step).max(wait)).await;
                    backoff_step += 1;
                    gate = self.health.gate(p);
                    last_error = Some(e);
                    continue;
                }
                if let Some(n) = &next {
                    ctx.failovers.push((p.name.clone(), n.clone(), e.label()));
                }
                if e.fault == Fault::Client && first_client_error.is_none() {
                    first_client_error = Some(e);
                } else {
                    last_error = Some(e);
                }
                break;
            }
        }
        let e = match (first_client_error, last_error) {
            (Some(e), _) => e,
            (None, Some(e)) if candidates.len() == 1 => e,
            (None, Some(e)) => {
                let retry = e.retry_after.unwrap_or(1);
                GatewayError::unavailable(format!(
                    "No provider could serve model `{}` ({} candidates); last error: {}",
                    self.parsed.model,
                    candidates.len(),
                    e.message
                ))
                .with_retry_after(Some(retry))
            }
            (None, None) => {
                let retry = soonest_back.map(|d| d.as_secs_f64().ceil() as u64).unwrap_or(1).max(1);
                if all_rate_limited {
                    GatewayError::rate_limited(format!(
                        "Every provider for model `{}` is rate-limited; retry after {retry}s",
                        self.parsed.model
                    ))
                    .with_retry_after(Some(retry))
                } else {
                    GatewayError::unavailable(format!(
                        "Every provider for model `{}` is currently ejected or rate-limited; retry after {retry}s",
                        self.parsed.model
                    ))
                    .with_retry_after(Some(retry))
                }
            }
        };
        respond::error(session, ctx, &e, None).await
    }

    /// One exchange with one candidate, and what it says about the upstream's health
    /// (`None` when the upstream was never contacted).
    async fn attempt(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        cand: &Candidate,
        chat_body: &mut Option<Bytes>,
        chat_images: &mut Option<HashMap<String, (String, String)>>,
    ) -> (Attempt, Option<Outcome>) {
        let p = &cand.provider;
        let via_chat = self.endpoint == Endpoint::Completions && completions_via_chat(p.kind);
        let body: &Bytes = if via_chat {
            match chat_body {
                Some(b) => b,
                None => match completions::to_chat_request(self.body) {
                    Ok(b) => chat_body.insert(b),
                    Err(e) => return (Attempt::Stop(e), None),
                },
            }
        } else {
            self.body
        };
        let fallback_id = providers::util::gen_id(
            if self.endpoint == Endpoint::Completions {
                "cmpl-"
            } else {
                "chatcmpl-"
            },
            providers::util::random_seed(),
        );
        let fetched;
        let images = if p.fetch_images && images::needs_inline(p.kind) {
            if chat_images.is_none() {
                // Boxed: a cold path whose future would otherwise swell every request's state.
                match Box::pin(images::fetch_all(body, self.upstreams, self.images)).await {
                    Ok(m) => *chat_images = Some(m),
                    Err(e) => return (Attempt::Stop(e), None),
                }
            }
            chat_images.as_ref().unwrap_or(&self.no_images)
        } else {
            fetched = HashMap::new();
            &fetched
        };
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
            images,
        };
        let req = match providers::build_request_shared(body, &tctx) {
            Ok(r) => r,
            Err(e) => return (Attempt::Failed(e.with_fault(Fault::Client)), None),
        };
        let sent_at = Instant::now();
        let sent = self.upstreams.send(p, &req).await;
        ctx.upstream_time += sent_at.elapsed();
        let mut x = match sent {
            Ok(x) => x,
            Err((_, e)) => {
                let report = failure(&e);
                return (Attempt::Failed(e), Some(report));
            }
        };
        // The request went out whole (the stale-connection retry is behind us): only its notes
        // are still needed. A stream can last minutes, so its body is not kept that long.
        let notes = {
            let mut req = req;
            std::mem::take(&mut req.notes)
        };
        let headroom = |name: &str| {
            x.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        };
        self.health.note_headroom(
            p,
            headroom("x-ratelimit-remaining-requests").or_else(|| headroom("anthropic-ratelimit-requests-remaining")),
            headroom("x-ratelimit-remaining-tokens").or_else(|| headroom("anthropic-ratelimit-tokens-remaining")),
        );
        if !(200..300).contains(&x.status) {
            let status = x.status;
            let headers = std::mem::take(&mut x.headers);
            let raw = x.read_all(1 << 20).await.unwrap_or_default();
            self.upstreams.release(x).await;
            let mut e = providers::translate_error(p.kind, status, &headers, &raw, now_unix());
            e.message = crate::error::scrub_secrets(&e.message, p.api_key.as_ref().map(|k| k.expose_secret()));
            // The client's own mistakes are not retried elsewhere, and do not count against
            // the upstream that reported them.
            if e.fault == Fault::Client {
                let ok = Outcome::Success {
                    latency: sent_at.elapsed(),
                    ttft: None,
                };
                return (Attempt::Stop(e), Some(ok));
            }
            let report = if status == 429 && e.kind == "rate_limit_error" {
                Outcome::RateLimited {
                    retry_after: e.retry_after,
                }
            } else {
                failure(&e)
            };
            return (Attempt::Failed(e), Some(report));
        }
        if self.parsed.stream {
            let inner = providers::stream_translator(&tctx);
            let translator: Box<dyn StreamTranslator> = if via_chat {
                Box::new(completions::CompletionsStream::new(inner))
            } else {
                inner
            };
            let relay = Relay {
                notes: &notes,
                sent_at,
                secret: p.api_key.as_ref().map(|k| k.expose_secret()),
            };
            self.relay_stream(session, ctx, x, translator, relay).await
        } else {
            let read_at = Instant::now();
            let read = x.read_all(self.max_response).await;
            ctx.upstream_time += read_at.elapsed();
            let raw = match read {
                Ok(b) => b,
                Err(e) => {
                    x.abort().await;
                    let report = failure(&e);
                    return (Attempt::Failed(e), Some(report));
                }
            };
            self.upstreams.release(x).await;
            let translated = match providers::translate_response(&raw, &tctx) {
                Ok(t) => t,
                Err(e) => {
                    let report = failure(&e);
                    return (Attempt::Failed(e), Some(report));
                }
            };
            let body = if via_chat {
                match completions::from_chat_response(&translated.body) {
                    Ok(b) => b,
                    Err(e) => return (Attempt::Failed(e), None),
                }
            } else {
                translated.body
            };
            let report = Outcome::Success {
                latency: sent_at.elapsed(),
                ttft: None,
            };
            ctx.usage = translated.usage;
            ctx.upstream_model = translated.upstream_model;
            let mut h = respond::header(200, "application/json", ctx);
            respond::add_notes(&mut h, &notes);
            if respond::json(session, ctx, h, body).await.is_err() {
                ctx.status = 499;
            }
            (Attempt::Done, Some(report))
        }
    }

    /// Relay a stream through its translator, holding everything until the commit point.
    async fn relay_stream(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut x: Exchange,
        mut t: Box<dyn StreamTranslator>,
        relay: Relay<'_>,
    ) -> (Attempt, Option<Outcome>) {
        let Relay { notes, sent_at, secret } = relay;
        let mut ttft = None;
        let mut out = BytesMut::new();
        let mut started = false;
        loop {
            let t0 = Instant::now();
            let chunk = x.read_chunk().await;
            ctx.upstream_time += t0.elapsed();
            let (mut result, mut end) = match chunk {
                Ok(Some(c)) => (t.feed(c, &mut out), false),
                Ok(None) => (t.finish(&mut out), true),
                Err(e) => (Err(e), true),
            };
            // Whatever else the upstream already sent goes out in the same write: one system
            // call for a burst of events instead of one per event. Only what is ready now is
            // taken, so nothing waits for it.
            let mut burst = 0;
            while result.is_ok() && !end && burst < MAX_BURST_CHUNKS && out.len() < MAX_BURST_BYTES {
                burst += 1;
                match x.ready_chunk().await {
                    None => break,
                    Some(Ok(Some(c))) => result = t.feed(c, &mut out),
                    Some(Ok(None)) => (result, end) = (t.finish(&mut out), true),
                    Some(Err(e)) => (result, end) = (Err(e), true),
                }
            }
            // Before the commit point the next candidate may still serve; after it (even when
            // the content and the failure arrived together) the stream is this one's.
            let result = match result {
                Err(e) if !started && !t.committed() => {
                    x.abort().await;
                    let report = failure(&e);
                    return (Attempt::Failed(e), Some(report));
                }
                r => r,
            };
            if !started && (t.committed() || end) {
                started = true;
                ctx.ttft = Some(ctx.started.elapsed());
                ttft = Some(sent_at.elapsed());
                self.finish_ctx(ctx, t.as_ref());
                if !start_stream(session, ctx, notes).await {
                    x.abort().await;
                    return (Attempt::Done, None);
                }
            }
            if let Err(mut e) = result {
                let report = failure(&e);
                // After the commit point: what was translated, then the error event, then close.
                e.message = crate::error::scrub_secrets(&e.message, secret);
                out.extend_from_slice(&e.sse_event());
                ctx.error = Some(e.label());
                let _ = session.write_response_body(Some(out.split().freeze()), true).await;
                session.set_keepalive(None);
                x.abort().await;
                self.finish_ctx(ctx, t.as_ref());
                return (Attempt::Done, Some(report));
            }
            if started
                && (!out.is_empty() || end)
                && session
                    .write_response_body(Some(out.split().freeze()), end)
                    .await
                    .is_err()
            {
                // The client went away: stop reading from the upstream too.
                x.abort().await;
                ctx.status = 499;
                return (Attempt::Done, None);
            }
            if end {
                self.finish_ctx(ctx, t.as_ref());
                self.upstreams.release(x).await;
                return (
                    Attempt::Done,
                    Some(Outcome::Success {
                        latency: sent_at.elapsed(),
                        ttft,
                    }),
                );
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

/// The stream's response header; `false` when the client has gone.
async fn start_stream(session: &mut Session, ctx: &mut RequestCtx, notes: &Notes) -> bool {
    let mut h = respond::header(200, "text/event-stream", ctx);
    let _ = h.insert_header("cache-control", "no-cache");
    // Without a length, an HTTP/1.1 body would otherwise end by closing the connection:
    // chunked keeps it alive for the client's next request.
    if session.req_header().version == http::Version::HTTP_11 {
        let _ = h.insert_header("transfer-encoding", "chunked");
    }
    respond::add_notes(&mut h, notes);
    ctx.status = 200;
    if session.write_response_header(Box::new(h), false).await.is_err() {
        ctx.status = 499;
        return false;
    }
    true
}

/// Upper bounds on the upstream chunks (and translated bytes) gathered into one client write.
const MAX_BURST_CHUNKS: usize = 64;
const MAX_BURST_BYTES: usize = 32 * 1024;

fn failure(e: &GatewayError) -> Outcome {
    Outcome::Failure {
        reason: e.label(),
        message: e.message.clone(),
    }
}

/// Exponential backoff with jitter: base × 2^step × [0.5, 1.5), capped at 10 s.
fn backoff(base: Duration, step: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << step.min(10));
    let jitter: f64 = 0.5 + rand::random::<f64>();
    exp.mul_f64(jitter).min(Duration::from_secs(10))
}
