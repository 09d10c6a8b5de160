//! Upstream health: per-upstream statistics from live traffic and probes, a circuit breaker
//! each, rate-limit state, and alerts on state changes. Keyed by the stable upstream id
//! (provider name + base URL), so a config reload keeps every breaker where it was.

pub mod alerts;
pub mod breaker;
pub mod prober;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::config::HealthSection;
use crate::table::{Provider, Table};
use breaker::{Admission, Breaker, BreakerConfig, Transition};

/// How one exchange with an upstream ended, as health sees it.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The upstream served (its answer may still be a client error: that is not its fault).
    Success { latency: Duration, ttft: Option<Duration> },
    /// 429: back off until `retry_after` (or a short default).
    RateLimited { retry_after: Option<u64> },
    /// Refused, timed out, 5xx, in-band error before content, empty or broken stream.
    Failure { reason: &'static str, message: String },
}

#[derive(Debug)]
struct Stats {
    latency_ewma_ms: Option<f64>,
    ttft_ewma_ms: Option<f64>,
    /// (time, latency ms) of recent successes for percentiles.
    recent: VecDeque<(Instant, f64)>,
    requests: u64,
    failures: u64,
    rate_limited_until: Option<Instant>,
    rate_limited_until_wall: Option<SystemTime>,
    remaining_requests: Option<u64>,
    remaining_tokens: Option<u64>,
    last_error: Option<(String, SystemTime)>,
    probe_ok: Option<bool>,
    probe_failures: u32,
    probe_latency_ms: Option<f64>,
}

pub struct Upstream {
    pub id: String,
    pub provider: String,
    pub base_url: String,
    breaker: Mutex<Breaker>,
    stats: Mutex<Stats>,
}

const EWMA_ALPHA: f64 = 0.2;
const PERCENTILE_WINDOW: Duration = Duration::from_secs(60);

fn ewma(prev: Option<f64>, x: f64) -> f64 {
    match prev {
        Some(p) => p + EWMA_ALPHA * (x - p),
        None => x,
    }
}

impl Upstream {
    fn new(p: &Provider, cfg: BreakerConfig) -> Self {
        Upstream {
            id: p.upstream_id.clone(),
            provider: p.name.clone(),
            base_url: p.base.url.clone(),
            breaker: Mutex::new(Breaker::new(cfg)),
            stats: Mutex::new(Stats {
                latency_ewma_ms: None,
                ttft_ewma_ms: None,
                recent: VecDeque::new(),
                requests: 0,
                failures: 0,
                rate_limited_until: None,
                rate_limited_until_wall: None,
                remaining_requests: None,
                remaining_tokens: None,
                last_error: None,
                probe_ok: None,
                probe_failures: 0,
                probe_latency_ms: None,
            }),
        }
    }

    pub fn breaker_state(&self) -> &'static str {
        self.breaker.lock().map(|b| b.state().name()).unwrap_or("closed")
    }

    fn rate_limited(&self, now: Instant) -> Option<Duration> {
        let s = self.stats.lock().ok()?;
        s.rate_limited_until.filter(|u| *u > now).map(|u| u - now)
    }

    /// healthy, degraded (half-open, rate-limited, errors or failed probes) or ejected.
    pub fn state(&self, now: Instant) -> &'static str {
        let (open, half, ratio) = match self.breaker.lock() {
            Ok(b) => (
                matches!(b.state(), breaker::State::Open { .. }),
                matches!(b.state(), breaker::State::HalfOpen { .. }),
                b.error_ratio(),
            ),
            Err(_) => (false, false, 0.0),
        };
        if open {
            return "ejected";
        }
        let probe_down = self.stats.lock().map(|s| s.probe_ok == Some(false)).unwrap_or(false);
        if half || ratio > 0.1 || probe_down || self.rate_limited(now).is_some() {
            "degraded"
        } else {
            "healthy"
        }
    }

    /// Remaining requests/tokens the provider reported, for headroom metrics.
    pub fn headroom(&self) -> (Option<u64>, Option<u64>) {
        self.stats
            .lock()
            .map(|s| (s.remaining_requests, s.remaining_tokens))
            .unwrap_or((None, None))
    }

    pub fn latency_ms(&self) -> Option<f64> {
        self.stats.lock().ok().and_then(|s| s.latency_ewma_ms)
    }
}

