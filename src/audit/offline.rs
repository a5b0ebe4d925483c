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

/// Run every check over `store`. `extra_receipts` are receipts held outside the desk
/// (the stored ones could have been deleted with the records they cover).
pub fn verify_store(
    store: &Store,
    resolver: &dyn KeyResolver,
    extra_receipts: &[Receipt],
    collectors: &CollectorKeys,
    anchors: &[Anchor],
) -> Result<Summary, VerifyFailure> {
    let mut verifier = Verifier::new(resolver);
    store.for_each(|stored| verifier.push(&stored))??;
    let mut receipts = store.receipts()?;
    receipts.extend_from_slice(extra_receipts);
    Ok(verifier.finish(&receipts, collectors, anchors)?)
}

/// The same checks over records from elsewhere (an export), in the order given.
pub fn verify_records(
    records: &[StoredRecord],
    resolver: &dyn KeyResolver,
    receipts: &[Receipt],
    collectors: &CollectorKeys,
    anchors: &[Anchor],
) -> Result<Summary, VerifyFailure> {
    let mut verifier = Verifier::new(resolver);
    for r in records {
        verifier.push(r)?;
    }
    Ok(verifier.finish(receipts, collectors, anchors)?)
}
