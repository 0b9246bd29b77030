//! Traces leave the process only for a configured OpenTelemetry collector.

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::mpsc,
};

use crate::support::{Install, Scene, holds_a_password, organization, pg_connection, run_sync, users_sync};

/// A minimal OTLP/HTTP collector: answers 200 to every request and reports each whole request
/// (request line, headers and body).
async fn collector() -> (u16, mpsc::UnboundedReceiver<Vec<u8>>) {
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
                let _ = tx.send(request);
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
            Ok(Some(request)) if request.starts_with(b"POST /v1/traces") => {
                exported.push_str(&String::from_utf8_lossy(&request))
            }
            Ok(Some(_)) => continue,
            _ => panic!("no span of the connection request arrived at the collector"),
        }
    }
    assert!(!holds_a_password(&exported), "a password reached the trace exporter");
    drop(process);
    install.finish().await;
}

/// The trace ids of the exported spans called `name`. An OTLP span starts with its trace id
/// (field 1, 16 bytes) and span id (field 2, 8 bytes); a parent span id and flags may follow
/// before the name (field 5): the trace id is the nearest such start before the name.
fn trace_ids(exported: &[u8], name: &str) -> Vec<[u8; 16]> {
    let mut needle = vec![0x2a, name.len() as u8];
    needle.extend_from_slice(name.as_bytes());
    let starts_span = |i: usize| {
        exported.get(i..i + 2) == Some(&[0x0a, 0x10][..]) && exported.get(i + 18..i + 20) == Some(&[0x12, 0x08][..])
    };
    (0..exported.len().saturating_sub(needle.len()))
        .filter(|at| exported[*at..].starts_with(&needle))
        .filter_map(|at| (at.saturating_sub(48)..at.saturating_sub(26)).rev().find(|i| starts_span(*i)))
        .map(|start| exported[start + 2..start + 18].try_into().expect("16 bytes"))
        .collect()
}

#[tokio::test]
async fn a_run_continues_the_trace_of_the_request_that_started_it() {
    let (port, mut requests) = collector().await;
    let mut install = Install::new().await;
    install.extra_env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), format!("http://127.0.0.1:{port}")),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ];
    let ddl = "create table users (id bigint primary key, email text);
               insert into users select g, 'u' || g || '@example.com' from generate_series(1, 100) g";
    let scene = Scene::with(install, "api,worker", "traced-run", ddl).await;
    let (_, sync_id) = users_sync(&scene.api, &scene.conn, &scene.conn).await;
    let done = run_sync(&scene.api, &sync_id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut exported = Vec::new();
    loop {
        let execution = trace_ids(&exported, "execution");
        let stages = [trace_ids(&exported, "extract"), trace_ids(&exported, "load"), trace_ids(&exported, "commit")];
        if let Some(trace) = execution.first()
            && stages.iter().all(|ids| ids.contains(trace))
        {
            assert!(trace_ids(&exported, "request").contains(trace), "the run's trace is a request's trace");
            let text = String::from_utf8_lossy(&exported);
            assert!(text.contains("records_read") && text.contains("records_written"), "stages carry row counts");
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, requests.recv()).await {
            Ok(Some(request)) if request.starts_with(b"POST /v1/traces") => exported.extend_from_slice(&request),
            Ok(Some(_)) => continue,
            _ => {
                let found: Vec<(&str, usize)> = ["request", "execution", "extract", "load", "commit"]
                    .into_iter()
                    .map(|name| (name, trace_ids(&exported, name).len()))
                    .collect();
                panic!("the execution, extract, load and commit spans of one trace did not all arrive: {found:?}")
            }
        }
    }
    scene.finish().await;
}
