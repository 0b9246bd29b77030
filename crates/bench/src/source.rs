//! The model's source: PostgreSQL (the `users` table of the source database) or MariaDB (the
//! same rows copied into a database of `MARIADB_URL`'s server). Each names the Syncline
//! connection that reads it and the plain-client command that exports it for the baselines.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use anyhow::{Context, bail, ensure};
use serde_json::Value as Json;

use crate::harness::{Databases, connection_config};

/// The database the MariaDB source lives in, on `MARIADB_URL`'s server.
const MARIADB_DATABASE: &str = "syncline_bench_source";

/// The ratios the issue sets: full run to its baseline and to the bare pipe, rerun to its baseline.
pub struct Targets {
    pub full: f64,
    pub pipe: Option<f64>,
    pub rerun: Option<f64>,
}

pub enum Source {
    Postgres,
    Mariadb(Mariadb),
}

impl Source {
    /// The source `--source` names (`postgres` or `mariadb`).
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        match name {
            "postgres" => Ok(Self::Postgres),
            "mariadb" => Ok(Self::Mariadb(Mariadb::from_env()?)),
            other => bail!("unknown source {other:?}: postgres or mariadb"),
        }
    }

    /// Fills a MariaDB source's table from the PostgreSQL source's (which needs nothing).
    pub fn load(&self, dbs: &Databases) -> anyhow::Result<()> {
        match self {
            Self::Postgres => Ok(()),
            Self::Mariadb(m) => m.load(dbs),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Postgres => "PostgreSQL",
            Self::Mariadb(_) => "MariaDB",
        }
    }

    /// How the baselines pipe the model into PostgreSQL, and read it alone.
    pub fn pipe(&self) -> (&'static str, &'static str) {
        match self {
            Self::Postgres => ("COPY", "COPY"),
            Self::Mariadb(_) => ("mariadb | COPY", "mariadb --quick"),
        }
    }

    pub fn targets(&self) -> Targets {
        match self {
            Self::Postgres => Targets { full: 0.75, pipe: Some(1.2), rerun: Some(1.0) },
            Self::Mariadb(_) => Targets { full: 1.5, pipe: None, rerun: None },
        }
    }

    /// The shell command writing the model's rows (`filter`: a `where` clause or nothing) in
    /// the format [`Source::copy_in`] reads.
    pub fn export(&self, dbs: &Databases, filter: &str) -> String {
        match self {
            Self::Postgres => format!(
                "psql -X -q '{}' -c \"copy (select * from users{filter}) to stdout (format binary)\"",
                dbs.source_url
            ),
            Self::Mariadb(m) => format!(
                "{} --quick --batch --skip-column-names -e \"select {} from users{filter}\"",
                m.client(),
                dbs.columns.join(", ")
            ),
        }
    }

    /// The shell command copying [`Source::export`]'s output into `table` of database `url`.
    /// `mariadb --batch` escapes text as `COPY`'s text format does but spells NULL `NULL` (so
    /// the text `NULL` would arrive as NULL; the benchmark table holds none).
    pub fn copy_in(&self, url: &str, table: &str) -> String {
        match self {
            Self::Postgres => format!("psql -X -q '{url}' -c \"copy {table} from stdin (format binary)\""),
            Self::Mariadb(_) => format!("PGTZ=UTC psql -X -q '{url}' -c \"copy {table} from stdin (null 'NULL')\""),
        }
    }

    /// The type and configuration of the Syncline connection reading the source.
    pub fn connection(&self, dbs: &Databases) -> anyhow::Result<(&'static str, Json)> {
        Ok(match self {
            Self::Postgres => {
                ("postgresql", connection_config(&reqwest::Url::parse(&dbs.source_url)?, "postgres", 5432))
            }
            Self::Mariadb(m) => ("mysql", connection_config(&m.url, "root", 3306)),
        })
    }

    /// Changes 1% of the source rows (those [`Databases::changed_remainder`] names); returns how many.
    pub async fn change_one_percent(&self, dbs: &Databases, run: i64) -> anyhow::Result<u64> {
        let filter = format!("id % 100 = {}", Databases::changed_remainder(run));
        match self {
            Self::Postgres => {
                let sql = format!(
                    "update users set score = score + 1, updated_at = updated_at + interval '1 second' where {filter}"
                );
                dbs.execute(&dbs.source_url, &sql).await
            }
            Self::Mariadb(m) => {
                let sql = format!(
                    "update users set score = score + 1, updated_at = updated_at + interval 1 second where {filter}; select row_count()"
                );
                Ok(m.query(&sql)?.trim().parse()?)
            }
        }
    }

    /// Row count and digest of the source table, as [`Databases::checksum`] computes them.
    pub async fn checksum(&self, dbs: &Databases) -> anyhow::Result<String> {
        match self {
            Self::Postgres => dbs.checksum(&dbs.source_url).await,
            Self::Mariadb(m) => m.checksum(),
        }
    }

    pub fn drop_all(&self) -> anyhow::Result<()> {
        match self {
            Self::Postgres => Ok(()),
            Self::Mariadb(m) => m.drop_database(),
        }
    }
}

