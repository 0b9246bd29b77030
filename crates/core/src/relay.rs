//! Best-effort fan-out of messages from a subscription (PostgreSQL `LISTEN`, Redis pub/sub) to
//! the tasks of a process: what arrives while the subscription is away is missed, so relayed
//! messages only wake pollers early, never carry work.

use std::time::Duration;

use tokio::sync::broadcast::{self, Sender};

/// Runs `subscribe` (which forwards messages to the sender until its connection ends) again a
/// second after each end, for the life of the process; returns the sender to subscribe to.
pub(crate) fn relay_forever<F, E>(
    what: &'static str,
    subscribe: impl Fn(Sender<String>) -> F + Send + 'static,
) -> Sender<String>
where
    F: Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    let (relay, _) = broadcast::channel(256);
    let sender = relay.clone();
    tokio::spawn(async move {
        loop {
            if let Err(e) = subscribe(relay.clone()).await {
                tracing::debug!(what, error = %e, "subscription ended");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    sender
}
