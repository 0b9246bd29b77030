//! Work every worker does in rounds over claimed rows (Slack notifications, sync error emails):
//! a round every so often until the worker stops, and the growing wait before a row that
//! failed is tried again.

use std::time::Duration;

use tokio::sync::watch;

/// Runs `round` every `period` until `stop` turns true. A round in progress then is cut short:
/// its claims expire and their rows are tried again.
pub(crate) async fn every<F: Future<Output = ()>>(
    period: Duration,
    mut stop: watch::Receiver<bool>,
    mut round: impl FnMut() -> F,
) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            _ = async {
                interval.tick().await;
                round().await;
            } => {}
        }
    }
}

/// Seconds a row waits after its `attempts`th failed try: 2^attempts, at most `claim` (the
/// length of a claim).
pub(crate) fn retry_wait(attempts: i32, claim: f64) -> f64 {
    f64::from(2_i32.saturating_pow(attempts.max(0) as u32)).min(claim)
}
