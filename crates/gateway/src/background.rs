//! Background runs: work acknowledged at once and finished later by a tracked task (the
//! Responses API's `background: true`).
//!
//! Each run has a status row in the store, written before the run is acknowledged, which any
//! instance reads. A cancel from any instance moves the row to `cancelled`; the instance
//! driving the run sees it within [`POLL_EVERY`] (at once when it is the one cancelling) and
//! drops the work, which settles and records the call as cancelled. Shutdown lets runs finish
//! within the grace period, then ends the ones still alive as `incomplete`. The driving
//! instance's heartbeat on each row lets every other instance tell a run whose instance died.

use crate::Gateway;
use plexus_store::{StoredResponse, RUNNING};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the driving instance looks for runs cancelled elsewhere.
pub const POLL_EVERY: Duration = Duration::from_millis(500);
/// How often it says, on each row, that it still drives the run.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// A running row without a heartbeat for this long lost its instance.
pub const LOST_AFTER: Duration = Duration::from_secs(30);

/// The runs this instance drives.
pub(crate) struct BackgroundRuns {
    instance_id: String,
    state: Mutex<RunsState>,
}

#[derive(Default)]
struct RunsState {
    runs: HashMap<String, CancellationToken>,
    /// Whether the poller task is running (it stops when no run is left).
    polling: bool,
}

impl BackgroundRuns {
    pub(crate) fn new() -> BackgroundRuns {
        BackgroundRuns {
            instance_id: format!("inst_{}", uuid::Uuid::new_v4().simple()),
            state: Mutex::new(RunsState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RunsState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// Whether a running row's instance is gone: no heartbeat for [`LOST_AFTER`].
pub fn run_lost(row: &StoredResponse, now_ms: i64) -> bool {
    let last = row.heartbeat_ms.unwrap_or(row.updated_at_ms);
    row.is_running() && now_ms.saturating_sub(last) > LOST_AFTER.as_millis() as i64
}

impl Gateway {
    /// This process's id among the instances sharing the store.
    pub fn instance_id(&self) -> &str {
        &self.inner.background.instance_id
    }

    /// Runs `work` as the background run `id`, whose row is already stored (`queued`, this
    /// instance, a heartbeat). The row moves to `in_progress` when the work starts; `work`
    /// writes the outcome itself (with [`plexus_store::Store::finish_response`], which a
    /// cancel that came first wins over).
    pub fn spawn_background_run<F>(&self, id: String, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = CancellationToken::new();
        let start_poller = {
            let mut state = self.inner.background.lock();
            state.runs.insert(id.clone(), token.clone());
            !std::mem::replace(&mut state.polling, true)
        };
        if start_poller {
            self.tasks().spawn(poll(self.clone()));
        }
        let gateway = self.clone();
        self.tasks().spawn(async move {
            let now = gateway.clock().now_unix_ms();
            let store = gateway.store();
            let started = store
                .transition_response(&id, &["queued"], "in_progress", None, now)
                .await;
            let active = metrics::gauge!("plexus_background_runs_active");
            active.increment(1.0);
            let mut ended = "finished";
            if matches!(started, Ok(true)) {
                tokio::select! {
                    biased;
                    _ = token.cancelled() => ended = "cancelled",
                    _ = gateway.in_flight_stop().cancelled() => {
                        ended = "interrupted";
                        let now = gateway.clock().now_unix_ms();
                        let ended = store
                            .transition_response(&id, &RUNNING, "incomplete", Some("shutdown"), now)
                            .await;
                        if let Err(e) = ended {
                            tracing::warn!(message = "Cannot mark an interrupted run.", response_id = %id, error = %e);
                        }
                    }
                    () = work => {}
                }
            } else {
                ended = "cancelled";
                if let Err(e) = started {
                    ended = "failed";
                    tracing::warn!(message = "Cannot start a background run.", response_id = %id, error = %e);
                }
            }
            active.decrement(1.0);
            metrics::counter!("plexus_background_runs_total", "ended" => ended).increment(1);
            gateway.inner.background.lock().runs.remove(&id);
        });
    }

    /// Stops the run `id` if this instance drives it (its row was already moved to
    /// `cancelled`). Other instances' runs stop at their next poll.
    pub fn stop_background_run(&self, id: &str) -> bool {
        match self.inner.background.lock().runs.remove(id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// How many background runs this instance drives.
    pub fn background_runs(&self) -> usize {
        self.inner.background.lock().runs.len()
    }

    /// Waits until no background run is alive or `within` has passed (shutdown's grace).
    pub async fn drain_background_runs(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.background_runs() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// While this instance drives runs: stops the ones cancelled or deleted elsewhere, and beats
/// their heartbeat.
async fn poll(gateway: Gateway) {
    let stop = gateway.inner.background_stop.clone();
    let beat_every = (HEARTBEAT_EVERY.as_millis() / POLL_EVERY.as_millis()).max(1) as u32;
    let mut tick: u32 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(POLL_EVERY) => {}
        }
        let ids: Vec<String> = {
            let mut state = gateway.inner.background.lock();
            if state.runs.is_empty() {
                state.polling = false;
                return;
            }
            state.runs.keys().cloned().collect()
        };
        tick = tick.wrapping_add(1);
        let now = gateway.clock().now_unix_ms();
        let beat = tick.is_multiple_of(beat_every);
        match gateway.store().still_running(&ids, now, beat).await {
            Ok(running) => {
                let running: std::collections::HashSet<String> = running.into_iter().collect();
                for id in ids.iter().filter(|id| !running.contains(*id)) {
                    gateway.stop_background_run(id);
                }
            }
            Err(e) => tracing::warn!(message = "Cannot poll background runs.", error = %e),
        }
    }
    gateway.inner.background.lock().polling = false;
}
