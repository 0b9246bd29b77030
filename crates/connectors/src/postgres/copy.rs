//! The framing of PostgreSQL's binary `COPY` format around record tuples.

/// `PGCOPY\n\xff\r\n\0`, then flags and header-extension length (both zero).
pub(super) const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// A tuple count of -1 ends the data.
pub(super) const TRAILER: &[u8] = &[0xff, 0xff];

/// Length of the stream header, which the reader skips.
pub(super) const HEADER_LEN: usize = HEADER.len();

/// Whether `bytes` starts with the binary `COPY` trailer.
pub(super) fn is_trailer(bytes: &[u8]) -> bool {
    bytes.starts_with(TRAILER)
}

/// Runs `statement` (a `COPY … FROM STDIN (FORMAT binary)`) with `tuples` as its data.
pub(super) async fn copy_in(
    client: &tokio_postgres::Client,
    statement: &str,
    tuples: bytes::Bytes,
) -> Result<(), tokio_postgres::Error> {
    use futures::SinkExt;
    let sink = client.copy_in::<_, bytes::Bytes>(statement).await?;
    futures::pin_mut!(sink);
    for part in [bytes::Bytes::from_static(HEADER), tuples, bytes::Bytes::from_static(TRAILER)] {
        sink.feed(part).await?;
    }
    sink.finish().await?;
    Ok(())
}
