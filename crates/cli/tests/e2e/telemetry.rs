//! Traces leave the process only for a configured OpenTelemetry collector.

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::mpsc,
};

use crate::support::{Install, holds_a_password, organization, pg_connection};

/// A minimal OTLP/HTTP collector: answers 200 to every request and reports each whole request
/// (request line, headers and body, lossily as text).
async fn collector() -> (u16, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = vec![0; 1 << 16];
                loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    request.extend_from_slice(&buf[..n]);
                    if n == 0 || complete(&request) {
                        break;
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&request).to_string());
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    (port, rx)
}

/// Whether `request` holds its headers and the whole body they announce.
fn complete(request: &[u8]) -> bool {
    let text = String::from_utf8_lossy(request);
    let Some(end) = text.find("\r\n\r\n") else { return false };
    let length = text[..end]
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    request.len() >= end + 4 + length
}

#[tokio::test]
async fn spans_are_exported_to_a_configured_collector_without_secrets() {
    let (port, mut requests) = collector().await;
    let mut install = Install::new().await;
    install.extra_env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), format!("http://127.0.0.1:{port}")),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ];
    let process = install.spawn("api").await;
    let (_, api) = organization(&install, &process, "traced").await;
    pg_connection(&api, "traced", "postgres").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut exported = String::new();
    while !exported.contains("/api/connections") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, requests.recv()).await {
            Ok(Some(request)) if request.starts_with("POST /v1/traces") => exported.push_str(&request),
            Ok(Some(_)) => continue,
            _ => panic!("no span of the connection request arrived at the collector"),
        }
    }
    assert!(!holds_a_password(&exported), "a password reached the trace exporter");
    drop(process);
    install.finish().await;
}
