//! Stored responses (the Responses API's `store: true`), written behind the answer.
//!
//! The answer never waits for the write: the row is kept in memory until the write lands, so a
//! follow-up on this instance (`previous_response_id`, `GET`) sees it at once. A follow-up on
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

#[derive(Default)]
pub(crate) struct PendingWrites(Mutex<HashMap<String, Arc<StoredResponse>>>);

impl PendingWrites {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<StoredResponse>>> {
        match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl Gateway {
    /// Stores `row` without waiting: visible on this instance at once, in the database when
    /// the write lands (retried; shutdown waits for it).
    pub fn save_response(&self, row: StoredResponse) {
        let row = Arc::new(row);
        self.inner
            .pending_responses
            .lock()
            .insert(row.id.clone(), row.clone());
        let gateway = self.clone();
        self.tasks().spawn(async move {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match gateway.store().put_response(&row).await {
                    Ok(()) => break,
                    Err(e) if attempt < WRITE_ATTEMPTS => {
                        tracing::debug!(message = "Retrying a stored response's write.", error = %e);
                        tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                    }
                    Err(e) => {
                        tracing::error!(message = "Cannot store a response.", response_id = %row.id, error = %e);
                        break;
                    }
                }
            }
            gateway.inner.pending_responses.lock().remove(&row.id);
        });
    }

    /// One stored response, whether its write has landed or not.
    pub async fn stored_response(&self, id: &str) -> Result<Option<StoredResponse>, StoreError> {
        if let Some(row) = self.inner.pending_responses.lock().get(id) {
            return Ok(Some(StoredResponse::clone(row)));
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
        // Rows still in memory first (a chain written faster than its writes land).
        loop {
            let pending = self.inner.pending_responses.lock().get(&head).cloned();
            let Some(row) = pending else { break };
            let previous = row.previous_response_id.clone();
            tail.push(StoredResponse::clone(&row));
            match previous {
                Some(p) if tail.len() < plexus_store::MAX_CHAIN as usize => head = p,
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
