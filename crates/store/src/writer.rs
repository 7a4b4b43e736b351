//! The background batch writer of the request log.
//!
//! The request path hands records to a bounded channel. When the channel is full, `record`
//! waits (backpressure) and `record_detached` parks the record in a tracked task: rows are
//! never dropped. The writer collects for up to `LINGER` after the first record of a batch (or
//! until a flush is requested) and writes the batch in one transaction.

use crate::Store;
use plexus_core::log::RequestRecord;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const MAX_BATCH: usize = 1024;
/// How long the writer keeps collecting after the first record of a batch. One transaction per
/// batch is what makes the log cheap under load; a lone record still lands within this time.
const LINGER: Duration = Duration::from_millis(20);

enum Msg {
    Record(Box<RequestRecord>),
    Flush(oneshot::Sender<()>),
}

/// The sending side; cheap to clone.
#[derive(Clone, Debug)]
pub struct LogWriter {
    tx: mpsc::Sender<Msg>,
    detached: TaskTracker,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Record(r) => write!(f, "Record({})", r.request_id),
            Msg::Flush(_) => write!(f, "Flush"),
        }
    }
}

/// Owns the writer task; `shutdown` flushes everything queued.
#[derive(Debug)]
pub struct WriterHandle {
    task: JoinHandle<()>,
    cancel: CancellationToken,
    detached: TaskTracker,
}

impl LogWriter {
    pub fn spawn(store: Store, capacity: usize) -> (LogWriter, WriterHandle) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let cancel = CancellationToken::new();
        let detached = TaskTracker::new();
        let task = tokio::spawn(run(store, rx, cancel.clone()));
        (
            LogWriter {
                tx,
                detached: detached.clone(),
            },
            WriterHandle {
                task,
                cancel,
                detached,
            },
        )
    }

    /// Queues a record, waiting while the queue is full. A boxed record is queued as it is
    /// (callers that keep one across awaits box it early, and moves stay small).
    pub async fn record(&self, record: impl Into<Box<RequestRecord>>) {
        if let Err(e) = self.tx.send(Msg::Record(record.into())).await {
            lost(e.0);
        }
    }

    /// Queues a record without waiting (for `Drop` paths): when the queue is full the record
    /// waits in a tracked task that shutdown drains.
    pub fn record_detached(&self, record: impl Into<Box<RequestRecord>>) {
        match self.tx.try_send(Msg::Record(record.into())) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => {
                let tx = self.tx.clone();
                self.detached.spawn(async move {
                    if let Err(e) = tx.send(msg).await {
                        lost(e.0);
                    }
                });
            }
            Err(mpsc::error::TrySendError::Closed(msg)) => lost(msg),
        }
    }

    /// Waits until everything queued before this call is in the database.
    pub async fn flush(&self) {
        self.detached_settled().await;
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    async fn detached_settled(&self) {
        while !self.detached.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn lost(msg: Msg) {
    if let Msg::Record(r) = msg {
        tracing::error!(
            message = "Request record arrived after the log writer stopped.",
            request_id = %r.request_id
        );
    }
}

impl WriterHandle {
    /// Drains parked records and the queue into the database, then stops the writer.
    pub async fn shutdown(self) {
        self.detached.close();
        self.detached.wait().await;
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(message = "Log writer task failed.", error = %e);
        }
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Msg>, cancel: CancellationToken) {
    let mut batch: Vec<RequestRecord> = Vec::with_capacity(MAX_BATCH);
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let first = tokio::select! {
            biased;
            msg = rx.recv() => msg,
            _ = cancel.cancelled() => None,
        };
        let Some(first) = first else { break };
        take(first, &mut batch, &mut acks);
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < MAX_BATCH && acks.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(msg)) => take(msg, &mut batch, &mut acks),
                Ok(None) | Err(_) => break,
            }
        }
        write(&store, &mut batch, &cancel).await;
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
    // Shutdown: refuse new records, then write everything still queued.
    rx.close();
    while let Some(msg) = rx.recv().await {
        take(msg, &mut batch, &mut acks);
        if batch.len() >= MAX_BATCH {
            write(&store, &mut batch, &cancel).await;
        }
    }
    write(&store, &mut batch, &cancel).await;
    for ack in acks.drain(..) {
        let _ = ack.send(());
    }
}

fn take(msg: Msg, batch: &mut Vec<RequestRecord>, acks: &mut Vec<oneshot::Sender<()>>) {
    match msg {
        Msg::Record(r) => batch.push(*r),
        Msg::Flush(ack) => acks.push(ack),
    }
}

/// Writes the batch, retrying with backoff while the database fails. The queue fills up
/// meanwhile, which pushes back on the request path instead of dropping rows.
async fn write(store: &Store, batch: &mut Vec<RequestRecord>, cancel: &CancellationToken) {
    if batch.is_empty() {
        return;
    }
    let mut delay = Duration::from_millis(50);
    let mut attempts = 0u32;
    loop {
        match store.insert_requests(batch).await {
            Ok(()) => {
                batch.clear();
                return;
            }
            Err(e) => {
                attempts += 1;
                // At shutdown, give up after a bounded number of tries rather than hang.
                if cancel.is_cancelled() && attempts >= 5 {
                    tracing::error!(
                        message = "Could not write request records at shutdown.",
                        rows = batch.len(),
                        error = %e
                    );
                    batch.clear();
                    return;
                }
                tracing::warn!(message = "Request log write failed; retrying.", error = %e, rows = batch.len());
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> RequestRecord {
        RequestRecord {
            ts_ms: i as i64,
            request_id: format!("req-{i}"),
            endpoint: "chat",
            model: "m".into(),
            status: 200,
            ..Default::default()
        }
    }

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        (Store::connect(&url).await.unwrap(), dir)
    }

    #[tokio::test]
    async fn nothing_is_lost_under_a_tiny_queue() {
        let (store, _dir) = store().await;
        let (writer, handle) = LogWriter::spawn(store.clone(), 2);
        for i in 0..300 {
            if i % 2 == 0 {
                writer.record(rec(i)).await;
            } else {
                writer.record_detached(rec(i));
            }
        }
        handle.shutdown().await;
        assert_eq!(store.count_requests().await.unwrap(), 300);
        drop(writer);
    }

    #[tokio::test]
    async fn flush_makes_records_visible() {
        let (store, _dir) = store().await;
        let (writer, handle) = LogWriter::spawn(store.clone(), 64);
        let mut r = rec(7);
        r.upstream_request_id = Some("up-1".into());
        r.ttft_ms = Some(12);
        r.cost = plexus_protocol::money::Nanos(200);
        writer.record(r).await;
        writer.flush().await;
        let got = store.request_by_id("req-7").await.unwrap().unwrap();
        assert_eq!(got.upstream_request_id.as_deref(), Some("up-1"));
        assert_eq!(got.ttft_ms, Some(12));
        assert_eq!(
            got.cost,
            plexus_protocol::money::Nanos(200),
            "a tiny cost survives"
        );
        handle.shutdown().await;
    }
}
