//! The audit log's hash chain: each entry's hash covers its fields and the previous hash, so
//! editing or deleting an entry breaks every hash after it. (Cutting entries off the end is
//! only visible against an anchor kept elsewhere: `plexus audit verify` prints the head hash
//! to record.)

use plexus_store::AuditEntry;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of an entry: SHA-256 over its length-prefixed fields and `prev_hash`.
pub fn entry_hash(e: &AuditEntry) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(b"plexus-audit-v1");
    field(&e.seq.to_be_bytes());
    field(&e.ts_ms.to_be_bytes());
    field(e.actor.as_bytes());
    field(e.action.as_bytes());
    field(e.target.as_bytes());
    field(e.outcome.as_bytes());
    field(e.source.as_bytes());
    field(e.details.as_bytes());
    field(e.prev_hash.as_bytes());
    crate::keys::hex(&h.finalize())
}

/// Links `e` after (`prev_seq`, `prev_hash`) and fills in its hash.
pub fn link(e: &mut AuditEntry, prev_seq: i64, prev_hash: &str) {
    e.seq = prev_seq + 1;
    e.prev_hash = prev_hash.to_owned();
    e.hash = entry_hash(e);
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("entry {seq}: expected sequence number {expected} (an entry was deleted or inserted)")]
    Gap { seq: i64, expected: i64 },
    #[error("entry {seq}: does not follow the previous entry's hash (an earlier entry changed)")]
    Broken { seq: i64 },
    #[error("entry {seq}: its hash does not match its content (the entry was edited)")]
    Edited { seq: i64 },
}

/// Incremental verification, entry by entry in `seq` order.
#[derive(Debug, Clone)]
pub struct Verifier {
    expected_seq: i64,
    prev_hash: String,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            expected_seq: 1,
            prev_hash: GENESIS.to_owned(),
        }
    }
}

impl Verifier {
    pub fn check(&mut self, e: &AuditEntry) -> Result<(), ChainError> {
        if e.seq != self.expected_seq {
            return Err(ChainError::Gap {
                seq: e.seq,
                expected: self.expected_seq,
            });
        }
        if e.prev_hash != self.prev_hash {
            return Err(ChainError::Broken { seq: e.seq });
        }
        if entry_hash(e) != e.hash {
            return Err(ChainError::Edited { seq: e.seq });
        }
        self.expected_seq += 1;
        self.prev_hash = e.hash.clone();
        Ok(())
    }

    /// Entries verified so far.
    pub fn count(&self) -> i64 {
        self.expected_seq - 1
    }

    /// The hash of the last verified entry (the head to record as an anchor).
    pub fn head(&self) -> &str {
        &self.prev_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let mut e = AuditEntry {
                seq: 0,
                ts_ms: 1000 + i,
                actor: "master".into(),
                action: "key.create".into(),
                target: format!("k{i}"),
                outcome: "ok".into(),
                source: "127.0.0.1".into(),
                details: "{}".into(),
                prev_hash: String::new(),
                hash: String::new(),
            };
            let (seq, prev) = out
                .last()
                .map(|p| (p.seq, p.hash.clone()))
                .unwrap_or((0, GENESIS.to_owned()));
            link(&mut e, seq, &prev);
            out.push(e);
        }
        out
    }

    fn verify(entries: &[AuditEntry]) -> Result<i64, ChainError> {
        let mut v = Verifier::default();
        for e in entries {
            v.check(e)?;
        }
        Ok(v.count())
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
        assert_eq!(verify(&[]), Ok(0));
    }

    #[test]
    fn edits_and_deletions_are_detected() {
        let mut edited = chain(5);
        edited[2].target = "someone-else".into();
        assert_eq!(verify(&edited), Err(ChainError::Edited { seq: 3 }));

        let mut rehashed = chain(5);
        rehashed[2].outcome = "denied".into();
        rehashed[2].hash = entry_hash(&rehashed[2]);
        assert_eq!(verify(&rehashed), Err(ChainError::Broken { seq: 4 }));

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(
            verify(&deleted),
            Err(ChainError::Gap {
                seq: 3,
                expected: 2
            })
        );
    }

    #[test]
    fn fields_cannot_be_shifted_between_each_other() {
        let mut a = chain(1).remove(0);
        let mut b = a.clone();
        a.actor = "ab".into();
        a.action = "c".into();
        b.actor = "a".into();
        b.action = "bc".into();
        assert_ne!(entry_hash(&a), entry_hash(&b));
    }
}

