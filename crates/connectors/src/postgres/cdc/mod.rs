//! Change data capture: logical replication through `pgoutput`, one slot and one publication
//! per bulk sync, read with SQL over an ordinary connection.
//!
//! [`Capture::prepare`] checks the server (`wal_level = logical`) and the role (`REPLICATION`),
//! points the publication at exactly the synced tables and creates the slot. The initial load
//! starts after it, so no change falls between the two: changes made during the load come
//! again after it and converge.
//!
//! Then, in a loop: [`Capture::poll`] peeks whole transactions without consuming them
//! (`pg_logical_slot_peek_binary_changes`), the destination applies them and commits, and
//! [`Capture::confirm`] advances the slot to the set's [`ChangeSet::end`]
//! (`pg_replication_slot_advance`). The slot's confirmed position is the checkpoint: a worker
//! killed before confirming gets the same changes again from the next poll (as does everyone
//! after a server crash that lost the slot's last advance), so delivery is at least once and
//! the destination must apply idempotently — upsert rows, delete by key, truncate.
//!
//! [`Capture::retained_bytes`] is the WAL the slot keeps from being recycled, for the guard
//! that pauses a sync before it fills the source's disk; [`Capture::remove`] drops the slot and
//! the publication when the sync is deleted.
//!
//! Only one session at a time reads a slot: a second one gets a transient error.

mod changes;
pub mod pgoutput;
mod setup;
mod text;

use std::time::Duration;

use futures::TryStreamExt;
use syncline_core::{
    bulk::BulkMode,
    connector::{Connector, ConnectorError, Context, ErrorClass},
};
use tokio_postgres::{error::SqlState, types::ToSql};

pub use changes::{Cell, Change, ChangeKind, ChangeSet, Row, Table, Transaction};
/// A position in the WAL (`16/B374D848` as text); a slot's confirmed one is the checkpoint.
pub use tokio_postgres::types::PgLsn as Lsn;

use super::{
    Postgres, PostgresConfig,
    client::{self, Connection, quote_ident},
};

/// Whether a bulk sync in `mode` from a connection of type `source_type` with `configuration`
/// (its stored, unsealed part) captures changes: `replicate` mode from PostgreSQL with
/// `change_detection` on.
pub fn captures(mode: BulkMode, source_type: &str, configuration: &serde_json::Value) -> bool {
    mode == BulkMode::Replicate && source_type == Postgres::ID && configuration["change_detection"] == true
}

/// The replication slot and the publication of one capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub slot: String,
    pub publication: String,
}

impl Names {
    /// Bulk sync `id`'s: `syncline_` and the id's 32 hex digits, for both (41 characters, a
    /// plain identifier).
    pub fn for_bulk_sync(id: uuid::Uuid) -> Self {
        let name = format!("syncline_{}", id.simple());
        Self { slot: name.clone(), publication: name }
    }
}

/// A connection capturing the changes of one slot and publication.
pub struct Capture {
    conn: Connection,
    names: Names,
}

/// Session settings that fix the text `pgoutput` renders values in, for [`text`].
const SESSION: &str = "set datestyle = 'ISO, YMD'; set timezone = 'UTC'; set intervalstyle = 'postgres';
    set extra_float_digits = 3; set bytea_output = 'hex'";

const PEEK: &str = "select data from pg_logical_slot_peek_binary_changes($1, $2, $3,
    'proto_version', '1', 'publication_names', $4)";

