//! Rate limits for the pages people open with a token (the approval page; later the
//! "this wasn't me" page): token buckets per client address and one over all clients,
//! so neither one client nor many can try tokens quickly. Sans-IO: the caller passes
//! the time. Over the limit the page answers 429 with `Retry-After`.
//!
//! The client address is the TCP peer's: a proxy in front of the collector makes all
//! clients one, and then the overall limit is what holds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Client addresses tracked at most; past it, addresses whose bucket is full again are
/// forgotten, and a new address is refused while none can be.
const MAX_CLIENTS: usize = 10_000;

/// One bucket's shape: `burst` requests at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed at once (at least 1).
    pub burst: u32,
    /// Requests per minute refilled (at least 1).
    pub per_minute: u32,
}

impl RateLimit {
    fn capacity(self) -> f64 {
        f64::from(self.burst.max(1))
    }

    fn per_second(self) -> f64 {
        f64::from(self.per_minute.max(1)) / 60.0
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(limit: RateLimit, now: Instant) -> Self {
        Self { tokens: limit.capacity(), at: now }
    }

    fn refill(&mut self, limit: RateLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.per_second()).min(limit.capacity());
        self.at = now;
    }

    /// How long until one request is allowed (zero: now).
    fn wait(&self, limit: RateLimit) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / limit.per_second())
        }
    }
}

/// Over the limit: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds for `Retry-After` (at least 1).
    pub fn retry_after_secs(self) -> u64 {
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }
}

struct Buckets {
    overall: Bucket,
    clients: HashMap<IpAddr, Bucket>,
}

/// Per-client and overall token buckets.
pub struct RateLimiter {
    per_client: RateLimit,
    overall: RateLimit,
    buckets: Mutex<Buckets>,
}

impl RateLimiter {
    pub fn new(per_client: RateLimit, overall: RateLimit, now: Instant) -> Self {
        let buckets = Buckets { overall: Bucket::full(overall, now), clients: HashMap::new() };
        Self { per_client, overall, buckets: Mutex::new(buckets) }
    }

    /// Count one request of `client` at `now`, or say how long it must wait. A refused
    /// request uses up nothing.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Limited> {
        let mut b = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Buckets { overall, clients } = &mut *b;
        overall.refill(self.overall, now);
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            let (limit, cap) = (self.per_client, self.per_client.capacity());
            clients.retain(|_, bucket| {
                bucket.refill(limit, now);
                bucket.tokens < cap
            });
            if clients.len() >= MAX_CLIENTS {
                return Err(Limited { retry_after: Duration::from_secs(60) });
            }
        }
        let mine = clients.entry(client).or_insert_with(|| Bucket::full(self.per_client, now));
        mine.refill(self.per_client, now);
        let wait = mine.wait(self.per_client).max(overall.wait(self.overall));
        if wait > Duration::ZERO {
            return Err(Limited { retry_after: wait });
        }
        mine.tokens -= 1.0;
        overall.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn a_client_gets_its_burst_then_waits_for_the_refill() {
        let t0 = Instant::now();
        let limiter =
            RateLimiter::new(RateLimit { burst: 3, per_minute: 6 }, RateLimit { burst: 100, per_minute: 600 }, t0);
        for _ in 0..3 {
            limiter.check(A, t0).unwrap();
        }
        let limited = limiter.check(A, t0).unwrap_err();
        assert_eq!(limited.retry_after_secs(), 10, "6 a minute: one every 10 s");
        assert!(limiter.check(B, t0).is_ok(), "another client has its own bucket");
        assert!(limiter.check(A, t0 + Duration::from_secs(9)).is_err());
        assert!(limiter.check(A, t0 + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn many_clients_together_meet_the_overall_limit() {
        let t0 = Instant::now();
        let limiter =
            RateLimiter::new(RateLimit { burst: 5, per_minute: 60 }, RateLimit { burst: 4, per_minute: 60 }, t0);
        for k in 0..4u8 {
            limiter.check(IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, k)), t0).unwrap();
        }
        let limited = limiter.check(IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 9)), t0).unwrap_err();
        assert_eq!(limited.retry_after_secs(), 1);
        assert!(limiter.check(A, t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn the_client_table_stays_bounded() {
        let t0 = Instant::now();
        let limiter = RateLimiter::new(
            RateLimit { burst: 2, per_minute: 1 },
            RateLimit { burst: u32::MAX, per_minute: u32::MAX },
            t0,
        );
        for k in 0..MAX_CLIENTS as u32 {
            limiter.check(IpAddr::V6(std::net::Ipv6Addr::from(u128::from(k))), t0).unwrap();
        }
        assert!(limiter.check(A, t0).is_err(), "no room while every tracked client is still counted");
        // Two minutes later every bucket is full again: they are forgotten to make room.
        assert!(limiter.check(A, t0 + Duration::from_secs(120)).is_ok());
        assert_eq!(limiter.buckets.lock().unwrap().clients.len(), 1);
    }
}
