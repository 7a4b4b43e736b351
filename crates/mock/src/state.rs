//! Shared server state: configuration, counters and the recorded-request ring.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};
use serde_json::Value;

use crate::config::MockConfig;

/// A request as the simulator received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`; empty when there is none.
    pub query: String,
    /// Lower-case header names; repeated headers are joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON, or `Null` when it is not JSON.
    pub body: Value,
    pub raw_body: Bytes,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// What is kept per request: cheap clones, parsed only when asked for.
struct Raw {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

pub(crate) struct Shared {
    pub config: MockConfig,
    records: Mutex<VecDeque<Raw>>,
    request_count: AtomicUsize,
    pub active_streams: AtomicUsize,
    pub cancelled_streams: AtomicUsize,
    fail_counts: Mutex<HashMap<String, u32>>,
}

/// Handle on a simulator's state; cheap to clone. [`crate::router`] serves it.
#[derive(Clone)]
pub struct MockState {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for MockState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockState")
            .field("request_count", &self.request_count())
            .field("active_streams", &self.active_streams())
            .finish_non_exhaustive()
    }
}

/// A poisoned lock only means a panic elsewhere; the data is still usable for a simulator.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MockState {
    pub fn new(config: MockConfig) -> MockState {
        MockState {
            shared: Arc::new(Shared {
                config,
                records: Mutex::new(VecDeque::new()),
                request_count: AtomicUsize::new(0),
                active_streams: AtomicUsize::new(0),
                cancelled_streams: AtomicUsize::new(0),
                fail_counts: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn config(&self) -> &MockConfig {
        &self.shared.config
    }

    /// The last requests received (at most `record_limit`), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        let raws: Vec<(Method, Uri, HeaderMap, Bytes)> = lock(&self.shared.records)
            .iter()
            .map(|r| {
                (
                    r.method.clone(),
                    r.uri.clone(),
                    r.headers.clone(),
                    r.body.clone(),
                )
            })
            .collect();
        raws.into_iter()
            .map(|(method, uri, headers, body)| {
                let mut map: BTreeMap<String, String> = BTreeMap::new();
                for (name, value) in &headers {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    map.entry(name.as_str().to_owned())
                        .and_modify(|v| {
                            v.push_str(", ");
                            v.push_str(&value);
                        })
                        .or_insert(value);
                }
                RecordedRequest {
                    method: method.as_str().to_owned(),
                    path: uri.path().to_owned(),
                    query: uri.query().unwrap_or("").to_owned(),
                    headers: map,
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    raw_body: body,
                }
            })
            .collect()
    }

    /// Requests received since start or the last [`MockState::clear`].
    pub fn request_count(&self) -> usize {
        self.shared.request_count.load(Ordering::Relaxed)
    }

    /// Streamed responses currently being sent.
    pub fn active_streams(&self) -> usize {
        self.shared.active_streams.load(Ordering::Relaxed)
    }

    /// Streamed responses whose body was dropped before its end, i.e. the client went away.
    pub fn cancelled_streams(&self) -> usize {
        self.shared.cancelled_streams.load(Ordering::Relaxed)
    }

    /// Forgets recorded requests, counts and `fail-first` counters.
    pub fn clear(&self) {
        lock(&self.shared.records).clear();
        lock(&self.shared.fail_counts).clear();
        self.shared.request_count.store(0, Ordering::Relaxed);
        self.shared.cancelled_streams.store(0, Ordering::Relaxed);
    }

    pub(crate) fn record(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
        self.shared.request_count.fetch_add(1, Ordering::Relaxed);
        let cfg = &self.shared.config;
        if !cfg.record_requests || cfg.record_limit == 0 {
            return;
        }
        let raw = Raw {
            method: method.clone(),
            uri: uri.clone(),
            headers: headers.clone(),
            body: body.clone(),
        };
        let evicted = {
            let mut records = lock(&self.shared.records);
            let evicted = if records.len() >= cfg.record_limit {
                records.pop_front()
            } else {
                None
            };
            records.push_back(raw);
            evicted
        };
        // Freed outside the lock.
        drop(evicted);
    }

    /// Counts a request for `model` and says whether it is among the first `n`.
    pub(crate) fn fails_first(&self, model: &str, n: u32) -> bool {
        let mut counts = lock(&self.shared.fail_counts);
        let seen = match counts.get_mut(model) {
            Some(c) => c,
            None => counts.entry(model.to_owned()).or_insert(0),
        };
        if *seen >= n {
            return false;
        }
        *seen += 1;
        true
    }
}
