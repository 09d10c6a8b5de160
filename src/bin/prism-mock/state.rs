//! Process-wide settings and the little mutable state the control endpoints expose.
//!
//! The hot path touches only atomics and short, never-awaited mutex sections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::body::Split;
use crate::directives::Directives;

/// Settings from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    pub token_delay: Duration,
    pub split: Split,
    pub require_key: Option<String>,
    pub default_tokens: usize,
    pub default_dims: usize,
    pub log: bool,
}

/// A copy of the last non-control request, rendered only when asked for.
pub struct LastRequest {
    pub method: Method,
    /// `HTTP/1.1` or `HTTP/2.0`: lets tests see what the client negotiated.
    pub version: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

struct GlobalFault {
    directives: Directives,
    remaining: Option<u64>,
}

pub struct State {
    pub config: Config,
    requests: AtomicU64,
    by_path: Mutex<HashMap<String, u64>>,
    fault_armed: AtomicBool,
    fault: Mutex<Option<GlobalFault>>,
    last: Mutex<Option<Arc<LastRequest>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    pub fn new(config: Config) -> State {
        State {
            config,
            requests: AtomicU64::new(0),
            by_path: Mutex::new(HashMap::new()),
            fault_armed: AtomicBool::new(false),
            fault: Mutex::new(None),
            last: Mutex::new(None),
        }
    }

    /// Counts a non-control request and keeps it for `GET /_mock/last`.
    pub fn record(&self, last: LastRequest) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        {
            let mut by_path = lock(&self.by_path);
            match by_path.get_mut(last.path.as_str()) {
                Some(n) => *n += 1,
                None => {
                    by_path.insert(last.path.clone(), 1);
                }
            }
        }
        let previous = lock(&self.last).replace(Arc::new(last));
        drop(previous);
    }

    pub fn last(&self) -> Option<Arc<LastRequest>> {
        lock(&self.last).clone()
    }

    pub fn stats(&self) -> (u64, Vec<(String, u64)>) {
        let mut paths: Vec<(String, u64)> = lock(&self.by_path).iter().map(|(k, v)| (k.clone(), *v)).collect();
        paths.sort();
        (self.requests.load(Ordering::Relaxed), paths)
    }

    /// Arms a global fault for the next `count` requests (all of them when `None`).
    pub fn set_fault(&self, directives: Directives, count: Option<u64>) {
        let mut fault = lock(&self.fault);
        if count == Some(0) {
            *fault = None;
            self.fault_armed.store(false, Ordering::Release);
            return;
        }
        *fault = Some(GlobalFault {
            directives,
            remaining: count,
        });
        self.fault_armed.store(true, Ordering::Release);
    }

    pub fn clear_fault(&self) {
        *lock(&self.fault) = None;
        self.fault_armed.store(false, Ordering::Release);
    }

    /// Returns the armed global fault for this request, consuming one use of it.
    pub fn take_fault(&self) -> Option<Directives> {
        if !self.fault_armed.load(Ordering::Acquire) {
            return None;
        }
        let mut slot = lock(&self.fault);
        let fault = slot.as_mut()?;
        let directives = fault.directives.clone();
        if let Some(remaining) = fault.remaining.as_mut() {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                *slot = None;
                self.fault_armed.store(false, Ordering::Release);
            }
        }
        Some(directives)
    }

    /// `POST /_mock/reset`: zero the counters, forget the last request, disarm faults.
    pub fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        lock(&self.by_path).clear();
        *lock(&self.last) = None;
        self.clear_fault();
    }
}
