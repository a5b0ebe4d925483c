//! The desk as a witness of the collector's log: a checkpoint the collector signs is
//! accepted only if the tree it states extends (or is a prefix of) the one the desk
//! already holds, by an RFC 6962 consistency proof checked with `tlog_tiles` (the same
//! math the collector uses; no tree math here). Two checkpoints signed by the same key
//! that no proof can join are a fork: the collector showed different histories.
//!
//! Pure: the driver fetches the proof and stores what is accepted.

use crate::audit::{Hash32, LogCheckpoint};

/// Why a new checkpoint is not consistent with the one the desk holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForkError {
    #[error(
        "FORK: the collector signed two different trees of size {size} (root {held} held by this desk, {new} now); \
         its log was rewritten or it shows desks different histories; stop trusting it and call security"
    )]
    SameSizeOtherRoot { size: u64, held: String, new: String },
    #[error(
        "FORK: the collector's tree of size {larger} does not extend its tree of size {smaller} (the consistency proof \
         does not verify); its log was rewritten or it shows desks different histories; stop trusting it and call security"
    )]
    NotAnExtension { smaller: u64, larger: u64 },
    #[error(
        "the collector now shows a tree of size {new}, smaller than the tree of size {held} it signed before, and \
         cannot prove it a prefix: its log was rolled back or replaced; stop trusting it and call security"
    )]
    Behind { held: u64, new: u64 },
    #[error("the checkpoint is of log `{new}`, but this desk witnesses log `{held}`; check [collector] url and verifier_key")]
    OtherLog { held: String, new: String },
}

/// Which consistency proof joins `held` and `new`, as `(smaller size, larger size)`;
/// `None` when none is needed (same tree, or one side empty).
pub fn proof_needed(held: &LogCheckpoint, new: &LogCheckpoint) -> Result<Option<(u64, u64)>, ForkError> {
    if held.origin != new.origin {
        return Err(ForkError::OtherLog { held: held.origin.clone(), new: new.origin.clone() });
    }
    if held.tree_size == new.tree_size {
        if held.root_hash != new.root_hash {
            return Err(ForkError::SameSizeOtherRoot {
                size: held.tree_size,
                held: hex::encode(held.root_hash),
                new: hex::encode(new.root_hash),
            });
        }
        return Ok(None);
    }
    let (small, large) = ordered(held, new);
    if small.tree_size == 0 {
        return Ok(None);
    }
    Ok(Some((small.tree_size, large.tree_size)))
}

/// Check `proof` (from the collector's `/proof/consistency`) joins `held` and `new`.
pub fn check_consistency(held: &LogCheckpoint, new: &LogCheckpoint, proof: &[Hash32]) -> Result<(), ForkError> {
    let Some((smaller, larger)) = proof_needed(held, new)? else { return Ok(()) };
    let (small, large) = ordered(held, new);
    let proof: Vec<tlog_tiles::Hash> = proof.iter().map(|h| tlog_tiles::Hash(*h)).collect();
    tlog_tiles::check_tree(
        &proof,
        large.tree_size,
        tlog_tiles::Hash(large.root_hash),
        small.tree_size,
        tlog_tiles::Hash(small.root_hash),
    )
    .map_err(|_| ForkError::NotAnExtension { smaller, larger })
}

fn ordered<'a>(a: &'a LogCheckpoint, b: &'a LogCheckpoint) -> (&'a LogCheckpoint, &'a LogCheckpoint) {
    if a.tree_size <= b.tree_size {
        (a, b)
    } else {
        (b, a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tlog_tiles::{stored_hash_count, stored_hashes, tree_hash, HashReader};

    /// A tree of `n` leaves kept as tlog_tiles' stored hashes (the collector's layout).
    struct Tree(Vec<tlog_tiles::Hash>);

    impl HashReader for Tree {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::tlog::Error> {
            Ok(indexes.iter().map(|&i| self.0[i as usize]).collect())
        }
    }

    fn tree(leaves: &[&[u8]]) -> Tree {
        let mut t = Tree(Vec::new());
        for (n, leaf) in leaves.iter().enumerate() {
            let new = stored_hashes(n as u64, leaf, &t).unwrap();
            t.0.extend(new);
        }
        assert_eq!(t.0.len() as u64, stored_hash_count(leaves.len() as u64));
        t
    }

    fn cp(t: &Tree, n: u64) -> LogCheckpoint {
        LogCheckpoint {
            origin: "c.test/log".into(),
            tree_size: n,
            root_hash: tree_hash(n, t).unwrap().0,
            collector_key: String::new(),
        }
    }

    fn proof(t: &Tree, small: u64, large: u64) -> Vec<Hash32> {
        tlog_tiles::prove_tree(large, small, t).unwrap().into_iter().map(|h| h.0).collect()
    }

    #[test]
    fn an_extension_is_accepted_either_way_round_and_a_rewrite_is_a_fork() {
        let leaves: Vec<Vec<u8>> = (0..9u8).map(|i| vec![i; 3]).collect();
        let refs: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
        let t = tree(&refs);
        let (held, new) = (cp(&t, 3), cp(&t, 9));
        assert_eq!(proof_needed(&held, &new), Ok(Some((3, 9))));
        assert_eq!(check_consistency(&held, &new, &proof(&t, 3, 9)), Ok(()));
        assert_eq!(check_consistency(&new, &held, &proof(&t, 3, 9)), Ok(()), "an older checkpoint is a prefix");
        assert_eq!(proof_needed(&held, &held), Ok(None));

        // Same key, another history: leaf 1 differs.
        let mut other = refs.clone();
        other[1] = b"rewritten";
        let f = tree(&other);
        assert_eq!(
            check_consistency(&held, &cp(&f, 9), &proof(&f, 3, 9)),
            Err(ForkError::NotAnExtension { smaller: 3, larger: 9 })
        );
        assert!(matches!(proof_needed(&held, &cp(&f, 3)), Err(ForkError::SameSizeOtherRoot { size: 3, .. })));
    }

    #[test]
    fn another_log_is_not_witnessed_as_this_one() {
        let t = tree(&[b"a", b"b"]);
        let mut other = cp(&t, 2);
        other.origin = "elsewhere/log".into();
        assert!(matches!(proof_needed(&cp(&t, 1), &other), Err(ForkError::OtherLog { .. })));
    }
}