/// Per-process health registry.
pub struct Health {
    upstreams: RwLock<HashMap<String, Arc<Upstream>>>,
    breaker_cfg: RwLock<BreakerConfig>,
    pub alerts: alerts::Alerts,
    /// Retry tokens: each request deposits `retry_budget`, each retry takes one.
    retry_tokens: Mutex<f64>,
}

/// Admission decision for one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Go,
    /// A half-open trial: its outcome closes or reopens the breaker.
    Trial,
    /// Skip: breaker open or rate-limited; retry after the given time.
    Skip(Duration),
}

impl Health {
    pub fn new(cfg: &HealthSection, alerts: alerts::Alerts) -> Arc<Health> {
        Arc::new(Health {
            upstreams: RwLock::new(HashMap::new()),
            breaker_cfg: RwLock::new(cfg.breaker()),
            alerts,
            retry_tokens: Mutex::new(10.0),
        })
    }

    /// Apply new thresholds (after a reload) to every breaker; states are kept.
    pub fn configure(&self, cfg: &HealthSection) {
        let b = cfg.breaker();
        if let Ok(ups) = self.upstreams.read() {
            for u in ups.values() {
                if let Ok(mut br) = u.breaker.lock() {
                    br.set_config(b.clone());
                }
            }
        }
        if let Ok(mut c) = self.breaker_cfg.write() {
            *c = b;
        }
    }

    pub fn upstream(&self, p: &Provider) -> Arc<Upstream> {
        if let Ok(ups) = self.upstreams.read() {
            if let Some(u) = ups.get(&p.upstream_id) {
                return u.clone();
            }
        }
        let cfg = self.breaker_cfg.read().map(|c| c.clone()).unwrap_or_default();
        let mut ups = match self.upstreams.write() {
            Ok(u) => u,
            Err(e) => e.into_inner(),
        };
        ups.entry(p.upstream_id.clone())
            .or_insert_with(|| Arc::new(Upstream::new(p, cfg)))
            .clone()
    }

    /// May a request go to `p` now?
    pub fn gate(&self, p: &Provider) -> Gate {
        let u = self.upstream(p);
        let now = Instant::now();
        if let Some(wait) = u.rate_limited(now) {
            return Gate::Skip(wait);
        }
        let Ok(mut b) = u.breaker.lock() else {
            return Gate::Go;
        };
        let retry = b.retry_in(now);
        let (admission, transition) = b.admit(now);
        drop(b);
        if let Some(t) = transition {
            self.alert(&u, t);
        }
        match admission {
            Admission::Yes => Gate::Go,
            Admission::Trial => Gate::Trial,
            Admission::No => Gate::Skip(retry.unwrap_or(Duration::from_secs(1))),
        }
    }

    pub fn deposit_retry_budget(&self, share: f64) {
        if let Ok(mut t) = self.retry_tokens.lock() {
            *t = (*t + share).min(10.0);
        }
    }

    /// Take one retry from the budget, if any is left.
    pub fn take_retry_token(&self) -> bool {
        match self.retry_tokens.lock() {
            Ok(mut t) if *t >= 1.0 => {
                *t -= 1.0;
                true
            }
            _ => false,
        }
    }

    /// A trial admission that never reached the upstream.
    pub fn release(&self, p: &Provider) {
        if let Ok(mut b) = self.upstream(p).breaker.lock() {
            b.release();
        }
    }

    pub fn is_rate_limited(&self, p: &Provider) -> bool {
        self.upstream(p).rate_limited(Instant::now()).is_some()
    }

