//! Files as the destination of bulk syncs. They keep whole copies: every run writes a new copy
//! of each table, one Parquet file per partition, and swaps it in by writing the copy's
//! manifest, then `_latest.json`. The copy swapped out is kept until the next swap, for readers
//! that read `_latest.json` before; older copies are deleted.

use async_trait::async_trait;
use chrono::Utc;
use object_store::{ObjectMeta, path::Path};
use parquet::file::metadata::ParquetMetaData;
use std::sync::Arc;
use syncline_core::{
    bulk::BulkMode,
    connector::{BulkDestination, ConnectorError, Context, KeyStream, Keys, LoadMode, LoadRequest, Loader, TableSpec},
    record::{Field, Schema, arrow},
};
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::{
    FilesConfig,
    layout::{self, Place},
    manifest::{Column, File, Latest, Manifest},
    part::{self, PartWriter},
    store::Bucket,
};

/// Why rows cannot be merged into, or deleted from, what a file destination holds.
const WHOLE_COPIES: &str = "file destinations keep whole copies, written anew by every run";

pub(super) struct FilesBulk {
    ctx: Context,
    config: FilesConfig,
    /// Opened on first use.
    bucket: OnceCell<Bucket>,
}

impl FilesBulk {
    pub(super) fn new(ctx: Context, config: FilesConfig) -> Self {
        Self { ctx, config, bucket: OnceCell::new() }
    }

    /// The bucket, and the place `name` names in it.
    async fn place(&self, name: &str) -> Result<(&Bucket, Place), ConnectorError> {
        let bucket = self.bucket.get_or_try_init(|| Bucket::open(&self.ctx, &self.config)).await?;
        Ok((bucket, Place::parse(bucket.root(), name)))
    }

    /// The partition files under `dir`, with their footers.
    async fn parts(&self, bucket: &Bucket, dir: &Path) -> Result<Vec<(ObjectMeta, ParquetMetaData)>, ConnectorError> {
        let mut parts = Vec::new();
        for meta in bucket.list(dir).await?.into_iter().filter(|m| layout::is_part(&m.location)) {
            let footer = part::footer(bucket.store().as_ref(), &meta.location).await?;
            parts.push((meta, footer));
        }
        Ok(parts)
    }

    /// The manifest of a copy once swapped in, or of the table's latest copy.
    async fn manifest(&self, bucket: &Bucket, place: &Place) -> Result<Option<Manifest>, ConnectorError> {
        let path = match place.execution() {
            Some(execution) => place.manifest(execution),
            None => match bucket.read::<Latest>(&place.latest()).await? {
                Some(latest) => bucket.at(&latest.manifest),
                None => return Ok(None),
            },
        };
        bucket.read(&path).await
    }
}

/// The rows of a Parquet file.
fn rows(footer: &ParquetMetaData) -> u64 {
    footer.file_metadata().num_rows() as u64
}

/// The columns of a manifest, from a file's Arrow schema.
fn columns(schema: &arrow_schema::Schema) -> Result<Vec<Column>, ConnectorError> {
    let fields = arrow::schema_from_arrow(schema).map_err(|e| ConnectorError::permanent(e.to_string()))?.fields;
    Ok(fields
        .into_iter()
        .zip(schema.fields())
        .map(|(field, a)| Column { field, arrow: a.data_type().to_string() })
        .collect())
}