/// What happened, before it is chained.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub ts_ms: i64,
    pub actor: String,
    pub action: &'static str,
    pub target: String,
    pub outcome: &'static str,
    pub source: String,
    /// JSON text; never a secret.
    pub details: String,
}

enum Msg {
    Event(Box<AuditEvent>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The single writer of the chain for this process. Events queue on a bounded channel (a full
/// queue makes the admin request wait: audit entries are never dropped); the task links them
/// to the current head and appends them in one transaction. When another instance appended
/// first (a sequence conflict), it reloads the head and links again.
#[derive(Clone, Debug)]
pub struct AuditWriter {
    tx: tokio::sync::mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Event(e) => write!(f, "Event({})", e.action),
            Msg::Flush(_) => write!(f, "Flush"),
        }
    }
}

/// Owns the writer task; `shutdown` writes everything queued.
#[derive(Debug)]
pub struct AuditHandle {
    task: tokio::task::JoinHandle<()>,
    cancel: tokio_util::sync::CancellationToken,
}

impl AuditWriter {
    pub fn spawn(store: plexus_store::Store) -> (AuditWriter, AuditHandle) {
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        let cancel = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(run(store, rx, cancel.clone()));
        (AuditWriter { tx }, AuditHandle { task, cancel })
    }

    pub async fn record(&self, event: AuditEvent) {
        if self.tx.send(Msg::Event(Box::new(event))).await.is_err() {
            tracing::error!(message = "Audit event arrived after the audit writer stopped.");
        }
    }

    /// Waits until everything queued before the call is stored.
    pub async fn flush(&self) {
        let (ack, done) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

impl AuditHandle {
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

async fn run(
    store: plexus_store::Store,
    mut rx: tokio::sync::mpsc::Receiver<Msg>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut pending: Vec<AuditEvent> = Vec::new();
    let mut acks = Vec::new();
    loop {
        let msg = tokio::select! {
            biased;
            msg = rx.recv() => msg,
            _ = cancel.cancelled() => None,
        };
        let Some(msg) = msg else { break };
        take(msg, &mut pending, &mut acks);
        while let Ok(msg) = rx.try_recv() {
            take(msg, &mut pending, &mut acks);
        }
        append(&store, &mut pending).await;
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
    rx.close();
    while let Some(msg) = rx.recv().await {
        take(msg, &mut pending, &mut acks);
    }
    append(&store, &mut pending).await;
    for ack in acks.drain(..) {
        let _ = ack.send(());
    }
}

fn take(msg: Msg, pending: &mut Vec<AuditEvent>, acks: &mut Vec<tokio::sync::oneshot::Sender<()>>) {
    match msg {
        Msg::Event(e) => pending.push(*e),
        Msg::Flush(a) => acks.push(a),
    }
}

async fn append(store: &plexus_store::Store, pending: &mut Vec<AuditEvent>) {
    if pending.is_empty() {
        return;
    }
    let mut delay = std::time::Duration::from_millis(20);
    for attempt in 0..50 {
        let head = match store.audit_tail().await {
            Ok(h) => h.unwrap_or((0, GENESIS.to_owned())),
            Err(e) => {
                tracing::warn!(message = "Cannot read the audit head; retrying.", error = %e);
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        let (mut seq, mut prev) = head;
        let mut entries = Vec::with_capacity(pending.len());
        for ev in pending.iter() {
            let mut e = AuditEntry {
                seq: 0,
                ts_ms: ev.ts_ms,
                actor: ev.actor.clone(),
                action: ev.action.to_owned(),
                target: ev.target.clone(),
                outcome: ev.outcome.to_owned(),
                source: ev.source.clone(),
                details: ev.details.clone(),
                prev_hash: String::new(),
                hash: String::new(),
            };
            link(&mut e, seq, &prev);
            seq = e.seq;
            prev = e.hash.clone();
            entries.push(e);
        }
        match store.append_audit(&entries).await {
            Ok(()) => {
                pending.clear();
                return;
            }
            Err(plexus_store::StoreError::Conflict(_)) => {
                // Another instance appended first: relink on its head.
                continue;
            }
            Err(e) => {
                tracing::warn!(message = "Audit append failed; retrying.", error = %e, attempt);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(2));
            }
        }
    }
    tracing::error!(
        message = "Audit entries could not be written.",
        count = pending.len()
    );
    pending.clear();
}
