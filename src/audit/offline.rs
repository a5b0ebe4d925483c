//! Verify a stored log end to end: the adapter that feeds [`Verifier`] from a
//! [`Store`], with the store's receipts plus any the auditor brings.

use super::receipt::{CollectorKeys, Receipt};
use super::resolver::KeyResolver;
use super::store::{Store, StoreError};
use super::verify::{Anchor, BadRecord, EndProblem, StoredRecord, Summary, Verifier};

/// Why a stored log does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyFailure {
    #[error(transparent)]
    Record(#[from] BadRecord),
    #[error(transparent)]
    End(#[from] EndProblem),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How many threads verification uses unless told: every core the machine offers.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Records read from the store are verified this many at a time.
const BATCH: usize = 8192;

/// Run every check over `store`. `extra_receipts` are receipts held outside the desk
/// (the stored ones could have been deleted with the records they cover).
pub fn verify_store(
    store: &Store,
    resolver: &dyn KeyResolver,
    extra_receipts: &[Receipt],
    collectors: &CollectorKeys,
    anchors: &[Anchor],
) -> Result<Summary, VerifyFailure> {
    verify_store_with(store, resolver, extra_receipts, collectors, anchors, default_threads())
}

/// [`verify_store`] on `threads` threads (1: one core). Same checks, same answer.
pub fn verify_store_with(
    store: &Store,
    resolver: &dyn KeyResolver,
    extra_receipts: &[Receipt],
    collectors: &CollectorKeys,
    anchors: &[Anchor],
    threads: usize,
) -> Result<Summary, VerifyFailure> {
    let mut verifier = Verifier::new(resolver);
    let mut batch = Vec::with_capacity(BATCH);
    store.for_each(|stored| {
        batch.push(stored);
        if batch.len() == BATCH {
            verifier.push_all(&batch, threads)?;
            batch.clear();
        }
        Ok::<_, BadRecord>(())
    })??;
    verifier.push_all(&batch, threads)?;
    let mut receipts = store.receipts()?;
    receipts.extend_from_slice(extra_receipts);
    Ok(verifier.finish(&receipts, collectors, anchors)?)
}

/// The same checks over records from elsewhere (an export), in the order given, on
/// `threads` threads.
pub fn verify_records(
    records: &[StoredRecord],
    resolver: &dyn KeyResolver,
    receipts: &[Receipt],
    collectors: &CollectorKeys,
    anchors: &[Anchor],
    threads: usize,
) -> Result<Summary, VerifyFailure> {
    let mut verifier = Verifier::new(resolver);
    verifier.push_all(records, threads)?;
    Ok(verifier.finish(receipts, collectors, anchors)?)
}
