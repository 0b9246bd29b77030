//! A bulk sync's change capture as the worker records it (`capture_slots`): its confirmed
//! position and how far the source's WAL was when it last polled, for the sync's ingestion
//! status.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{FromRow, StoreError, fetch_opt};

/// Where a capture stands.
#[derive(Debug, Clone)]
pub struct CaptureSlot {
    /// The confirmed position, as text (`16/B374D848`).
    pub position: Option<String>,
    /// The commit time of the last change applied.
    pub position_time: Option<DateTime<Utc>>,
    /// The source's WAL position the last poll saw.
    pub highwater_mark: Option<String>,
    /// WAL bytes from the confirmed position to the high-water mark.
    pub lag_bytes: Option<i64>,
    /// When the capture last recorded its progress.
    pub updated_at: Option<DateTime<Utc>>,
}

impl FromRow for CaptureSlot {
    const WHAT: &'static str = "capture slot";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            position: row.try_get("position")?,
            position_time: row.try_get("position_time")?,
            highwater_mark: row.try_get("highwater_mark")?,
            lag_bytes: row.try_get("lag_bytes")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// The capture of bulk sync `bulk_sync_id`, if it has a slot.
pub async fn get(client: &impl GenericClient, bulk_sync_id: Uuid) -> Result<Option<CaptureSlot>, StoreError> {
    let sql = "select position::text, position_time, highwater_mark::text, updated_at,
                      pg_wal_lsn_diff(highwater_mark, position)::int8 as lag_bytes
               from capture_slots where bulk_sync_id = $1";
    fetch_opt(client, sql, &[&bulk_sync_id]).await
}
