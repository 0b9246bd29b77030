//! The framing of PostgreSQL's binary `COPY` format around record tuples.

use bytes::{BufMut, Bytes, BytesMut};

/// `PGCOPY\n\xff\r\n\0`, then flags and header-extension length (both zero).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const TRAILER: &[u8] = &[0xff, 0xff];

/// Length of the stream header, which the reader skips.
pub(super) const HEADER_LEN: usize = HEADER.len();

/// Wraps encoded tuples into a complete binary `COPY` stream.
pub(super) fn frame(tuples: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER.len() + tuples.len() + TRAILER.len());
    out.put_slice(HEADER);
    out.put_slice(tuples);
    out.put_slice(TRAILER);
    out.freeze()
}

/// Whether `bytes` starts with the binary `COPY` trailer (a tuple count of -1).
pub(super) fn is_trailer(bytes: &[u8]) -> bool {
    bytes.starts_with(TRAILER)
}

#[cfg(test)]
mod tests {
    #[test]
    fn frames_tuples() {
        let framed = super::frame(&[0, 0]);
        assert_eq!(&framed[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(framed.len(), super::HEADER_LEN + 4);
        assert!(super::is_trailer(&framed[super::HEADER_LEN + 2..]));
    }
}
