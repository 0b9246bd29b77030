//! The JSON error object for protocol errors. actix-http's HTTP/1 dispatcher answers some errors
//! itself, before any service sees a request, with an empty body: 400 for a malformed request
//! head, 431 for one too large or with too many headers, 408 when the head does not arrive in
//! time (500 for an internal failure). It writes such a response last on the connection and then
//! closes it. [`JsonProtocolErrors`] wraps the connection and writes, in place of a response head
//! that has status ≥ 400 and `content-length: 0` and ends the written buffer, the same status with
//! the JSON error object as body. The app never writes such a head: its errors carry a JSON body.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use actix_web::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::ApiError;

/// Longest response head the dispatcher writes for an error.
const MAX_ERROR_HEAD: usize = 512;

/// A connection whose write side turns the dispatcher's empty error responses into the JSON error
/// object; reads pass through.
pub struct JsonProtocolErrors<T> {
    io: T,
    /// The error response being written instead of the caller's bytes.
    replacing: Option<Replacement>,
}

/// A response written in place of `original` bytes at the start of the caller's buffer.
struct Replacement {
    original: usize,
    bytes: Vec<u8>,
    written: usize,
}

impl<T> JsonProtocolErrors<T> {
    pub fn new(io: T) -> Self {
        Self { io, replacing: None }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonProtocolErrors<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonProtocolErrors<T> {
    /// Bytes before an error head are written as they are (the caller then offers the head
    /// again, alone). The head is reported written only once its replacement is written in full,
    /// so the caller keeps offering it, and polling, until then: nothing is left to flush.
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let replacement = match &mut this.replacing {
            Some(replacement) => replacement,
            replacing @ None => match error_head(buf) {
                Some(0) => replacing.insert(Replacement::of(buf)),
                Some(start) => return Pin::new(&mut this.io).poll_write(cx, &buf[..start]),
                None => return Pin::new(&mut this.io).poll_write(cx, buf),
            },
        };
        while replacement.written < replacement.bytes.len() {
            match ready!(Pin::new(&mut this.io).poll_write(cx, &replacement.bytes[replacement.written..]))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => replacement.written += n,
            }
        }
        let original = replacement.original;
        this.replacing = None;
        Poll::Ready(Ok(original))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl Replacement {
    /// The JSON error response for `head`, a whole error head (see [`error_head`]).
    fn of(head: &[u8]) -> Self {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Response::new(&mut headers);
        parsed.parse(head).expect("error_head parsed it");
        let status = parsed.code.and_then(|code| StatusCode::from_u16(code).ok()).expect("error_head checked it");
        let body = ApiError::new(status, message(status)).to_json().to_string();
        let mut bytes = format!(
            "HTTP/1.{} {} {}\r\n",
            parsed.version.unwrap_or(1),
            status.as_str(),
            status.canonical_reason().unwrap_or_default()
        )
        .into_bytes();
        let replaced = ["content-length", "content-type", "connection"];
        for header in parsed.headers.iter().filter(|h| !replaced.iter().any(|r| h.name.eq_ignore_ascii_case(r))) {
            bytes.extend_from_slice(header.name.as_bytes());
            bytes.extend_from_slice(b": ");
            bytes.extend_from_slice(header.value);
            bytes.extend_from_slice(b"\r\n");
        }
        let framing =
            format!("content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
        bytes.extend_from_slice(framing.as_bytes());
        bytes.extend_from_slice(body.as_bytes());
        Self { original: head.len(), bytes, written: 0 }
    }
}

/// Where an error head ending `buf` starts: a response head with status ≥ 400 and
/// `content-length: 0` whose last byte is the last byte of `buf`.
fn error_head(buf: &[u8]) -> Option<usize> {
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let window = buf.len().saturating_sub(MAX_ERROR_HEAD);
    let start = window + buf[window..].windows(7).rposition(|w| w == b"HTTP/1.")?;
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut head = httparse::Response::new(&mut headers);
    let complete = matches!(head.parse(&buf[start..]), Ok(httparse::Status::Complete(len)) if start + len == buf.len());
    let empty = head.headers.iter().any(|h| h.name.eq_ignore_ascii_case("content-length") && h.value == b"0");
    (complete && empty && head.code.is_some_and(|code| code >= 400)).then_some(start)
}

/// What a protocol error with `status` means.
fn message(status: StatusCode) -> String {
    match status {
        StatusCode::BAD_REQUEST => "the request is not valid HTTP/1.1".into(),
        StatusCode::REQUEST_TIMEOUT => "the request head did not arrive in time".into(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "the request head is too large or has too many headers".into(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value as Json;
    use tokio::io::AsyncWriteExt;

    use super::*;

    const DATE: &str = "date: Thu, 01 Jan 2026 00:00:00 GMT\r\n";

    fn dispatcher_head(status: &str) -> String {
        format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n{DATE}\r\n")
    }

    /// What the peer reads when `writes` are written through the wrapper.
    async fn written(writes: &[&[u8]]) -> Vec<u8> {
        let mut io = JsonProtocolErrors::new(Vec::new());
        for bytes in writes {
            io.write_all(bytes).await.expect("write");
        }
        io.flush().await.expect("flush");
        io.io
    }

    fn split(response: &[u8]) -> (String, Json) {
        let text = String::from_utf8(response.to_vec()).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        (format!("{head}\r\n"), serde_json::from_str(body).expect("a JSON body"))
    }

    #[tokio::test]
    async fn dispatcher_errors_become_the_json_object() {
        for (status, code, key) in [
            ("400 Bad Request", 400, "bad_request"),
            ("408 Request Timeout", 408, "request_timeout"),
            ("431 Request Header Fields Too Large", 431, "request_header_fields_too_large"),
        ] {
            let (head, body) = split(&written(&[dispatcher_head(status).as_bytes()]).await);
            assert!(head.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{head}");
            assert!(head.contains("content-type: application/json\r\n") && head.contains("connection: close\r\n"));
            assert!(head.contains(DATE.trim_end()), "other headers are kept: {head}");
            assert!(head.contains(&format!("content-length: {}", body.to_string().len())), "{head}");
            assert_eq!((body["status"].as_u64(), body["key"].as_str()), (Some(code), Some(key)));
            assert!(body["message"].is_string() && body["metadata"].is_object(), "{body}");
        }
    }

    #[tokio::test]
    async fn responses_before_the_error_head_are_kept() {
        let first = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        let error = dispatcher_head("400 Bad Request");
        let response = written(&[&[&first[..], error.as_bytes()].concat()]).await;
        assert!(response.starts_with(first));
        let (head, body) = split(&response[first.len()..]);
        assert!(head.starts_with("HTTP/1.1 400 Bad Request"), "{head}");
        assert_eq!(body["status"], 400);
    }

    #[tokio::test]
    async fn other_responses_pass_through() {
        let responses: [&[u8]; 4] = [
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}",
            b"HTTP/1.1 302 Found\r\nlocation: /\r\ncontent-length: 0\r\n\r\n",
            // A HEAD answer: the head of a JSON error, without its body.
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 80\r\n\r\n",
            b"partial body ending \r\n\r\n",
        ];
        for response in responses {
            assert_eq!(written(&[response]).await, response);
        }
    }
}
