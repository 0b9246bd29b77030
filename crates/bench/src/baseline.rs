//! The physical-limit baselines, run with plain clients the way an engineer would by hand.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::{harness::Databases, source::Source};

pub struct Baselines<'a> {
    pub dbs: &'a Databases,
    pub source: &'a Source,
}

/// Runs a shell pipeline and times it.
async fn timed_shell(script: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = tokio::process::Command::new("sh").arg("-c").arg(script).status().await.context("run sh")?;
    ensure!(status.success(), "baseline failed: {script}");
    Ok(started.elapsed())
}

impl Baselines<'_> {
    /// The model piped into `stage`, then upserted into an emptied `users` (or, with
    /// `changed_run`, only the rows that run changes, into the full table).
    pub async fn copy_upsert(&self, changed_run: Option<i64>) -> anyhow::Result<Duration> {
        let dst = &self.dbs.baseline_url;
        let filter = changed_run
            .map(|run| format!(" where id % 100 = {}", Databases::changed_remainder(run)))
            .unwrap_or_default();
        let setup = match changed_run {
            Some(_) => "truncate stage",
            None => "truncate stage; truncate users",
        };
        self.dbs.psql(dst, setup).await?;
        let columns = self.dbs.columns.join(", ");
        let updates: Vec<String> =
            self.dbs.columns.iter().filter(|c| *c != "id").map(|c| format!("{c} = excluded.{c}")).collect();
        let script = format!(
            "{} | {} && \
             psql -X -q '{dst}' -c \"insert into users ({columns}) select {columns} from stage on conflict (id) do update set {}\"",
            self.source.export(self.dbs, &filter),
            self.source.copy_in(dst, "stage"),
            updates.join(", ")
        );
        timed_shell(&script).await
    }

    /// The bare pipe into an emptied `users`: the floor of any copy from the source into
    /// PostgreSQL (no staging, no upsert).
    pub async fn copy_only(&self) -> anyhow::Result<Duration> {
        let dst = &self.dbs.baseline_url;
        self.dbs.psql(dst, "truncate users").await?;
        timed_shell(&format!("{} | {}", self.source.export(self.dbs, ""), self.source.copy_in(dst, "users"))).await
    }

    /// The read-only export of the model.
    pub async fn read_only(&self) -> anyhow::Result<Duration> {
        timed_shell(&format!("{} > /dev/null", self.source.export(self.dbs, ""))).await
    }
}
