//! The call-record writer: call tasks hand over a record at every state
//! change; this task writes what arrived meanwhile in one transaction, so a
//! burst of calls costs one fsync per batch rather than one per change. A
//! crash loses at most the batch in flight (milliseconds); a clean shutdown
//! flushes everything.

use crate::store::{CallRecord, SqliteStore};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

#[allow(clippy::large_enum_variant)] // one message per call state change: not worth a box
pub enum RecordMsg {
    Put(CallRecord),
    /// Answered once everything sent before it is written.
    Flush(oneshot::Sender<()>),
}

const MAX_BATCH: usize = 500;

/// `published`, when given, receives each record as it arrives (for live
/// events), before it is written.
pub async fn run_record_writer(store: Arc<SqliteStore>, mut rx: mpsc::UnboundedReceiver<RecordMsg>, published: Option<mpsc::UnboundedSender<CallRecord>>) {
    let mut batch: Vec<CallRecord> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                RecordMsg::Put(r) => {
                    if let Some(p) = &published {
                        let _ = p.send(r.clone());
                    }
                    // The latest state of a call replaces an earlier one in the batch.
                    match batch.iter_mut().find(|c| c.id == r.id) {
                        Some(c) => *c = r,
                        None => batch.push(r),
                    }
                }
                RecordMsg::Flush(done) => flushes.push(done),
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            if let Err(e) = store.put_calls(&batch).await {
                tracing::error!(error = %e, records = batch.len(), "could not write call records");
            }
            batch.clear();
        }
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
    }
}

/// Wait until every record handed over so far is written.
pub async fn flush(tx: &mpsc::UnboundedSender<RecordMsg>) {
    let (done, wait) = oneshot::channel();
    if tx.send(RecordMsg::Flush(done)).is_ok() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), wait).await;
    }
}
