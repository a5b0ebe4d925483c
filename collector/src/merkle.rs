//! Tree math of the collector's log, all from `tlog_tiles` (the Go `sumdb/tlog`
//! algorithms: RFC 6962 hashes kept in the "stored hash" layout, from which tiles,
//! roots and proofs are read). Nothing here hashes by hand.
//!
//! Leaves are our records' entry hashes, which already are RFC 6962 leaf hashes
//! (SHA-256(0x00 || record)), so they go in as record hashes.

use resetdesk::audit::Hash32;
use tlog_tiles::{Hash, HashReader, Tile};

/// Height of the C2SP tiles: 256 hashes per full tile.
pub const TILE_HEIGHT: u8 = 8;
/// Leaves per full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("tree: {0}")]
    Tlog(String),
    #[error("index {index} is not in the tree of size {size}")]
    OutOfRange { index: u64, size: u64 },
    #[error("bad tile path `{0}`: expected tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>]")]
    BadPath(String),
    #[error("tile `{path}` is beyond the tree of size {size}")]
    TileBeyondTree { path: String, size: u64 },
}

fn tlog(e: tlog_tiles::Error) -> TreeError {
    TreeError::Tlog(e.to_string())
}

/// The stored hashes to write when appending leaf `n` (index) with entry hash `leaf`:
/// `(stored index, hash)` pairs, starting at `stored_hash_index(0, n)`.
pub fn hashes_for_leaf<R: HashReader>(n: u64, leaf: Hash32, r: &R) -> Result<Vec<(u64, Hash32)>, TreeError> {
    let start = tlog_tiles::stored_hash_index(0, n);
    let hashes = tlog_tiles::stored_hashes_for_record_hash(n, Hash(leaf), r).map_err(tlog)?;
    Ok(hashes.into_iter().enumerate().map(|(i, h)| (start + i as u64, h.0)).collect())
}

/// The RFC 6962 root of the first `size` leaves.
pub fn root<R: HashReader>(size: u64, r: &R) -> Result<Hash32, TreeError> {
    tlog_tiles::tree_hash(size, r).map(|h| h.0).map_err(tlog)
}

/// RFC 6962 inclusion proof of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof<R: HashReader>(size: u64, index: u64, r: &R) -> Result<Vec<Hash32>, TreeError> {
    if index >= size {
        return Err(TreeError::OutOfRange { index, size });
    }
    tlog_tiles::prove_record(size, index, r).map(|p| p.into_iter().map(|h| h.0).collect()).map_err(tlog)
}

/// RFC 6962 consistency proof from the tree of `old` leaves to the tree of `new`.
pub fn consistency_proof<R: HashReader>(new: u64, old: u64, r: &R) -> Result<Vec<Hash32>, TreeError> {
    if old > new || old == 0 {
        return Err(TreeError::OutOfRange { index: old, size: new });
    }
    tlog_tiles::prove_tree(new, old, r).map(|p| p.into_iter().map(|h| h.0).collect()).map_err(tlog)
}

/// A C2SP tile request, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRequest {
    pub tile: Tile,
}

impl TileRequest {
    /// Parse a C2SP path (`tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`, N in
    /// `x`-prefixed 3-digit groups). The C2SP path is the Go `sumdb` path without its
    /// height component, so the crate's strict parser checks it once the height is put
    /// back.
    pub fn parse(path: &str) -> Result<Self, TreeError> {
        let bad = || TreeError::BadPath(path.to_owned());
        let rest = path.strip_prefix("tile/").ok_or_else(bad)?;
        let (level, tail) = rest.split_once('/').ok_or_else(bad)?;
        let level = if level == "entries" { "data" } else { level };
        if level == "data" && rest.starts_with("data/") {
            return Err(bad());
        }
        if tail.ends_with(".p/0") {
            return Err(bad());
        }
        let go = format!("tile/{TILE_HEIGHT}/{level}/{tail}");
        let tile = Tile::from_path(&go).map_err(|_| bad())?;
        if tile.level() > 63 / TILE_HEIGHT {
            return Err(bad());
        }
        Ok(Self { tile })
    }

    pub fn is_entries(&self) -> bool {
        self.tile.is_data()
    }

    /// Leaves the tile needs the tree to hold: (N * 256 + W) * 256^L.
    pub fn leaves_needed(&self) -> Option<u64> {
        let t = &self.tile;
        let width = u64::from(t.width());
        let per = 1u64.checked_shl(u32::from(t.level()) * u32::from(TILE_HEIGHT))?;
        t.level_index().checked_mul(TILE_WIDTH)?.checked_add(width)?.checked_mul(per)
    }

    /// The leaf indexes of an entries tile.
    pub fn leaf_range(&self) -> std::ops::Range<u64> {
        let start = self.tile.level_index().saturating_mul(TILE_WIDTH);
        start..start.saturating_add(u64::from(self.tile.width()))
    }

    /// A hash tile's bytes (width × 32) for a tree of `size` leaves.
    pub fn hash_tile<R: HashReader>(&self, size: u64, r: &R) -> Result<Vec<u8>, TreeError> {
        self.check_within(size)?;
        self.tile.read_data(r).map_err(tlog)
    }

    pub fn check_within(&self, size: u64) -> Result<(), TreeError> {
        match self.leaves_needed() {
            Some(n) if n <= size => Ok(()),
            _ => Err(TreeError::TileBeyondTree { path: self.path(), size }),
        }
    }

    /// The C2SP path of this tile.
    pub fn path(&self) -> String {
        let go = self.tile.path();
        // tile/8/<L or data>/<N...>
        let rest = go.splitn(3, '/').nth(2).unwrap_or_default();
        let rest = rest.strip_prefix("data/").map(|r| format!("entries/{r}")).unwrap_or_else(|| rest.to_owned());
        format!("tile/{rest}")
    }
}

/// An entry bundle: each entry with a big-endian u16 length prefix.
pub fn entry_bundle(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
    for e in entries {
        // Ingest refuses entries longer than u16::MAX (MAX_ENTRY_LEN).
        let len = u16::try_from(e.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    out
}
