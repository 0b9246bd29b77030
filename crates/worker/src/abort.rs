//! Tasks that end with their owner.

/// Aborts a task when dropped, so a run that stops — however it stops — leaves nothing running.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
