//! Reading a table's latest copy back the way readers do — `_latest.json`, its manifest, then
//! its files — for the tests of this crate and others.

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value as Json;
use syncline_core::{
    connector::{ConnectorError, Context},
    record::{RecordBatch, arrow},
};

use super::{
    FilesConfig,
    layout::Place,
    manifest::{Latest, Manifest},
    store::Bucket,
};

/// The manifest of `table`'s latest copy (as JSON) and the records of its files, in order.
pub async fn latest(ctx: &Context, config: &Json, table: &str) -> Result<(Json, Vec<RecordBatch>), ConnectorError> {
    let config: FilesConfig =
        serde_json::from_value(config.clone()).map_err(|e| ConnectorError::config(e.to_string()))?;
    let bucket = Bucket::open(ctx, &config).await?;
    let place = Place::parse(bucket.root(), table);
    let missing = |what: &str| ConnectorError::not_found(format!("{table}: no {what}"));
    let latest: Latest = bucket.read(&place.latest()).await?.ok_or_else(|| missing("_latest.json"))?;
    let manifest: Manifest = bucket.read(&bucket.at(&latest.manifest)).await?.ok_or_else(|| missing("manifest"))?;
    let mut batches = Vec::new();
    for file in &manifest.files {
        let bytes = bucket.get(&bucket.at(&file.path)).await?.ok_or_else(|| missing(&file.path))?;
        let unreadable = |e: &dyn std::fmt::Display| ConnectorError::permanent(format!("{}: {e}", file.path));
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(bytes).and_then(|b| b.build()).map_err(|e| unreadable(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| unreadable(&e))?;
            batches.push(arrow::from_arrow(&batch).map_err(|e| unreadable(&e))?);
        }
    }
    let manifest = serde_json::to_value(&manifest).map_err(|e| ConnectorError::permanent(e.to_string()))?;
    Ok((manifest, batches))
}