    /// Whether routing would currently skip `p` (no side effects).
    pub fn available(&self, p: &Provider) -> bool {
        let u = self.upstream(p);
        let now = Instant::now();
        u.rate_limited(now).is_none() && u.breaker.lock().map(|b| b.available(now)).unwrap_or(true)
    }

    pub fn report(&self, p: &Provider, outcome: Outcome) {
        let u = self.upstream(p);
        let now = Instant::now();
        let transition = {
            let mut s = match u.stats.lock() {
                Ok(s) => s,
                Err(e) => e.into_inner(),
            };
            s.requests += 1;
            match &outcome {
                Outcome::Success { latency, ttft } => {
                    let ms = latency.as_secs_f64() * 1000.0;
                    s.latency_ewma_ms = Some(ewma(s.latency_ewma_ms, ms));
                    if let Some(t) = ttft {
                        s.ttft_ewma_ms = Some(ewma(s.ttft_ewma_ms, t.as_secs_f64() * 1000.0));
                    }
                    s.recent.push_back((now, ms));
                    while s
                        .recent
                        .front()
                        .is_some_and(|(t, _)| now.duration_since(*t) > PERCENTILE_WINDOW)
                        || s.recent.len() > 2048
                    {
                        s.recent.pop_front();
                    }
                }
                Outcome::RateLimited { retry_after } => {
                    s.failures += 1;
                    let wait = Duration::from_secs(retry_after.unwrap_or(1).clamp(1, 3600));
                    s.rate_limited_until = Some(now + wait);
                    s.rate_limited_until_wall = Some(SystemTime::now() + wait);
                    s.last_error = Some(("rate_limited".to_string(), SystemTime::now()));
                }
                Outcome::Failure { reason, message } => {
                    s.failures += 1;
                    s.last_error = Some((format!("{reason}: {message}"), SystemTime::now()));
                }
            }
            drop(s);
            let mut b = match u.breaker.lock() {
                Ok(b) => b,
                Err(e) => e.into_inner(),
            };
            match outcome {
                Outcome::Success { .. } => b.on_success(now),
                // A rate limit is the upstream asking for less, not failing: it pauses
                // routing (above) without counting toward ejection.
                Outcome::RateLimited { .. } => {
                    b.release();
                    None
                }
                Outcome::Failure { .. } => b.on_failure(now),
            }
        };
        if let Some(t) = transition {
            self.alert(&u, t);
        }
    }

    /// Rate-limit headroom the provider reported on a successful answer.
    pub fn note_headroom(&self, p: &Provider, remaining_requests: Option<u64>, remaining_tokens: Option<u64>) {
        if remaining_requests.is_none() && remaining_tokens.is_none() {
            return;
        }
        if let Ok(mut s) = self.upstream(p).stats.lock() {
            if remaining_requests.is_some() {
                s.remaining_requests = remaining_requests;
            }
            if remaining_tokens.is_some() {
                s.remaining_tokens = remaining_tokens;
            }
        }
    }

    /// A probe's result: two failed probes in a row eject an upstream that traffic has not
    /// (an idle one); a good probe of an ejected upstream lets its trial start now.
    pub fn probe_result(&self, p: &Provider, ok: bool, latency: Duration, error: Option<String>) {
        let u = self.upstream(p);
        let now = Instant::now();
        let failures = {
            let Ok(mut s) = u.stats.lock() else { return };
            s.probe_ok = Some(ok);
            s.probe_latency_ms = Some(latency.as_secs_f64() * 1000.0);
            if ok {
                s.probe_failures = 0;
            } else {
                s.probe_failures += 1;
                if let Some(e) = &error {
                    s.last_error = Some((format!("probe: {e}"), SystemTime::now()));
                }
            }
            s.probe_failures
        };
        let transition = {
            let Ok(mut b) = u.breaker.lock() else { return };
            match (ok, b.state()) {
                (false, breaker::State::Closed) if failures >= 2 => Some(b.trip(now)),
                (true, breaker::State::Open { .. }) => {
                    // Recovered by probe: allow a trial now instead of waiting the cooldown.
                    b.expire_cooldown(now);
                    None
                }
                _ => None,
            }
        };
        if let Some(t) = transition {
            self.alert(&u, t);
        }
    }

