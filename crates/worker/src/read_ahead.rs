//! Reading ahead of a consumer, so a source keeps sending while its batches are written.

use futures::{StreamExt, stream::BoxStream};

use crate::abort::AbortOnDrop;

/// Drives `events` in a task of its own, up to `depth` items ahead of the returned stream's
/// consumer: the source and the destination then work at the same time instead of taking
/// turns. Dropping the returned stream stops the task (and with it the read).
pub fn read_ahead<T: Send + 'static>(mut events: BoxStream<'static, T>, depth: usize) -> BoxStream<'static, T> {
    let (sender, receiver) = tokio::sync::mpsc::channel(depth.max(1));
    let task = tokio::spawn(async move {
        while let Some(item) = events.next().await {
            if sender.send(item).await.is_err() {
                break;
            }
        }
    });
    let guard = AbortOnDrop(task.abort_handle());
    futures::stream::unfold((receiver, guard), |(mut receiver, guard)| async move {
        receiver.recv().await.map(|item| (item, (receiver, guard)))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn yields_everything_in_order_and_stops_the_reader_when_dropped() {
        let items: Vec<u32> = read_ahead(futures::stream::iter(0..100).boxed(), 2).collect().await;
        assert_eq!(items, (0..100).collect::<Vec<_>>());

        let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
        let endless = futures::stream::unfold(dropped_tx, |tx| async move { Some((1, tx)) }).boxed();
        let mut ahead = read_ahead(endless, 1);
        assert_eq!(ahead.next().await, Some(1));
        drop(ahead);
        // The task owned the sender of `dropped`: aborting it drops the sender.
        assert!(dropped_rx.await.is_err(), "the reading task stopped");
    }
}
