//! Traces leave the process only for a configured OpenTelemetry collector.

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::mpsc,
};

use crate::support::Install;

/// A minimal OTLP/HTTP collector: answers 200 to every request and reports its request line.
async fn collector() -> (u16, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 1 << 16];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let _ = tx.send(request.lines().next().unwrap_or_default().to_owned());
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    (port, rx)
}

#[tokio::test]
async fn spans_are_exported_to_a_configured_collector() {
    let (port, mut requests) = collector().await;
    let mut install = Install::new().await;
    install.extra_env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), format!("http://127.0.0.1:{port}")),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ];
    let process = install.spawn("api").await;
    let (status, _) = install.partner(&process).send("GET", "/api/organizations", None).await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(15);
    let line = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, requests.recv()).await {
            Ok(Some(line)) if line.starts_with("POST /v1/traces") => break line,
            Ok(Some(_)) => continue,
            _ => panic!("no traces arrived at the collector"),
        }
    };
    assert!(line.contains("/v1/traces"), "{line}");
    drop(process);
    install.finish().await;
}