/// The MariaDB source database.
pub struct Mariadb {
    /// `MARIADB_URL` with the source database as its path.
    url: reqwest::Url,
}

impl Mariadb {
    fn from_env() -> anyhow::Result<Self> {
        let server = std::env::var("MARIADB_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
        let mut url = reqwest::Url::parse(&server).with_context(|| format!("MARIADB_URL {server:?}"))?;
        url.set_path(MARIADB_DATABASE);
        Ok(Self { url })
    }

    /// Creates the source database afresh and copies the PostgreSQL source's `users` into it.
    fn load(&self, dbs: &Databases) -> anyhow::Result<()> {
        self.drop_database()?;
        let mut server = self.url.clone();
        server.set_path("");
        Self { url: server }.query(&format!("create database {MARIADB_DATABASE}"))?;
        self.query(include_str!("../../../testdata/bench_users_mariadb.sql"))?;
        // Booleans as 1/0 and timestamps in UTC: the text `LOAD DATA` reads into MariaDB's types.
        let columns: Vec<String> = dbs
            .columns
            .iter()
            .map(|c| match c.as_str() {
                "active" => "active::int".into(),
                "created_at" | "updated_at" => format!("to_char({c} at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"),
                _ => c.clone(),
            })
            .collect();
        let script = format!(
            "psql -X -q '{}' -c \"copy (select {} from users order by id) to stdout\" | \
             {} --local-infile=1 -e \"load data local infile '/dev/stdin' into table users; analyze table users\" > /dev/null",
            dbs.source_url,
            columns.join(", "),
            self.client()
        );
        let status = Command::new("sh").arg("-c").arg(&script).status()?;
        ensure!(status.success(), "loading the MariaDB source failed: {script}");
        Ok(())
    }

    fn drop_database(&self) -> anyhow::Result<()> {
        let mut server = self.url.clone();
        server.set_path("");
        Self { url: server }.query(&format!("drop database if exists {MARIADB_DATABASE}")).map(drop)
    }

    /// The `mariadb` client on the source database, in UTC.
    fn client(&self) -> String {
        let url = &self.url;
        let password = url.password().map(|p| format!("MYSQL_PWD='{p}' ")).unwrap_or_default();
        let user = if url.username().is_empty() { "root" } else { url.username() };
        format!(
            "{password}mariadb --no-defaults --protocol=TCP -h {} -P {} -u {user} --init-command=\"set time_zone = '+00:00'\" {}",
            url.host_str().unwrap_or("127.0.0.1"),
            url.port().unwrap_or(3306),
            url.path().trim_start_matches('/')
        )
    }

    /// Runs `sql` with the client; returns what it printed.
    fn query(&self, sql: &str) -> anyhow::Result<String> {
        with_stdin(&format!("{} -N -B", self.client()), sql)
    }

    /// Row count and digest of `users`, rendered as `testdata/checksum_users.sql` renders it.
    fn checksum(&self) -> anyhow::Result<String> {
        let count = self.query("select count(*) from users")?;
        let count = count.trim();
        if count == "0" {
            return Ok("0 -".into());
        }
        let digest = with_stdin(
            &format!("{} -N -B --quick | tr -d '\\n' | md5sum", self.client()),
            include_str!("../../../testdata/checksum_users_mariadb.sql"),
        )?;
        Ok(format!("{count} {}", digest.split_whitespace().next().context("md5sum")?))
    }
}

/// Runs shell command `script` with `input` on its stdin; its stdout, or an error with its stderr.
fn with_stdin(script: &str, input: &str) -> anyhow::Result<String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
    let output = child.wait_with_output()?;
    ensure!(output.status.success(), "{script}: {}", String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8(output.stdout)?)
}
