//! Stored responses (the Responses API's `store: true`), written behind the answer.
//!
//! The answer never waits for the write: the row is kept in memory until its write lands, so a
//! follow-up on this instance (`previous_response_id`, `GET`) sees it at once. Rows are written
//! in batches, one transaction each, by a task that runs while rows are queued. A follow-up on
//! another instance that arrives before the write lands waits briefly for it
//! ([`Gateway::response_chain`]).

use crate::Gateway;
use plexus_store::{StoreError, StoredResponse};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a lookup of an unknown id waits for another instance's write to land.
const CROSS_INSTANCE_WAIT: Duration = Duration::from_millis(300);
const WRITE_ATTEMPTS: u32 = 3;
const BATCH: usize = 256;

#[derive(Default)]
pub(crate) struct PendingWrites(Mutex<Pending>);

#[derive(Default)]
struct Pending {
    /// Every row not yet written, by id.
    rows: HashMap<String, Arc<StoredResponse>>,
    /// The ids to write, in order.
    queue: Vec<String>,
    /// Whether the writing task runs.
    writing: bool,
}

impl PendingWrites {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn get(&self, id: &str) -> Option<Arc<StoredResponse>> {
        self.lock().rows.get(id).cloned()
    }
}

impl Gateway {
    /// Stores `row` without waiting: visible on this instance at once, in the database when
    /// its batch is written (retried; shutdown waits for it).
    pub fn save_response(&self, row: StoredResponse) {
        let start = {
            let mut pending = self.inner.pending_responses.lock();
            pending.queue.push(row.id.clone());
            pending.rows.insert(row.id.clone(), Arc::new(row));
            !std::mem::replace(&mut pending.writing, true)
        };
        if start {
            self.tasks().spawn(write_pending(self.clone()));
        }
    }

    /// Waits until `id`'s write has landed (for at most 5 s), so that a change to its row
    /// (a delete) is not undone by the write.
    pub async fn response_written(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.inner.pending_responses.get(id).is_some()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// One stored response, whether its write has landed or not.
    pub async fn stored_response(&self, id: &str) -> Result<Option<StoredResponse>, StoreError> {
        if let Some(row) = self.inner.pending_responses.get(id) {
            return Ok(Some(StoredResponse::clone(&row)));
        }
        self.store().response_by_id(id).await
    }

    /// The conversation ending at `id`, oldest first (see
    /// [`plexus_store::Store::response_chain`]); empty when `id` is not stored. An id this
    /// instance does not know is looked up again for a short while, for a write another
    /// instance has not landed yet.
    pub async fn response_chain(&self, id: &str) -> Result<Vec<StoredResponse>, StoreError> {
        let mut tail = Vec::new();
        let mut head = id.to_owned();
        // Rows still in memory first (a chain continued faster than its writes land).
        while let Some(row) = self.inner.pending_responses.get(&head) {
            tail.push(StoredResponse::clone(&row));
            match &row.previous_response_id {
                Some(p) if tail.len() < plexus_store::MAX_CHAIN as usize => head = p.clone(),
                _ => {
                    tail.reverse();
                    return Ok(tail);
                }
            }
        }
        let deadline = tokio::time::Instant::now() + CROSS_INSTANCE_WAIT;
        let mut stored = loop {
            let found = self.store().response_chain(&head).await?;
            if !found.is_empty() || !tail.is_empty() || tokio::time::Instant::now() >= deadline {
                break found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        tail.reverse();
        stored.extend(tail);
        Ok(stored)
    }
}

/// Writes the queued rows in batches until none is left.
async fn write_pending(gateway: Gateway) {
    loop {
        let batch: Vec<Arc<StoredResponse>> = {
            let mut pending = gateway.inner.pending_responses.lock();
            if pending.queue.is_empty() {
                pending.writing = false;
                return;
            }
            let n = pending.queue.len().min(BATCH);
            let ids: Vec<String> = pending.queue.drain(..n).collect();
            ids.iter()
                .filter_map(|id| pending.rows.get(id).cloned())
                .collect()
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match gateway.store().put_responses(&batch).await {
                Ok(()) => {
                    metrics::counter!("plexus_stored_responses_total", "outcome" => "written")
                        .increment(batch.len() as u64);
                    break;
                }
                Err(e) if attempt < WRITE_ATTEMPTS => {
                    tracing::debug!(message = "Retrying stored responses' write.", error = %e);
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                Err(e) => {
                    metrics::counter!("plexus_stored_responses_total", "outcome" => "failed")
                        .increment(batch.len() as u64);
                    tracing::error!(message = "Cannot store responses.", rows = batch.len(), error = %e);
                    break;
                }
            }
        }
        let mut pending = gateway.inner.pending_responses.lock();
        for row in &batch {
            // A row saved again meanwhile stays until its own write.
            if pending
                .rows
                .get(&row.id)
                .is_some_and(|current| Arc::ptr_eq(current, row))
            {
                pending.rows.remove(&row.id);
            }
        }
    }
}
