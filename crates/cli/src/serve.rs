//! `syncline serve`: start the chosen roles and drain them on SIGTERM.

use std::{net::TcpListener, time::Duration};

use anyhow::{Context, bail};
use syncline_core::{Settings, db, executions, payload::PayloadStore, queue, telemetry};
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Debug, Default, Clone, Copy)]
struct Roles {
    api: bool,
    worker: bool,
    scheduler: bool,
}

fn parse_roles(raw: Option<Vec<String>>) -> anyhow::Result<Roles> {
    let Some(names) = raw.filter(|r| r.iter().any(|n| !n.trim().is_empty())) else {
        return Ok(Roles { api: true, worker: true, scheduler: true });
    };
    let mut roles = Roles::default();
    for name in names.iter().map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty()) {
        match name.as_str() {
            "api" | "web" => roles.api = true,
            "worker" | "sync" => roles.worker = true,
            "scheduler" => roles.scheduler = true,
            other => bail!(
                "configuration error: ROLE has unknown role {other:?} (expected a comma list of api, worker, scheduler)"
            ),
        }
    }
    Ok(roles)
}

/// Reads and validates the settings (the error is the one-line configuration message) and
/// starts logging and tracing.
fn settings() -> anyhow::Result<(Settings, telemetry::Telemetry)> {
    let settings = Settings::from_env()?;
    let telemetry = telemetry::init(settings.log_level, "syncline");
    for warning in &settings.warnings {
        warn!("{warning}");
    }
    Ok((settings, telemetry))
}

/// Resolves on SIGTERM or Ctrl-C.
async fn termination() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler installs");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received, draining"),
        _ = tokio::signal::ctrl_c() => info!("interrupt received, draining"),
    }
}

pub async fn run(role: Option<Vec<String>>) -> anyhow::Result<()> {
    let roles = parse_roles(role)?;
    let (settings, telemetry) = settings()?;
    if settings.reference_connectors {
        syncline_connectors::enable_reference_connectors();
        warn!("REFERENCE_CONNECTORS is set: the in-memory reference connector is offered (not for production)");
    }
    // Each role has a pool of its own, so a burst of API requests cannot take the connections
    // workers need to keep their leases, nor the other way round.
    let pools = settings.pools;
    let pool = |size| db::pool(&settings.database_url, size, pools.wait);
    let applied = db::migrate(&pool(1)?).await.context("cannot migrate the database (is DATABASE_URL reachable?)")?;
    if !applied.is_empty() {
        info!(migrations = ?applied, "database migrated");
    }
    let (queues, redis) =
        queue::connect(&settings.redis_url, &settings.redis_key_prefix, settings.worker_heartbeat, executions::KINDS)
            .await
            .context("cannot connect to Redis (is REDIS_URL reachable?)")?;
    let store = PayloadStore::open(&settings.job_payload_path)?;
    let record_logs = match &settings.execution_log_url {
        Some(url) => PayloadStore::open(url)?,
        None => store.clone(),
    };
    let secrets = settings.secret_box();
    let connector = syncline_core::connector::Context::new(std::sync::Arc::new(settings.egress()), settings.deadlines);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    if roles.api {
        let listener = TcpListener::bind(("0.0.0.0", settings.port))
            .with_context(|| format!("cannot listen on port {}", settings.port))?;
        let limiter = syncline_api::limits::AuthLimiter::connect(&settings.redis_url, &settings.redis_key_prefix)
            .await
            .context("cannot connect to Redis (is REDIS_URL reachable?)")?;
        let api_pool = pool(pools.api)?;
        let events = syncline_core::events::store::EventWriter::start(
            api_pool.clone(),
            syncline_core::queue::worker_name("events"),
        );
        let state = syncline_api::AppState {
            settings: settings.clone(),
            pool: api_pool,
            connector: connector.clone(),
            queues: queues.clone(),
            redis,
            secrets: secrets.clone(),
            store: store.clone(),
            record_logs: record_logs.clone(),
            limiter,
            events,
            write_keys: Default::default(),
        };
        let server = syncline_api::server(state, listener)?;
        let handle = server.handle();
        let stop = stopped();
        tokio::spawn(async move {
            stop.await;
            handle.stop(true).await;
        });
        info!(port = settings.port, url = %settings.public_url, "api listening");
        tasks.spawn(async move { server.await.context("api server") });
    }
    if roles.worker {
        let services = syncline_worker::Services {
            pool: pool(pools.worker)?,
            store,
            record_logs,
            secrets,
            queues: queues.clone(),
            connector,
            slots: std::sync::Arc::new(syncline_worker::OrganizationSlots::new(settings.worker_organization_slots)),
            heartbeat: settings.worker_heartbeat,
            batch_rows: syncline_worker::BATCH_ROWS,
            batch_bytes: syncline_worker::BATCH_BYTES,
            verify_records: settings.verify_records,
            partition_rows: settings.bulk_partition_rows,
            max_retained_wal_mb: settings.cdc_max_retained_wal_mb,
            event_delivery: settings.event_delivery,
            slack: settings.slack.clone(),
            smtp: settings.smtp.clone(),
            long_sync: settings.longsync_threshold,
            public_url: settings.public_url.clone(),
            partition_commits: db::listen(&settings.database_url, syncline_worker::PARTITION_COMMITS),
        };
        tasks.spawn(syncline_worker::run(services, settings.worker_concurrency, stopped()));
    }
    if roles.scheduler {
        let (pool, queues) = (pool(pools.scheduler)?, queues.clone());
        let stop = stopped();
        tasks.spawn(async move {
            syncline_api::scheduler::run(pool, queues, Duration::from_secs(1), stop).await;
            Ok(())
        });
    }
    tokio::select! {
        _ = termination() => {}
        Some(result) = tasks.join_next() => {
            result.context("a role panicked")??;
            warn!("a role stopped on its own; shutting down");
        }
    }
    stop_tx.send_replace(true);
    let drain = async {
        while let Some(result) = tasks.join_next().await {
            result.context("a role panicked")??;
        }
        anyhow::Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(30), drain).await {
        Ok(result) => result?,
        Err(_) => warn!(
            "roles did not drain within 30 s; exiting anyway (unfinished executions are taken over by other workers)"
        ),
    }
    info!("stopped");
    telemetry.shutdown();
    Ok(())
}
