//! Rate budgets, one per credential: every sync, worker task and API call using the same
//! account draws from the same bucket, so together they stay under the vendor's limit, and a
//! `Retry-After` from the vendor pauses all of them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

/// The budgets of this process, keyed by credential.
#[derive(Debug, Default)]
pub struct Budgets {
    buckets: Mutex<HashMap<String, Arc<Budget>>>,
}

impl Budgets {
    /// The budget of `credential` (a key naming the account, never the secret itself), created
    /// with `per_second` requests and bursts of `burst` on first use.
    pub fn get(&self, credential: &str, per_second: f64, burst: u32) -> Arc<Budget> {
        let mut buckets = self.buckets.lock().expect("budgets lock");
        buckets.entry(credential.to_owned()).or_insert_with(|| Arc::new(Budget::new(per_second, burst))).clone()
    }
}

/// A token bucket.
#[derive(Debug)]
pub struct Budget {
    per_second: f64,
    burst: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    refilled: Instant,
    paused_until: Option<Instant>,
}

impl Budget {
    fn new(per_second: f64, burst: u32) -> Self {
        let burst = burst.max(1) as f64;
        let state = BucketState { tokens: burst, refilled: Instant::now(), paused_until: None };
        Self { per_second: per_second.max(f64::MIN_POSITIVE), burst, state: Mutex::new(state) }
    }

    /// Waits until a request may go.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut s = self.state.lock().expect("budget lock");
                let now = Instant::now();
                match s.paused_until.filter(|until| *until > now) {
                    Some(until) => until - now,
                    None => {
                        let elapsed = now.duration_since(s.refilled).as_secs_f64();
                        s.tokens = (s.tokens + elapsed * self.per_second).min(self.burst);
                        s.refilled = now;
                        if s.tokens >= 1.0 {
                            s.tokens -= 1.0;
                            return;
                        }
                        Duration::from_secs_f64((1.0 - s.tokens) / self.per_second)
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Holds every request back for `delay` (the vendor answered with a rate limit).
    pub fn pause(&self, delay: Duration) {
        let mut s = self.state.lock().expect("budget lock");
        let until = Instant::now() + delay;
        s.paused_until = Some(s.paused_until.map_or(until, |current| current.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_credential_shares_one_bucket() {
        let budgets = Budgets::default();
        let (a, b) = (budgets.get("acct-1", 10.0, 2), budgets.get("acct-1", 10.0, 2));
        let start = Instant::now();
        for _ in 0..4 {
            a.acquire().await;
            b.acquire().await;
        }
        // 8 requests, 2 from the burst, 6 at 10 per second.
        assert_eq!(start.elapsed().as_millis(), 600);
        let other = budgets.get("acct-2", 10.0, 2);
        let start = Instant::now();
        other.acquire().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "another credential has its own bucket");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_everyone_back() {
        let budget = Budgets::default().get("acct", 100.0, 10);
        budget.pause(Duration::from_secs(3));
        let start = Instant::now();
        budget.acquire().await;
        assert_eq!(start.elapsed().as_secs(), 3);
    }
}