impl Capture {
    /// Connects to the source for capturing through `names`. Every call then takes at most a
    /// deadline of `ctx` and stops when `ctx` is canceled.
    pub async fn connect(ctx: &Context, config: &PostgresConfig, names: Names) -> Result<Self, ConnectorError> {
        let conn = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return Err(canceled()),
            conn = client::connect(ctx, config) => conn?,
        };
        let capture = Self { conn, names };
        capture.run(ctx.deadlines.query, capture.conn.client.batch_execute(SESSION)).await?;
        Ok(capture)
    }

    /// The next whole transactions after the confirmed position, decoded in one pass: as many
    /// as end within `max_messages` `pgoutput` messages (a change is one, as are each
    /// transaction's begin and commit), and always at least one (a larger transaction comes
    /// whole). Nothing is consumed: until [`Capture::confirm`], every poll starts over.
    pub async fn poll(&self, max_messages: usize) -> Result<ChangeSet, ConnectorError> {
        let client = &self.conn.client;
        let flushed =
            self.run(self.conn.ctx.deadlines.query, client.query_one("select pg_current_wal_flush_lsn()", &[]));
        let upto: Lsn = flushed.await?.try_get(0).map_err(|e| error(&e))?;
        let limit = i32::try_from(max_messages.max(1)).unwrap_or(i32::MAX);
        let publications = quote_ident(&self.names.publication);
        self.guard(self.conn.ctx.deadlines.idle, async {
            let params: [&(dyn ToSql + Sync); 4] = [&self.names.slot, &upto, &limit, &publications];
            let rows = client.query_raw(PEEK, params).await.map_err(|e| error(&e))?;
            let mut rows = std::pin::pin!(rows);
            let mut assembler = changes::Assembler::default();
            let mut count = 0;
            while let Some(row) = rows.try_next().await.map_err(|e| error(&e))? {
                assembler.feed(row.try_get(0).map_err(|e| error(&e))?)?;
                count += 1;
            }
            // Fewer messages than the limit: the decoding went on to `upto`, so every
            // transaction that committed before it is here.
            Ok(ChangeSet { highwater: Some(upto), ..assembler.finish((count < limit).then_some(upto)) })
        })
        .await
    }

    /// Confirms that everything before `lsn` is applied: the slot releases it for good. Call
    /// only after the destination committed; a position at or before the confirmed one is a
    /// no-op.
    pub async fn confirm(&self, lsn: Lsn) -> Result<(), ConnectorError> {
        let sql =
            "select case when confirmed_flush_lsn < $2 then (pg_replication_slot_advance(slot_name, $2)).end_lsn end
                   from pg_replication_slots where slot_name = $1";
        let rows =
            self.run(self.conn.ctx.deadlines.idle, self.conn.client.query(sql, &[&self.names.slot, &lsn])).await?;
        match rows.is_empty() {
            true => Err(self.missing_slot()),
            false => Ok(()),
        }
    }

    /// Bytes of WAL the slot holds back: from its restart position to the server's current one.
    pub async fn retained_bytes(&self) -> Result<u64, ConnectorError> {
        let sql = "select pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8 from pg_replication_slots
                   where slot_name = $1";
        let rows = self.run(self.conn.ctx.deadlines.query, self.conn.client.query(sql, &[&self.names.slot])).await?;
        let row = rows.first().ok_or_else(|| self.missing_slot())?;
        let retained: Option<i64> = row.try_get(0).map_err(|e| error(&e))?;
        let lost = || {
            let slot = &self.names.slot;
            ConnectorError::permanent(format!("replication slot {slot} lost its WAL: the sync needs a full resync"))
        };
        retained.map(|bytes| bytes.max(0) as u64).ok_or_else(lost)
    }

    /// The slot's confirmed position: where the next poll starts.
    pub async fn confirmed(&self) -> Result<Lsn, ConnectorError> {
        let sql = "select confirmed_flush_lsn from pg_replication_slots where slot_name = $1";
        let rows = self.run(self.conn.ctx.deadlines.query, self.conn.client.query(sql, &[&self.names.slot])).await?;
        rows.first().ok_or_else(|| self.missing_slot())?.try_get(0).map_err(|e| error(&e))
    }

    fn missing_slot(&self) -> ConnectorError {
        let slot = &self.names.slot;
        ConnectorError::not_found(format!("replication slot {slot} does not exist: the sync needs a full resync"))
    }

    /// Runs a statement within `limit` and `ctx`'s cancel, in capture's error classes.
    async fn run<T>(
        &self,
        limit: Duration,
        work: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, ConnectorError> {
        self.guard(limit, async { work.await.map_err(|e| error(&e)) }).await
    }

    /// Runs `work` within `limit`, stopping it when `ctx` is canceled (the server is then asked
    /// to cancel the statement).
    async fn guard<T>(
        &self,
        limit: Duration,
        work: impl Future<Output = Result<T, ConnectorError>>,
    ) -> Result<T, ConnectorError> {
        tokio::select! {
            biased;
            _ = self.conn.ctx.cancel.cancelled() => Err(canceled()),
            result = self.conn.guard(limit, work) => result,
        }
    }
}

fn canceled() -> ConnectorError {
    ConnectorError::permanent("change capture was canceled")
}

/// [`client::error`], with the classes replication errors need: a missing slot or publication
/// is not found, a slot another session is reading is busy for now, and no free slot is the
/// server's configuration.
fn error(e: &tokio_postgres::Error) -> ConnectorError {
    let error = client::error(e);
    match e.code() {
        Some(c) if *c == SqlState::UNDEFINED_OBJECT => ConnectorError { class: ErrorClass::NotFound, ..error },
        Some(c) if *c == SqlState::OBJECT_IN_USE => ConnectorError { class: ErrorClass::Transient, ..error },
        Some(c) if *c == SqlState::CONFIGURATION_LIMIT_EXCEEDED => ConnectorError {
            class: ErrorClass::Config,
            message: format!("{} (raise max_replication_slots, or drop slots no longer used)", error.message),
            ..error
        },
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_sync_names_are_plain_identifiers() {
        let names = Names::for_bulk_sync(uuid::Uuid::from_u128(u128::MAX));
        assert_eq!(names.slot, format!("syncline_{}", "f".repeat(32)));
        assert_eq!(names.slot, names.publication);
        assert!(names.slot.len() <= 63);
    }
}
