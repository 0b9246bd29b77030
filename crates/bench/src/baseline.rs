//! The physical-limit baselines, run with psql the way an engineer would by hand.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::harness::Databases;

pub struct Baselines<'a> {
    pub dbs: &'a Databases,
}

/// Runs a shell pipeline and times it.
async fn timed_shell(script: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = tokio::process::Command::new("sh").arg("-c").arg(script).status().await.context("run sh")?;
    ensure!(status.success(), "baseline failed: {script}");
    Ok(started.elapsed())
}

impl Baselines<'_> {
    /// `COPY (model) | COPY stage` then upsert into an emptied `users` (or, with `changed_run`,
    /// only the rows that run changes, into the full table).
    pub async fn copy_upsert(&self, changed_run: Option<i64>) -> anyhow::Result<Duration> {
        let (src, dst) = (&self.dbs.source_url, &self.dbs.baseline_url);
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
            "psql -X -q '{src}' -c \"copy (select * from users{filter}) to stdout (format binary)\" | psql -X -q '{dst}' -c \"copy stage from stdin (format binary)\" && \
             psql -X -q '{dst}' -c \"insert into users ({columns}) select {columns} from stage on conflict (id) do update set {}\"",
            updates.join(", ")
        );
        timed_shell(&script).await
    }

    /// The bare pipe, `COPY (model) | COPY users` into an emptied table: the floor of any
    /// PostgreSQL → PostgreSQL copy (no staging, no upsert).
    pub async fn copy_only(&self) -> anyhow::Result<Duration> {
        let (src, dst) = (&self.dbs.source_url, &self.dbs.baseline_url);
        self.dbs.psql(dst, "truncate users").await?;
        timed_shell(&format!(
            "psql -X -q '{src}' -c \"copy (select * from users) to stdout (format binary)\" | psql -X -q '{dst}' -c \"copy users from stdin (format binary)\""
        ))
        .await
    }

    /// The read-only `COPY` of the model.
    pub async fn read_only(&self) -> anyhow::Result<Duration> {
        let src = &self.dbs.source_url;
        timed_shell(&format!(
            "psql -X -q '{src}' -c \"copy (select * from users) to stdout (format binary)\" > /dev/null"
        ))
        .await
    }
}
