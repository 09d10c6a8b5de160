//! A circuit breaker per upstream: a small state machine fed with outcomes, time passed in.
//!
//! closed ──(N consecutive failures, or error ratio ≥ R over the window with ≥ M requests)──▶
//! open ──(cooldown; doubles on each repeated trip, capped)──▶ half-open ──(T successes)──▶
//! closed; any failure in half-open opens again. Half-open lets at most K requests in at once.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct BreakerConfig {
    pub consecutive_failures: u32,
    pub error_ratio: f64,
    pub window: Duration,
    pub min_requests: u32,
    pub cooldown: Duration,
    pub max_cooldown: Duration,
    pub half_open_successes: u32,
    pub half_open_max_in_flight: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 5,
            error_ratio: 0.5,
            window: Duration::from_secs(30),
            min_requests: 20,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(300),
            half_open_successes: 2,
            half_open_max_in_flight: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }
}

/// A state change worth an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    HalfOpened,
    Closed,
}

#[derive(Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: State,
    consecutive_failures: u32,
    /// (time, failed) of recent outcomes, oldest first.
    window: VecDeque<(Instant, bool)>,
    /// Trips since the last full recovery; grows the cooldown.
    trips: u32,
}

/// Whether a request may go to the upstream; a half-open admission must be answered with
/// `on_success`/`on_failure` (or `release` when it never reached the upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Yes,
    Trial,
    No,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Self {
        Breaker {
            cfg,
            state: State::Closed,
            consecutive_failures: 0,
            window: VecDeque::new(),
            trips: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn set_config(&mut self, cfg: BreakerConfig) {
        self.cfg = cfg;
    }

    /// Cooldown for the current trip: base × 2^(trips-1), capped.
    fn cooldown(&self) -> Duration {
        let factor = 1u32 << self.trips.saturating_sub(1).min(16);
        self.cfg.cooldown.saturating_mul(factor).min(self.cfg.max_cooldown)
    }

    /// Would a request be admitted now? (No side effect: for routing decisions.)
    pub fn available(&self, now: Instant) -> bool {
        match self.state {
            State::Closed => true,
            State::Open { until } => now >= until,
            State::HalfOpen { in_flight, .. } => in_flight < self.cfg.half_open_max_in_flight,
        }
    }

    /// Time until an open breaker lets a trial through.
    pub fn retry_in(&self, now: Instant) -> Option<Duration> {
        match self.state {
            State::Open { until } => Some(until.saturating_duration_since(now)),
            _ => None,
        }
    }

    pub fn admit(&mut self, now: Instant) -> (Admission, Option<Transition>) {
        let mut transition = None;
        if let State::Open { until } = self.state {
            if now < until {
                return (Admission::No, None);
            }
            self.state = State::HalfOpen {
                in_flight: 0,
                successes: 0,
            };
            transition = Some(Transition::HalfOpened);
        }
        match &mut self.state {
            State::Closed => (Admission::Yes, transition),
            State::HalfOpen { in_flight, .. } => {
                if *in_flight < self.cfg.half_open_max_in_flight {
                    *in_flight += 1;
                    (Admission::Trial, transition)
                } else {
                    (Admission::No, transition)
                }
            }
            State::Open { .. } => (Admission::No, transition),
        }
    }

    /// A trial admission that never reached the upstream (the request moved elsewhere).
    pub fn release(&mut self) {
        if let State::HalfOpen { in_flight, .. } = &mut self.state {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    fn record(&mut self, now: Instant, failed: bool) {
        self.window.push_back((now, failed));
        while self
            .window
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.cfg.window)
        {
            self.window.pop_front();
        }
        // Bound memory under very high rates: the ratio is still representative.
        while self.window.len() > 10_000 {
            self.window.pop_front();
        }
    }

    pub fn on_success(&mut self, now: Instant) -> Option<Transition> {
        self.consecutive_failures = 0;
        self.record(now, false);
        if let State::HalfOpen { in_flight, successes } = &mut self.state {
            *in_flight = in_flight.saturating_sub(1);
            *successes += 1;
            if *successes >= self.cfg.half_open_successes {
                self.state = State::Closed;
                self.trips = 0;
                self.window.clear();
                return Some(Transition::Closed);
            }
        }
        None
    }

    pub fn on_failure(&mut self, now: Instant) -> Option<Transition> {
        self.consecutive_failures += 1;
        self.record(now, true);
        match self.state {
            State::HalfOpen { .. } => Some(self.trip(now)),
            State::Open { .. } => None,
            State::Closed => {
                let total = self.window.len() as u32;
                let failed = self.window.iter().filter(|(_, f)| *f).count() as f64;
                let by_ratio =
                    total >= self.cfg.min_requests && failed / f64::from(total.max(1)) >= self.cfg.error_ratio;
                if self.consecutive_failures >= self.cfg.consecutive_failures || by_ratio {
                    Some(self.trip(now))
                } else {
                    None
                }
            }
        }
    }

    /// Open now (also used when a probe finds the upstream down).
    pub fn trip(&mut self, now: Instant) -> Transition {
        self.trips += 1;
        self.state = State::Open {
            until: now + self.cooldown(),
        };
        Transition::Opened
    }

    /// End an open breaker's cooldown now (a probe saw the upstream answer again).
    pub fn expire_cooldown(&mut self, now: Instant) {
        if let State::Open { until } = &mut self.state {
            *until = (*until).min(now);
        }
    }

    /// Error ratio over the window (0 when empty).
    pub fn error_ratio(&self) -> f64 {
        if self.window.is_empty() {
            return 0.0;
        }
        self.window.iter().filter(|(_, f)| *f).count() as f64 / self.window.len() as f64
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            error_ratio: 0.5,
            window: Duration::from_secs(10),
            min_requests: 10,
            cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(40),
            half_open_successes: 2,
            half_open_max_in_flight: 1,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_consecutive_failures_then_half_opens_and_closes() {
        let mut b = Breaker::new(cfg());
        let now = Instant::now();
        assert_eq!(b.on_failure(now), None);
        assert_eq!(b.on_failure(now), None);
        assert_eq!(b.on_failure(now), Some(Transition::Opened));
        assert_eq!(b.admit(Instant::now()).0, Admission::No);
        assert!(!b.available(Instant::now()));

        tokio::time::advance(Duration::from_secs(5)).await;
        let (a, t) = b.admit(Instant::now());
        assert_eq!((a, t), (Admission::Trial, Some(Transition::HalfOpened)));
        // Only one trial at a time.
        assert_eq!(b.admit(Instant::now()).0, Admission::No);
        assert_eq!(b.on_success(Instant::now()), None);
        assert_eq!(b.admit(Instant::now()).0, Admission::Trial);
        assert_eq!(b.on_success(Instant::now()), Some(Transition::Closed));
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.admit(Instant::now()).0, Admission::Yes);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_trial_reopens_with_a_longer_cooldown() {
        let mut b = Breaker::new(cfg());
        for _ in 0..3 {
            b.on_failure(Instant::now());
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.admit(Instant::now()).0, Admission::Trial);
        assert_eq!(b.on_failure(Instant::now()), Some(Transition::Opened));
        assert_eq!(b.retry_in(Instant::now()), Some(Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(b.admit(Instant::now()).0, Admission::No);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.admit(Instant::now()).0, Admission::Trial);
        // Cooldown is capped.
        for _ in 0..10 {
            b.on_failure(Instant::now());
            tokio::time::advance(Duration::from_secs(100)).await;
            b.admit(Instant::now());
        }
        b.on_failure(Instant::now());
        assert!(b.retry_in(Instant::now()).unwrap() <= Duration::from_secs(40));
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_error_ratio_with_enough_requests() {
        let mut b = Breaker::new(cfg());
        // Alternating outcomes never reach 3 consecutive failures.
        let mut opened = None;
        for i in 0..20 {
            let now = Instant::now();
            let t = if i % 2 == 0 {
                b.on_failure(now)
            } else {
                b.on_success(now)
            };
            if t.is_some() && opened.is_none() {
                opened = Some(i);
            }
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        // The ratio is 0.5 once 10 requests are in the window: request index 10 (a failure).
        assert_eq!(opened, Some(10));
    }

    #[tokio::test(start_paused = true)]
    async fn old_outcomes_leave_the_window() {
        let mut b = Breaker::new(cfg());
        for _ in 0..9 {
            b.on_success(Instant::now());
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        b.on_failure(Instant::now());
        assert_eq!(b.error_ratio(), 1.0);
        assert_eq!(
            b.state(),
            State::Closed,
            "one failure in a fresh window is below min_requests"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn released_trial_frees_the_slot() {
        let mut b = Breaker::new(cfg());
        b.trip(Instant::now());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.admit(Instant::now()).0, Admission::Trial);
        b.release();
        assert_eq!(b.admit(Instant::now()).0, Admission::Trial);
    }
}