#[async_trait]
impl BulkDestination for FilesBulk {
    fn modes(&self) -> &'static [BulkMode] {
        &[BulkMode::Snapshot]
    }

    fn shadow(&self, table: &str, execution: Uuid) -> String {
        Place::copy_name(table, execution)
    }

    async fn columns(&self, table: &str) -> Result<Option<Vec<Field>>, ConnectorError> {
        let (bucket, place) = self.place(table).await?;
        let manifest = self.manifest(bucket, &place).await?;
        Ok(manifest.map(|m| m.schema.into_iter().map(|c| c.field).collect()))
    }

    /// Nothing to do: each file carries its schema.
    async fn shape(&self, _: &TableSpec) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn drop_table(&self, table: &str) -> Result<(), ConnectorError> {
        let (bucket, place) = self.place(table).await?;
        bucket.delete_all(&place.dir()).await
    }

    async fn loaded(&self, table: &str, marker: Uuid) -> Result<Option<u64>, ConnectorError> {
        let (bucket, place) = self.place(table).await?;
        let Some(path) = place.part(marker) else { return Ok(None) };
        if bucket.head(&path).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(rows(&part::footer(bucket.store().as_ref(), &path).await?)))
    }

    async fn load(&self, request: LoadRequest) -> Result<Box<dyn Loader>, ConnectorError> {
        let (bucket, place) = self.place(&request.table).await?;
        let path = place.part(request.marker).filter(|_| request.mode == LoadMode::Append);
        let path = path.ok_or_else(|| {
            ConnectorError::config(format!("{}: {WHOLE_COPIES}; rows only go into a new copy", request.table))
        })?;
        Ok(Box::new(PartWriter::new(bucket.store(), path, &request.schema)?))
    }

    async fn swap(&self, shadow: &str, table: &str) -> Result<(), ConnectorError> {
        let (bucket, copy) = self.place(shadow).await?;
        let target = Place::parse(bucket.root(), table);
        let same = copy.table_dir() == target.table_dir() && target.execution().is_none();
        let execution = copy
            .execution()
            .filter(|_| same)
            .ok_or_else(|| ConnectorError::config(format!("{shadow} is not a copy of {table}")))?;
        let parts = self.parts(bucket, &copy.dir()).await?;
        let schema = match parts.first() {
            Some((_, footer)) => part::schema(footer)?,
            None => arrow_schema::Schema::empty(),
        };
        let files: Vec<File> = parts
            .iter()
            .map(|(meta, footer)| File { path: bucket.relative(&meta.location), rows: rows(footer), bytes: meta.size })
            .collect();
        let manifest = Manifest {
            execution,
            created_at: Utc::now(),
            rows: files.iter().map(|f| f.rows).sum(),
            schema: columns(&schema)?,
            files,
        };
        let path = target.manifest(execution);
        bucket.write(&path, &manifest).await?;
        let previous = match bucket.read::<Latest>(&target.latest()).await? {
            Some(latest) if latest.execution != execution => Some(latest.execution),
            // Swapped in before (this is a retry): keep what it swapped out.
            Some(latest) => latest.previous,
            None => None,
        };
        let latest = Latest { execution, manifest: bucket.relative(&path), previous };
        bucket.write(&target.latest(), &latest).await?;
        for dir in bucket.directories(target.table_dir()).await? {
            let copy = dir.filename().and_then(|name| Uuid::parse_str(name).ok());
            if copy.is_some_and(|c| c != execution && Some(c) != previous) {
                bucket.delete_all(&dir).await?;
            }
        }
        Ok(())
    }

    /// Never: swapping a copy in again writes the same manifest.
    async fn swapped(&self, _: &str) -> Result<bool, ConnectorError> {
        Ok(false)
    }

    async fn delete_keys(
        &self,
        table: &str,
        _: (KeyStream, Arc<Schema>, Keys),
        _: Option<&str>,
    ) -> Result<u64, ConnectorError> {
        Err(ConnectorError::config(format!("{table}: {WHOLE_COPIES}; rows are not deleted from them")))
    }

    async fn retire(&self, table: &str, _: &str, _: &[String], _: Option<&str>) -> Result<u64, ConnectorError> {
        Err(ConnectorError::config(format!("{table}: {WHOLE_COPIES}; rows are not deleted from them")))
    }

    async fn count(&self, table: &str) -> Result<u64, ConnectorError> {
        let (bucket, place) = self.place(table).await?;
        if place.execution().is_some() {
            return Ok(self.parts(bucket, &place.dir()).await?.iter().map(|(_, footer)| rows(footer)).sum());
        }
        let manifest = self.manifest(bucket, &place).await?;
        manifest.map(|m| m.rows).ok_or_else(|| ConnectorError::not_found(format!("{table} has no copy yet")))
    }
}