    fn alert(&self, u: &Upstream, t: Transition) {
        let (event, state) = match t {
            Transition::Opened => ("breaker_opened", "ejected"),
            Transition::HalfOpened => ("breaker_half_open", "degraded"),
            Transition::Closed => ("recovered", "healthy"),
        };
        let last_error = u
            .stats
            .lock()
            .ok()
            .and_then(|s| s.last_error.as_ref().map(|e| e.0.clone()));
        log::warn!(
            "event={event} provider={} upstream={} state={state} last_error={:?} upstream health changed",
            u.provider,
            u.base_url,
            last_error
        );
        self.alerts.send(json!({
            "event": event,
            "provider": u.provider,
            "upstream": u.base_url,
            "state": state,
            "breaker": u.breaker_state(),
            "last_error": last_error,
            "at": crate::proxy::serve::now_unix(),
        }));
    }

    /// Every upstream of the current table, for `GET /v1/providers/health` and metrics.
    pub fn upstreams_of(&self, table: &Table) -> Vec<(Arc<Provider>, Arc<Upstream>)> {
        let mut names: Vec<&String> = table.providers.keys().collect();
        names.sort();
        names
            .into_iter()
            .map(|n| (table.providers[n].clone(), self.upstream(&table.providers[n])))
            .collect()
    }

    pub fn report_json(&self, table: &Table) -> Value {
        let now = Instant::now();
        let data: Vec<Value> = self
            .upstreams_of(table)
            .into_iter()
            .map(|(p, u)| {
                // state() and breaker_state() take the locks themselves: call them first.
                let state = u.state(now);
                let breaker = u.breaker_state();
                let (ratio, consecutive, retry_in) = u
                    .breaker
                    .lock()
                    .map(|b| (b.error_ratio(), b.consecutive_failures(), b.retry_in(now)))
                    .unwrap_or((0.0, 0, None));
                let mut v = json!({
                    "provider": p.name,
                    "kind": p.kind.as_str(),
                    "upstream": u.base_url,
                    "state": state,
                    "breaker": breaker,
                    "error_rate": ratio,
                    "consecutive_failures": consecutive,
                    "breaker_retry_in_ms": retry_in.map(|d| d.as_millis() as u64),
                });
                if let Ok(s) = u.stats.lock() {
                    let mut lat: Vec<f64> = s.recent.iter().map(|(_, l)| *l).collect();
                    lat.sort_by(|a, b| a.total_cmp(b));
                    let pct = |q: f64| (!lat.is_empty()).then(|| lat[((lat.len() - 1) as f64 * q).round() as usize]);
                    let unix = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).ok();
                    v["latency_ms"] = json!({"ewma": s.latency_ewma_ms, "p50": pct(0.5), "p95": pct(0.95)});
                    v["ttft_ms"] = json!(s.ttft_ewma_ms);
                    v["requests"] = json!(s.requests);
                    v["failures"] = json!(s.failures);
                    v["rate_limited_until"] = json!(s
                        .rate_limited_until
                        .filter(|u| *u > now)
                        .and(s.rate_limited_until_wall)
                        .and_then(unix));
                    v["ratelimit_remaining"] = json!({"requests": s.remaining_requests, "tokens": s.remaining_tokens});
                    v["last_error"] = json!(s
                        .last_error
                        .as_ref()
                        .map(|(e, at)| json!({"message": e, "at": unix(*at)})));
                    v["probe"] = json!({"ok": s.probe_ok, "latency_ms": s.probe_latency_ms});
                }
                v
            })
            .collect();
        json!({"object": "list", "data": data})
    }
}
