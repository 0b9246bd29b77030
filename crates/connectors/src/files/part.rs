//! Partitions' Parquet files: written through a multipart upload that completes only on
//! commit, so a partition that never commits leaves no file, and read back by their footers.
//!
//! Memory stays bounded whatever the partition holds: a row group is flushed once its encoded
//! size passes [`ROW_GROUP_BYTES`], and the upload holds one [`UPLOAD_PART`] buffer plus at
//! most [`UPLOADS_IN_FLIGHT`] parts being sent.

use std::{ops::Range, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{FutureExt, future::BoxFuture};
use object_store::{GetOptions, GetRange, ObjectStore, buffered::BufWriter, path::Path};
use parquet::{
    arrow::{
        AsyncArrowWriter,
        async_reader::{MetadataFetch, MetadataSuffixFetch},
        parquet_to_arrow_schema,
    },
    basic::Compression,
    errors::ParquetError,
    file::{
        metadata::{ParquetMetaData, ParquetMetaDataReader},
        properties::WriterProperties,
    },
};
use syncline_core::{
    connector::{Committed, ConnectorError, Loader},
    record::{RecordBatch, Schema, arrow},
};

/// Encoded bytes after which a row group is written out.
const ROW_GROUP_BYTES: usize = 16 << 20;
/// Bytes per part of the multipart upload (S3 wants at least 5 MiB).
const UPLOAD_PART: usize = 8 << 20;
/// Parts of the upload sent at once.
const UPLOADS_IN_FLIGHT: usize = 2;
/// Bytes read from a file's end at first, enough for most footers in one request.
const FOOTER_HINT: usize = 64 << 10;

/// A partition's file being written; see [`Loader`].
pub(super) struct PartWriter {
    /// `None` once committed.
    writer: Option<AsyncArrowWriter<BufWriter>>,
    path: Path,
}

impl PartWriter {
    /// Starts the file at `path` for records of `schema`.
    pub fn new(store: Arc<dyn ObjectStore>, path: Path, schema: &Schema) -> Result<Self, ConnectorError> {
        let upload = BufWriter::with_capacity(store, path.clone(), UPLOAD_PART).with_max_concurrency(UPLOADS_IN_FLIGHT);
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
            .build();
        let schema = Arc::new(arrow::schema_to_arrow(schema));
        let writer = AsyncArrowWriter::try_new(upload, schema, Some(properties)).map_err(|e| error(&path, e))?;
        Ok(Self { writer: Some(writer), path })
    }

    fn writer(&mut self) -> Result<&mut AsyncArrowWriter<BufWriter>, ConnectorError> {
        self.writer.as_mut().ok_or_else(|| ConnectorError::permanent(format!("{} was committed", self.path)))
    }
}

#[async_trait]
impl Loader for PartWriter {
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        let batch = arrow::to_arrow(batch).map_err(|e| ConnectorError::permanent(e.to_string()))?;
        let path = self.path.clone();
        self.writer()?.write(&batch).await.map_err(|e| error(&path, e))
    }

    /// Writes the footer and completes the upload: the file appears whole, or not at all.
    async fn commit(mut self: Box<Self>) -> Result<Committed, ConnectorError> {
        let writer = self.writer.take().ok_or_else(|| ConnectorError::permanent("committed twice"))?;
        let metadata = writer.close().await.map_err(|e| error(&self.path, e))?;
        let rows = metadata.file_metadata().num_rows() as u64;
        Ok(Committed { rows, added: Some(rows) })
    }
}

impl Drop for PartWriter {
    /// Aborts the upload of a file never committed, so no parts linger in the bucket.
    fn drop(&mut self) {
        let (Some(writer), Ok(runtime)) = (self.writer.take(), tokio::runtime::Handle::try_current()) else { return };
        // An abort that fails leaves parts the bucket's lifecycle rules expire; no file appears.
        runtime.spawn(async move { writer.into_inner().abort().await });
    }
}

/// A Parquet failure at `path`: one of the store may clear by itself, others will not.
pub(super) fn error(path: &Path, e: ParquetError) -> ConnectorError {
    let message = format!("{path}: {e}");
    match e {
        ParquetError::External(_) => ConnectorError::transient(message),
        _ => ConnectorError::permanent(message),
    }
}

/// The metadata in the footer of the Parquet file at `path`.
pub(super) async fn footer(store: &dyn ObjectStore, path: &Path) -> Result<ParquetMetaData, ConnectorError> {
    ParquetMetaDataReader::new()
        .with_prefetch_hint(Some(FOOTER_HINT))
        .load_via_suffix_and_finish(Ranges { store, path })
        .await
        .map_err(|e| error(path, e))
}

/// The Arrow schema a Parquet file was written with, from its footer.
pub(super) fn schema(metadata: &ParquetMetaData) -> Result<arrow_schema::Schema, ConnectorError> {
    let file = metadata.file_metadata();
    parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
        .map_err(|e| ConnectorError::permanent(format!("a file's schema: {e}")))
}

/// Ranges of one object, for the footer reader.
struct Ranges<'a> {
    store: &'a dyn ObjectStore,
    path: &'a Path,
}

impl Ranges<'_> {
    async fn get(&self, range: GetRange) -> Result<Bytes, ParquetError> {
        let options = GetOptions { range: Some(range), ..GetOptions::default() };
        let result = self.store.get_opts(self.path, options).await.map_err(|e| ParquetError::External(e.into()))?;
        result.bytes().await.map_err(|e| ParquetError::External(e.into()))
    }
}

impl MetadataFetch for Ranges<'_> {
    fn fetch(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes, ParquetError>> {
        self.get(GetRange::Bounded(range)).boxed()
    }
}

impl MetadataSuffixFetch for Ranges<'_> {
    fn fetch_suffix(&mut self, suffix: usize) -> BoxFuture<'_, Result<Bytes, ParquetError>> {
        self.get(GetRange::Suffix(suffix as u64)).boxed()
    }
}
