//! A minimal rate limit for the "this wasn't me" pages: fixed one-minute windows,
//! one count for all requests and one per key (a token's hash), kept in memory per
//! instance. The pages need no login, so this bounds what a flood of guesses or
//! reloads can cost; the token's 128 bits, not the limit, make guessing hopeless.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Keys remembered per window at most (beyond it, only the global count applies).
const MAX_KEYS: usize = 10_000;

/// Requests allowed per window, overall and per key.
pub struct RateLimit {
    overall: u32,
    per_key: u32,
    state: Mutex<Window>,
}

struct Window {
    started: Instant,
    overall: u32,
    keys: HashMap<String, u32>,
}

impl RateLimit {
    pub fn per_minute(overall: u32) -> Self {
        let overall = overall.max(1);
        Self {
            overall,
            per_key: (overall / 10).max(3),
            state: Mutex::new(Window { started: Instant::now(), overall: 0, keys: HashMap::new() }),
        }
    }

    /// Count one request for `key`; `false` when over either limit.
    pub fn allow(&self, key: &str) -> bool {
        // The counts are plain numbers: a panic elsewhere leaves them usable.
        let mut w = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if w.started.elapsed() >= WINDOW {
            *w = Window { started: Instant::now(), overall: 0, keys: HashMap::new() };
        }
        if w.overall >= self.overall {
            return false;
        }
        w.overall += 1;
        if !w.keys.contains_key(key) && w.keys.len() >= MAX_KEYS {
            return true;
        }
        let n = w.keys.entry(key.to_owned()).or_insert(0);
        *n += 1;
        *n <= self.per_key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_and_the_whole_are_each_limited() {
        let r = RateLimit::per_minute(40);
        assert!((0..4).all(|_| r.allow("a")));
        assert!(!r.allow("a"), "a fifth request for one key in the minute is refused");
        assert!(r.allow("b"));
        let allowed = (0..100).filter(|k| r.allow(&format!("k{k}"))).count();
        assert_eq!(allowed, 40 - 6, "the overall limit holds across keys");
    }
}
