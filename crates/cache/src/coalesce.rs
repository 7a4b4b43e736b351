//! Coalescing of concurrent identical misses: the first request for a key goes upstream; the
//! others wait for its entry instead of making the same call. If the first one fails (or is
//! cancelled), the waiters go upstream themselves.

use crate::store::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

type Slot = watch::Receiver<Option<Arc<Entry>>>;

#[derive(Default)]
pub struct Coalescer {
    flights: Mutex<HashMap<String, Slot>>,
}

/// The caller's role for one key.
pub enum Flight {
    /// Go upstream, then `complete` (dropping the guard releases the waiters empty-handed).
    Leader(Leader),
    /// Wait for the leader with [`Follower::wait`].
    Follower(Slot),
}

pub struct Leader {
    coalescer: Arc<Coalescer>,
    key: String,
    tx: watch::Sender<Option<Arc<Entry>>>,
}

impl Leader {
    pub fn complete(self, entry: Arc<Entry>) {
        let _ = self.tx.send(Some(entry));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut flights = match self.coalescer.flights.lock() {
            Ok(f) => f,
            Err(p) => p.into_inner(),
        };
        flights.remove(&self.key);
    }
}

/// Waits for the leader's entry; `None` if it ended without one.
pub async fn wait(mut slot: Slot) -> Option<Arc<Entry>> {
    loop {
        if let Some(e) = slot.borrow_and_update().clone() {
            return Some(e);
        }
        if slot.changed().await.is_err() {
            return slot.borrow().clone();
        }
    }
}

impl Coalescer {
    pub fn new() -> Arc<Coalescer> {
        Arc::new(Coalescer::default())
    }

    pub fn join(self: &Arc<Self>, key: &str) -> Flight {
        let mut flights = match self.flights.lock() {
            Ok(f) => f,
            Err(p) => p.into_inner(),
        };
        if let Some(slot) = flights.get(key) {
            return Flight::Follower(slot.clone());
        }
        let (tx, rx) = watch::channel(None);
        flights.insert(key.to_owned(), rx);
        Flight::Leader(Leader {
            coalescer: self.clone(),
            key: key.to_owned(),
            tx,
        })
    }

    pub fn in_flight(&self) -> usize {
        self.flights.lock().map(|f| f.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn entry() -> Arc<Entry> {
        Arc::new(Entry {
            key: "k".into(),
            namespace: "global".into(),
            model: "m".into(),
            tags: vec![],
            created_ms: 0,
            expires_ms: 1,
            served_by: "p/m".into(),
            body: "{}".into(),
        })
    }

    #[tokio::test]
    async fn followers_get_the_leaders_entry() {
        let c = Coalescer::new();
        let Flight::Leader(leader) = c.join("k") else {
            panic!()
        };
        let Flight::Follower(a) = c.join("k") else {
            panic!()
        };
        let Flight::Follower(b) = c.join("k") else {
            panic!()
        };
        let waiting = tokio::spawn(async move { (wait(a).await, wait(b).await) });
        leader.complete(entry());
        let (a, b) = waiting.await.unwrap();
        assert_eq!(a.unwrap().key, "k");
        assert_eq!(b.unwrap().key, "k");
        assert_eq!(c.in_flight(), 0);
        assert!(matches!(c.join("k"), Flight::Leader(_)), "a new flight");
    }

    #[tokio::test]
    async fn a_failed_leader_releases_the_followers() {
        let c = Coalescer::new();
        let leader = c.join("k");
        let Flight::Follower(slot) = c.join("k") else {
            panic!()
        };
        drop(leader);
        assert!(wait(slot).await.is_none());
        assert_eq!(c.in_flight(), 0);
    }
}
