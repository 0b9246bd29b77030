//! Every answer the server makes itself is the JSON error object: protocol errors written before
//! any route runs, stalled request bodies, CORS refusals and wrong methods on known paths.

use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

use crate::support::{Install, Process};

/// One HTTP/1.1 response read off a raw connection.
struct Response {
    status: u16,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Asserts that this is the JSON error object with `status` and `key`.
    fn assert_error(&self, status: u16, key: &str) {
        let body: Json = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)));
        assert_error(self.status, self.header("content-type"), &body, status, key);
    }
}

fn assert_error(status: u16, content_type: Option<&str>, body: &Json, expected: u16, key: &str) {
    assert_eq!(status, expected, "status of {body}");
    assert_eq!(content_type, Some("application/json"), "{expected}: content type");
    assert_eq!(body["status"], expected, "the body repeats the status: {body}");
    assert_eq!(body["key"], key, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "a message: {body}");
    assert!(body["metadata"].is_object(), "metadata is an object: {body}");
}

/// Reads one response; a response to `HEAD` has no body.
async fn read_response(reader: &mut BufReader<TcpStream>, head: bool) -> Response {
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("status line");
    let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("header line");
        let Some((name, value)) = line.trim_end().split_once(':') else { break };
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut response = Response { status, headers, body: Vec::new() };
    let length = response.header("content-length").map_or(0, |v| v.parse().expect("content-length"));
    if !head {
        response.body.resize(length, 0);
        reader.read_exact(&mut response.body).await.expect("body");
    }
    response
}

/// Sends `request` on a new connection and reads the one response; the server may stop reading
/// before the request ends.
async fn exchange(process: &Process, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", process.port)).await.expect("connect");
    let _ = stream.write_all(request).await;
    read_response(&mut BufReader::new(stream), false).await
}

/// A request head with `headers`, unfinished when `end` is false.
fn head(request_line: &str, headers: &[String], end: bool) -> Vec<u8> {
    let mut head = format!("{request_line}\r\nHost: 127.0.0.1\r\n");
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    if end {
        head.push_str("\r\n");
    }
    head.into_bytes()
}

#[tokio::test]
async fn protocol_errors_answer_the_json_error_object() {
    let install = Install::new().await;
    let process = install.spawn("api").await;

    let malformed = exchange(&process, b"GET /status.txt HTTX/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    malformed.assert_error(400, "bad_request");
    assert_eq!(malformed.header("connection"), Some("close"));

    let many: Vec<String> = (0..200).map(|i| format!("X-Header-{i}: {i}")).collect();
    exchange(&process, &head("GET /status.txt HTTP/1.1", &many, true))
        .await
        .assert_error(431, "request_header_fields_too_large");

    let huge = [format!("X-Huge: {}", "a".repeat(200 * 1024))];
    exchange(&process, &head("GET /status.txt HTTP/1.1", &huge, true))
        .await
        .assert_error(431, "request_header_fields_too_large");

    // A head that never ends (5 s), and a body that stops after 10 of its 100 bytes, at once.
    let unfinished_head = async {
        let started = Instant::now();
        let response = exchange(&process, &head("GET /status.txt HTTP/1.1", &[], false)).await;
        (response, started.elapsed())
    };
    let stalled_body = async {
        let auth = [format!("Authorization: Bearer {}", install.key), "Content-Length: 100".into()];
        let mut request = head("POST /api/organizations HTTP/1.1", &auth, true);
        request.extend_from_slice(br#"{"name": ""#);
        let started = Instant::now();
        let response = exchange(&process, &request).await;
        (response, started.elapsed())
    };
    let ((head_answer, head_wait), (body_answer, body_wait)) = tokio::join!(unfinished_head, stalled_body);
    head_answer.assert_error(408, "request_timeout");
    assert!(head_wait >= Duration::from_secs(4), "the head had 5 s: answered after {head_wait:?}");
    body_answer.assert_error(408, "request_timeout");
    assert!(body_wait >= Duration::from_secs(9), "the body had 10 s: answered after {body_wait:?}");
    assert_eq!(body_answer.header("connection"), Some("close"));

    drop(process);
    install.finish().await;
}

#[tokio::test]
async fn app_answers_are_json_and_connections_stay_usable() {
    let install = Install::new().await;
    let process = install.spawn("api").await;
    let http = reqwest::Client::new();

    // A CORS preflight from an origin that is not allowed.
    let answer = http
        .request(reqwest::Method::OPTIONS, format!("{}/api/connections", process.base()))
        .header("Origin", "http://evil.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .expect("preflight");
    let (status, content_type) = (answer.status().as_u16(), answer.headers().get("content-type").cloned());
    let body: Json = answer.json().await.expect("a JSON body");
    assert_error(status, content_type.as_ref().and_then(|v| v.to_str().ok()), &body, 400, "bad_request");

    // A wrong method on a known path: 405 naming the methods the path has.
    for (method, path, allow) in [("PATCH", "/api/connections", "GET, POST"), ("DELETE", "/status.txt", "GET")] {
        let answer = http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                format!("{}{path}", process.base()),
            )
            .header("Authorization", format!("Bearer {}", install.key))
            .send()
            .await
            .expect("request");
        let status = answer.status().as_u16();
        let header = |name: &str| answer.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (content_type, allowed) = (header("content-type"), header("allow"));
        let body: Json = answer.json().await.expect("a JSON body");
        assert_error(status, content_type.as_deref(), &body, 405, "method_not_allowed");
        assert_eq!(allowed.as_deref(), Some(allow), "{method} {path}");
    }

    // Requests keep sharing one connection; a 404 stays a JSON 404 and a HEAD gets no body.
    let stream = TcpStream::connect(("127.0.0.1", process.port)).await.expect("connect");
    let mut reader = BufReader::new(stream);
    for (request, head_only) in [
        ("GET /status.txt", false),
        ("GET /api/nothing-here", false),
        ("HEAD /api/nothing-here", true),
        ("GET /status.txt", false),
    ] {
        reader.get_mut().write_all(&head(&format!("{request} HTTP/1.1"), &[], true)).await.expect("send");
        let response = read_response(&mut reader, head_only).await;
        assert_ne!(response.header("connection"), Some("close"), "{request}: the connection stays open");
        match request {
            "GET /status.txt" => assert_eq!(response.status, 200, "{request}"),
            "GET /api/nothing-here" => response.assert_error(404, "not_found"),
            _ => {
                assert_eq!(response.status, 404, "{request}");
                assert_ne!(response.header("content-length"), Some("0"), "{request}: the length of the 404's body");
            }
        }
    }

    drop(process);
    install.finish().await;
}
