//! Lossless conversion between [`RecordBatch`]es and Apache Arrow record batches, for columnar
//! destinations (Parquet and the like).
//!
//! | syncline [`FieldType`] | Arrow type | field metadata |
//! |---|---|---|
//! | `Bool` | `Boolean` | |
//! | `Int16`, `Int32`, `Int64` | `Int16`, `Int32`, `Int64` | |
//! | `Float32`, `Float64` | `Float32`, `Float64` | |
//! | `Decimal { precision ≤ 38, scale ≤ precision }` | `Decimal128(precision, scale)` | |
//! | `Decimal` of any other precision or scale | `Utf8`, the exact decimal text (`NaN` too) | `syncline.type` = `numeric(p,s)` |
//! | `Numeric` | `Utf8`, the exact decimal text (`NaN`, `±Infinity` too) | `syncline.type` = `numeric` |
//! | `Text` | `Utf8` | |
//! | `Bytes` | `Binary` | |
//! | `Date` | `Date32` | |
//! | `Time` | `Time64(Microsecond)` | |
//! | `Timestamp` | `Timestamp(Microsecond, None)` | |
//! | `TimestampTz` | `Timestamp(Microsecond, "UTC")` | |
//! | `Uuid` | `FixedSizeBinary(16)` | `ARROW:extension:name` = `arrow.uuid` |
//! | `Json`, `Jsonb` | `Utf8`, the JSON text as stored | `arrow.json` extension, `syncline.type` = `json` / `jsonb` |
//! | `List(T)` | `List` of T's Arrow field, named `item` | T's, on the `item` field |
//!
//! Every Arrow field is nullable. Values go straight between their binary encoding and Arrow,
//! never through [`Value`](super::Value), so text, JSON and decimal text keep every byte and
//! floats every bit: [`to_arrow`] then [`from_arrow`] gives back the same tuples, byte for byte,
//! with two normalisations PostgreSQL itself applies: a `Decimal128` value comes back with
//! exactly `scale` digits after the point, and an empty list comes back as a one-dimensional
//! array of length 0. A value Arrow cannot hold exactly is an error naming its field and record,
//! never a substitute: a decimal with more digits than its precision, or more fraction digits
//! than its scale (trailing zeros aside); `NaN` in a `Decimal128`; the dates and timestamps
//! `±infinity`; a time of day outside `[00:00, 24:00)`.
//!
//! [`schema_from_arrow`] and [`from_arrow`] read the table backwards, so [`schema_to_arrow`]
//! then [`schema_from_arrow`] gives back the same [`Schema`]. They also accept Arrow types
//! written by other tools, where the mapping is exact:
//! - `Int8`, `UInt8` → `Int16`; `UInt16` → `Int32`; `UInt32` → `Int64`; `UInt64` →
//!   `Decimal { precision: 20, scale: 0 }`; `Float16` → `Float32`;
//! - `Decimal32`, `Decimal64`, `Decimal128` with a scale ≥ 0 → `Decimal`;
//! - `LargeUtf8`, `Utf8View` like `Utf8`: `Text`, unless the metadata above says otherwise
//!   (`arrow.json` alone means `Json`);
//! - `LargeBinary`, `BinaryView`, `FixedSizeBinary` without `arrow.uuid` → `Bytes`;
//! - `Date64` → `Date` (whole days only); `Time32` of seconds or milliseconds and `Time64` of
//!   nanoseconds → `Time`; `Timestamp` of any unit → `Timestamp`, or `TimestampTz` with any time
//!   zone (Arrow stores instants in UTC, so the zone name alone is dropped); nanoseconds must be
//!   whole microseconds;
//! - `LargeList` like `List`.
//!
//! Anything else (structs, maps, dictionaries, durations, lists of lists, …) is an
//! [`ArrowConversionError::UnsupportedField`] naming the field.

use std::sync::Arc;

use arrow_array::builder::{NullBufferBuilder, OffsetBufferBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    ArrowPrimitiveType, Date32Type, Date64Type, Decimal32Type, Decimal64Type, Decimal128Type, DecimalType, Float16Type,
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, FixedSizeBinaryArray, Float32Array,
    Float64Array, GenericListArray, Int16Array, Int32Array, Int64Array, ListArray, OffsetSizeTrait, RecordBatchOptions,
    StringArray, Time64MicrosecondArray, TimestampMicrosecondArray,
};
use arrow_schema::extension::{EXTENSION_TYPE_METADATA_KEY, EXTENSION_TYPE_NAME_KEY};
use arrow_schema::{ArrowError, DataType, TimeUnit};
use bytes::{BufMut, BytesMut};

use super::{Field, FieldType, RecordBatch, RecordBatchBuilder, Schema, ValueError, numeric};

/// Field metadata key naming the syncline type of a field Arrow has no exact type for.
pub const SYNCLINE_TYPE_KEY: &str = "syncline.type";

/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const EPOCH_MICROS: i64 = EPOCH_DAYS as i64 * MICROS_PER_DAY;
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Name of a list's element field, as arrow-rs names it.
const ITEM: &str = "item";

/// Why a batch or schema does not convert.
#[derive(Debug, thiserror::Error)]
pub enum ArrowConversionError {
    /// A field whose type has no counterpart on the other side.
    #[error("field {field:?}: {reason}")]
    UnsupportedField { field: String, reason: String },
    /// A value that does not convert exactly: names the field and the record.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// Arrow refused the arrays built (a bug here, not in the data).
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
}

/// What went wrong in one column, before the field's name is attached.
#[derive(Debug)]
enum Fault {
    /// Value `index` of the column (its record, at the top level).
    Cell(usize, String),
    Unsupported(String),
    Arrow(ArrowError),
}

impl From<ArrowError> for Fault {
    fn from(e: ArrowError) -> Self {
        Self::Arrow(e)
    }
}

impl Fault {
    fn at_field(self, field: &str) -> ArrowConversionError {
        match self {
            Fault::Cell(record, reason) => ValueError { field: field.to_owned(), record, reason }.into(),
            Fault::Unsupported(reason) => ArrowConversionError::UnsupportedField { field: field.to_owned(), reason },
            Fault::Arrow(e) => e.into(),
        }
    }
}

/// The Arrow schema of batches of `schema` (see the module docs for the mapping).
pub fn schema_to_arrow(schema: &Schema) -> arrow_schema::Schema {
    arrow_schema::Schema::new(schema.fields.iter().map(|f| arrow_field(&f.name, &f.field_type)).collect::<Vec<_>>())
}

/// The syncline schema of an Arrow schema; a field of a type with no syncline type is an error.
pub fn schema_from_arrow(schema: &arrow_schema::Schema) -> Result<Schema, ArrowConversionError> {
    let fields = schema.fields();
    if let Some(extra) = fields.get(i16::MAX as usize) {
        let reason = format!("a record holds at most {} fields", i16::MAX);
        return Err(ArrowConversionError::UnsupportedField { field: extra.name().clone(), reason });
    }
    fields
        .iter()
        .map(|f| match field_type(f) {
            Ok(field_type) => Ok(Field { name: f.name().clone(), field_type }),
            Err(reason) => Err(ArrowConversionError::UnsupportedField { field: f.name().clone(), reason }),
        })
        .collect::<Result<_, _>>()
        .map(|fields| Schema { fields })
}

/// Converts a batch to Arrow, one array per field.
pub fn to_arrow(batch: &RecordBatch) -> Result<arrow_array::RecordBatch, ArrowConversionError> {
    let schema = batch.schema();
    let width = schema.fields.len();
    let mut cells: Vec<Vec<_>> = (0..width).map(|_| Vec::with_capacity(batch.len())).collect();
    for record in batch.records() {
        let mut count = 0;
        for value in record.raw_values() {
            if let Some(column) = cells.get_mut(count) {
                column.push(value);
            }
            count += 1;
        }
        if count != width {
            let reason = format!("the record has {count} fields, the schema {width}");
            return Err(ValueError { field: String::new(), record: record.index(), reason }.into());
        }
    }
    let columns = schema
        .fields
        .iter()
        .zip(&cells)
        .map(|(field, cells)| column(&field.field_type, cells).map_err(|fault| fault.at_field(&field.name)))
        .collect::<Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.len()));
    Ok(arrow_array::RecordBatch::try_new_with_options(Arc::new(schema_to_arrow(schema)), columns, &options)?)
}

/// Converts an Arrow batch to a batch of binary tuples (see the module docs for the types read).
pub fn from_arrow(batch: &arrow_array::RecordBatch) -> Result<RecordBatch, ArrowConversionError> {
    let schema = Arc::new(schema_from_arrow(batch.schema_ref())?);
    let columns = schema
        .fields
        .iter()
        .zip(batch.columns())
        .map(|(field, array)| encode_column(&field.field_type, array.as_ref()).map_err(|f| f.at_field(&field.name)))
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = 2 * batch.num_rows() + columns.iter().map(|c| c.data.len() + 4 * c.spans.len()).sum::<usize>();
    let mut builder = RecordBatchBuilder::with_capacity(schema, bytes);
    for row in 0..batch.num_rows() {
        builder.push_values(columns.iter().map(|c| c.get(row)));
    }
    Ok(builder.finish())
}

// ---- Types ----------------------------------------------------------------------------------

fn fits_decimal128(precision: u8, scale: u8) -> bool {
    (1..=38).contains(&precision) && scale <= precision
}

fn arrow_type(ty: &FieldType) -> DataType {
    match ty {
        FieldType::Bool => DataType::Boolean,
        FieldType::Int16 => DataType::Int16,
        FieldType::Int32 => DataType::Int32,
        FieldType::Int64 => DataType::Int64,
        FieldType::Float32 => DataType::Float32,
        FieldType::Float64 => DataType::Float64,
        &FieldType::Decimal { precision, scale } if fits_decimal128(precision, scale) => {
            DataType::Decimal128(precision, scale as i8)
        }
        FieldType::Numeric | FieldType::Decimal { .. } | FieldType::Text | FieldType::Json | FieldType::Jsonb => {
            DataType::Utf8
        }
        FieldType::Bytes => DataType::Binary,
        FieldType::Date => DataType::Date32,
        FieldType::Time => DataType::Time64(TimeUnit::Microsecond),
        FieldType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        FieldType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        FieldType::Uuid => DataType::FixedSizeBinary(16),
        FieldType::List(element) => DataType::List(Arc::new(arrow_field(ITEM, element))),
    }
}

fn arrow_field(name: &str, ty: &FieldType) -> arrow_schema::Field {
    let field = arrow_schema::Field::new(name, arrow_type(ty), true);
    match ty {
        FieldType::Numeric => field.with_metadata([(SYNCLINE_TYPE_KEY, ty.postgres_name())]),
        &FieldType::Decimal { precision, scale } if !fits_decimal128(precision, scale) => {
            field.with_metadata([(SYNCLINE_TYPE_KEY, ty.postgres_name())])
        }
        FieldType::Json | FieldType::Jsonb => field.with_metadata([
            (SYNCLINE_TYPE_KEY, ty.postgres_name()),
            (EXTENSION_TYPE_NAME_KEY, "arrow.json".to_owned()),
            (EXTENSION_TYPE_METADATA_KEY, String::new()),
        ]),
        FieldType::Uuid => field.with_metadata([(EXTENSION_TYPE_NAME_KEY, "arrow.uuid")]),
        _ => field,
    }
}

/// The syncline type of an Arrow field, or why it has none.
fn field_type(field: &arrow_schema::Field) -> Result<FieldType, String> {
    Ok(match field.data_type() {
        DataType::Boolean => FieldType::Bool,
        DataType::Int8 | DataType::UInt8 | DataType::Int16 => FieldType::Int16,
        DataType::UInt16 | DataType::Int32 => FieldType::Int32,
        DataType::UInt32 | DataType::Int64 => FieldType::Int64,
        DataType::UInt64 => FieldType::Decimal { precision: 20, scale: 0 },
        DataType::Float16 | DataType::Float32 => FieldType::Float32,
        DataType::Float64 => FieldType::Float64,
        DataType::Decimal32(precision, scale)
        | DataType::Decimal64(precision, scale)
        | DataType::Decimal128(precision, scale) => {
            let scale = u8::try_from(*scale).map_err(|_| format!("{} has a negative scale", field.data_type()))?;
            FieldType::Decimal { precision: *precision, scale }
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => text_type(field)?,
        DataType::FixedSizeBinary(16) if field.extension_type_name() == Some("arrow.uuid") => FieldType::Uuid,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            FieldType::Bytes
        }
        DataType::Date32 | DataType::Date64 => FieldType::Date,
        DataType::Time32(TimeUnit::Second | TimeUnit::Millisecond)
        | DataType::Time64(TimeUnit::Microsecond | TimeUnit::Nanosecond) => FieldType::Time,
        DataType::Timestamp(_, None) => FieldType::Timestamp,
        DataType::Timestamp(_, Some(_)) => FieldType::TimestampTz,
        DataType::List(element) | DataType::LargeList(element) => match field_type(element)? {
            FieldType::List(_) => return Err("lists of lists are not supported".into()),
            element => FieldType::List(Box::new(element)),
        },
        other => return Err(format!("Arrow type {other} has no syncline type")),
    })
}

/// The syncline type of a text field, from its metadata.
fn text_type(field: &arrow_schema::Field) -> Result<FieldType, String> {
    let Some(name) = field.metadata().get(SYNCLINE_TYPE_KEY) else {
        let json = field.extension_type_name() == Some("arrow.json");
        return Ok(if json { FieldType::Json } else { FieldType::Text });
    };
    let decimal = || {
        let (precision, scale) = name.strip_prefix("numeric(")?.strip_suffix(')')?.split_once(',')?;
        Some(FieldType::Decimal { precision: precision.trim().parse().ok()?, scale: scale.trim().parse().ok()? })
    };
    match name.as_str() {
        "numeric" => Ok(FieldType::Numeric),
        "json" => Ok(FieldType::Json),
        "jsonb" => Ok(FieldType::Jsonb),
        _ => decimal().ok_or_else(|| format!("unknown {SYNCLINE_TYPE_KEY} {name:?}")),
    }
}

// ---- Tuples to Arrow ------------------------------------------------------------------------

/// The Arrow array of one column's encoded values (`None` for NULL).
fn column(ty: &FieldType, cells: &[Option<&[u8]>]) -> Result<ArrayRef, Fault> {
    Ok(match ty {
        FieldType::Bool => Arc::new(collect::<BooleanArray, _>(cells, |b| Ok(fixed::<1>(ty, b)?[0] != 0))?),
        FieldType::Int16 => Arc::new(collect::<Int16Array, _>(cells, |b| Ok(i16::from_be_bytes(fixed(ty, b)?)))?),
        FieldType::Int32 => Arc::new(collect::<Int32Array, _>(cells, |b| Ok(i32::from_be_bytes(fixed(ty, b)?)))?),
        FieldType::Int64 => Arc::new(collect::<Int64Array, _>(cells, |b| Ok(i64::from_be_bytes(fixed(ty, b)?)))?),
        FieldType::Float32 => Arc::new(collect::<Float32Array, _>(cells, |b| Ok(f32::from_be_bytes(fixed(ty, b)?)))?),
        FieldType::Float64 => Arc::new(collect::<Float64Array, _>(cells, |b| Ok(f64::from_be_bytes(fixed(ty, b)?)))?),
        FieldType::Numeric => Arc::new(collect::<StringArray, _>(cells, numeric_text)?),
        &FieldType::Decimal { precision, scale } if fits_decimal128(precision, scale) => {
            let decimals = collect::<Decimal128Array, _>(cells, |b| {
                let (negative, digits) = unscaled(&numeric_text(b)?, precision, scale)?;
                let value = if digits.is_empty() { 0 } else { digits.parse::<i128>().map_err(|e| e.to_string())? };
                Ok(if negative { -value } else { value })
            })?;
            Arc::new(decimals.with_precision_and_scale(precision, scale as i8)?)
        }
        &FieldType::Decimal { precision, scale } => Arc::new(collect::<StringArray, _>(cells, |b| {
            let text = numeric_text(b)?;
            check_decimal_text(&text, precision, scale)?;
            Ok(text)
        })?),
        FieldType::Text => Arc::new(collect::<StringArray, _>(cells, |b| utf8(ty, b))?),
        FieldType::Bytes => Arc::new(collect::<BinaryArray, _>(cells, Ok)?),
        FieldType::Date => Arc::new(collect::<Date32Array, _>(cells, |b| {
            let days = i32::from_be_bytes(fixed(ty, b)?);
            let days = (days != i32::MAX && days != i32::MIN).then_some(days).ok_or("infinity has no Arrow date")?;
            days.checked_add(EPOCH_DAYS).ok_or_else(|| format!("{days} days from 2000-01-01 are out of range"))
        })?),
        FieldType::Time => Arc::new(collect::<Time64MicrosecondArray, _>(cells, |b| {
            let micros = i64::from_be_bytes(fixed(ty, b)?);
            time_of_day(micros)
        })?),
        FieldType::Timestamp => Arc::new(collect::<TimestampMicrosecondArray, _>(cells, |b| timestamp(ty, b))?),
        FieldType::TimestampTz => {
            Arc::new(collect::<TimestampMicrosecondArray, _>(cells, |b| timestamp(ty, b))?.with_timezone("UTC"))
        }
        FieldType::Uuid => {
            let uuids = collect::<Vec<_>, _>(cells, |b| fixed::<16>(ty, b))?;
            Arc::new(FixedSizeBinaryArray::try_from_sparse_iter_with_size(uuids.into_iter(), 16)?)
        }
        FieldType::Json => Arc::new(collect::<StringArray, _>(cells, |b| json(ty, b))?),
        FieldType::Jsonb => Arc::new(collect::<StringArray, _>(cells, |b| match b.split_first() {
            Some((1, text)) => json(ty, text),
            _ => Err("not a valid jsonb: unknown jsonb version".into()),
        })?),
        FieldType::List(element) => list_column(element, cells)?,
    })
}

/// Converts every non-NULL cell; an error names the cell's position.
fn collect<'a, A, T>(cells: &[Option<&'a [u8]>], convert: impl Fn(&'a [u8]) -> Result<T, String>) -> Result<A, Fault>
where
    A: FromIterator<Option<T>>,
{
    cells
        .iter()
        .enumerate()
        .map(|(i, cell)| cell.map(&convert).transpose().map_err(|reason| Fault::Cell(i, reason)))
        .collect()
}

fn fixed<const N: usize>(ty: &FieldType, b: &[u8]) -> Result<[u8; N], String> {
    b.try_into().map_err(|_| format!("not a valid {}: {} bytes, expected {N}", ty.postgres_name(), b.len()))
}

fn utf8<'a>(ty: &FieldType, b: &'a [u8]) -> Result<&'a str, String> {
    std::str::from_utf8(b).map_err(|e| format!("not a valid {}: {e}", ty.postgres_name()))
}

fn json<'a>(ty: &FieldType, b: &'a [u8]) -> Result<&'a str, String> {
    let text = utf8(ty, b)?;
    check_json(text)?;
    Ok(text)
}

fn check_json(text: &str) -> Result<(), String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text).map(|_| ()).map_err(|e| format!("not valid JSON: {e}"))
}

fn numeric_text(b: &[u8]) -> Result<String, String> {
    numeric::decode(b).ok_or_else(|| "not a valid numeric: malformed digits".into())
}

/// The digits of decimal `text` times 10^`scale`, without leading zeros, and whether it is
/// negative; an error unless it has at most `precision` of them and nothing beyond `scale`.
fn unscaled(text: &str, precision: u8, scale: u8) -> Result<(bool, String), String> {
    let does_not_fit = || format!("{text} does not fit numeric({precision},{scale})");
    let (negative, unsigned) = text.strip_prefix('-').map_or((false, text), |rest| (true, rest));
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(does_not_fit());
    }
    let scale = usize::from(scale);
    let (kept, dropped) = frac.split_at(frac.len().min(scale));
    if dropped.bytes().any(|b| b != b'0') {
        return Err(format!("{} (more than {scale} digits after the point)", does_not_fit()));
    }
    let digits = format!("{int}{kept:0<scale$}").trim_start_matches('0').to_owned();
    if digits.len() > usize::from(precision) {
        return Err(format!("{} (more than {precision} digits)", does_not_fit()));
    }
    Ok((negative && !digits.is_empty(), digits))
}

/// Checks a decimal that travels as text: like PostgreSQL's `numeric(p,s)`, it may be `NaN`.
fn check_decimal_text(text: &str, precision: u8, scale: u8) -> Result<(), String> {
    if text != "NaN" {
        unscaled(text, precision, scale)?;
    }
    Ok(())
}

fn time_of_day(micros: i64) -> Result<i64, String> {
    (0..MICROS_PER_DAY).contains(&micros).then_some(micros).ok_or_else(|| format!("{micros} µs is not a time of day"))
}

/// Microseconds from Arrow's epoch of an encoded timestamp.
fn timestamp(ty: &FieldType, b: &[u8]) -> Result<i64, String> {
    let micros = i64::from_be_bytes(fixed(ty, b)?);
    if micros == i64::MAX || micros == i64::MIN {
        return Err("infinity has no Arrow timestamp".into());
    }
    micros.checked_add(EPOCH_MICROS).ok_or_else(|| format!("{micros} µs from 2000-01-01 are out of range"))
}

/// A list column: the elements of every list, flattened into one child array.
fn list_column(element: &FieldType, cells: &[Option<&[u8]>]) -> Result<ArrayRef, Fault> {
    let mut offsets = OffsetBufferBuilder::<i32>::new(cells.len());
    let mut nulls = NullBufferBuilder::new(cells.len());
    let mut items = Vec::new();
    // The position of each record's first element among `items`.
    let mut starts = Vec::with_capacity(cells.len());
    for (i, cell) in cells.iter().enumerate() {
        starts.push(items.len());
        match cell {
            Some(b) => {
                array_items(b, &mut items).map_err(|reason| Fault::Cell(i, reason))?;
                nulls.append_non_null();
            }
            None => nulls.append_null(),
        }
        offsets.push_length(items.len() - starts[i]);
    }
    let values = column(element, &items).map_err(|fault| element_fault(&starts, fault))?;
    Ok(Arc::new(ListArray::try_new(Arc::new(arrow_field(ITEM, element)), offsets.finish(), values, nulls.finish())?))
}

/// Moves a fault at a list element to the record holding it; `starts` are the positions of
/// each record's first element.
fn element_fault(starts: &[usize], fault: Fault) -> Fault {
    match fault {
        Fault::Cell(item, reason) => {
            let record = starts.partition_point(|&start| start <= item).saturating_sub(1);
            Fault::Cell(record, format!("element {}: {reason}", item - starts[record] + 1))
        }
        other => other,
    }
}

/// Appends the encoded elements of a one-dimensional PostgreSQL array.
fn array_items<'a>(b: &'a [u8], items: &mut Vec<Option<&'a [u8]>>) -> Result<(), String> {
    let word = |at: usize| {
        b.get(at..at + 4)
            .map(|w| i32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .ok_or_else(|| "not a valid array: truncated".to_owned())
    };
    match word(0)? {
        0 => return Ok(()),
        1 => {}
        dims => return Err(format!("not a valid array: {dims} dimensions; only one is supported")),
    }
    let count = usize::try_from(word(12)?).map_err(|_| "not a valid array: negative length")?;
    let mut pos = 20;
    for _ in 0..count {
        let len = word(pos)?;
        pos += 4;
        let Ok(len) = usize::try_from(len) else {
            items.push(None);
            continue;
        };
        items.push(Some(b.get(pos..pos + len).ok_or("not a valid array: truncated")?));
        pos += len;
    }
    Ok(())
}

// ---- Arrow to tuples ------------------------------------------------------------------------

/// One column's encoded values, back to back.
#[derive(Debug, Default)]
struct Cells {
    data: BytesMut,
    /// Where each value is in `data` (`None` for NULL).
    spans: Vec<Option<(usize, usize)>>,
}

impl Cells {
    fn get(&self, index: usize) -> Option<&[u8]> {
        self.spans.get(index).copied().flatten().map(|(start, end)| &self.data[start..end])
    }
}

fn encode_each<T>(
    values: impl IntoIterator<Item = Option<T>>,
    encode: impl Fn(T, &mut BytesMut),
) -> Result<Cells, Fault> {
    try_encode_each(values, |value, out| {
        encode(value, out);
        Ok(())
    })
}

fn try_encode_each<T>(
    values: impl IntoIterator<Item = Option<T>>,
    encode: impl Fn(T, &mut BytesMut) -> Result<(), String>,
) -> Result<Cells, Fault> {
    let mut cells = Cells::default();
    for (i, value) in values.into_iter().enumerate() {
        let span = match value {
            None => None,
            Some(value) => {
                let start = cells.data.len();
                encode(value, &mut cells.data).map_err(|reason| Fault::Cell(i, reason))?;
                Some((start, cells.data.len()))
            }
        };
        cells.spans.push(span);
    }
    Ok(cells)
}

/// The encoded values of an Arrow array holding values of `ty` (as [`field_type`] read it).
fn encode_column(ty: &FieldType, array: &dyn Array) -> Result<Cells, Fault> {
    match array.data_type() {
        DataType::Boolean => encode_each(array.as_boolean(), |v, out| out.put_u8(v.into())),
        DataType::Int8 => encode_each(array.as_primitive::<Int8Type>(), |v, out| out.put_i16(v.into())),
        DataType::UInt8 => encode_each(array.as_primitive::<UInt8Type>(), |v, out| out.put_i16(v.into())),
        DataType::Int16 => encode_each(array.as_primitive::<Int16Type>(), |v, out| out.put_i16(v)),
        DataType::UInt16 => encode_each(array.as_primitive::<UInt16Type>(), |v, out| out.put_i32(v.into())),
        DataType::Int32 => encode_each(array.as_primitive::<Int32Type>(), |v, out| out.put_i32(v)),
        DataType::UInt32 => encode_each(array.as_primitive::<UInt32Type>(), |v, out| out.put_i64(v.into())),
        DataType::Int64 => encode_each(array.as_primitive::<Int64Type>(), |v, out| out.put_i64(v)),
        DataType::UInt64 => {
            try_encode_each(array.as_primitive::<UInt64Type>(), |v, out| encode_numeric(&v.to_string(), out))
        }
        DataType::Float16 => encode_each(array.as_primitive::<Float16Type>(), |v, out| out.put_f32(v.to_f32())),
        DataType::Float32 => encode_each(array.as_primitive::<Float32Type>(), |v, out| out.put_f32(v)),
        DataType::Float64 => encode_each(array.as_primitive::<Float64Type>(), |v, out| out.put_f64(v)),
        &DataType::Decimal32(precision, scale) => decimal_cells::<Decimal32Type>(array, precision, scale),
        &DataType::Decimal64(precision, scale) => decimal_cells::<Decimal64Type>(array, precision, scale),
        &DataType::Decimal128(precision, scale) => decimal_cells::<Decimal128Type>(array, precision, scale),
        DataType::Utf8 => text_cells(ty, array.as_string::<i32>()),
        DataType::LargeUtf8 => text_cells(ty, array.as_string::<i64>()),
        DataType::Utf8View => text_cells(ty, array.as_string_view()),
        DataType::Binary => encode_each(array.as_binary::<i32>(), |v, out| out.put_slice(v)),
        DataType::LargeBinary => encode_each(array.as_binary::<i64>(), |v, out| out.put_slice(v)),
        DataType::BinaryView => encode_each(array.as_binary_view(), |v, out| out.put_slice(v)),
        DataType::FixedSizeBinary(_) => encode_each(array.as_fixed_size_binary(), |v, out| out.put_slice(v)),
        DataType::Date32 => try_encode_each(array.as_primitive::<Date32Type>(), encode_date),
        DataType::Date64 => try_encode_each(array.as_primitive::<Date64Type>(), |ms, out| {
            let days = (ms % 86_400_000 == 0).then(|| i32::try_from(ms / 86_400_000).ok()).flatten();
            encode_date(days.ok_or_else(|| format!("{ms} ms is not a whole date in range"))?, out)
        }),
        &DataType::Time32(unit) | &DataType::Time64(unit) => try_encode_each(widened(array, unit)?, |v, out| {
            out.put_i64(time_of_day(micros(v, unit)?)?);
            Ok(())
        }),
        &DataType::Timestamp(unit, _) => try_encode_each(widened(array, unit)?, |v, out| {
            let micros = micros(v, unit)?;
            let pg = micros.checked_sub(EPOCH_MICROS).filter(|&m| m != i64::MIN && m != i64::MAX);
            out.put_i64(pg.ok_or_else(|| format!("{micros} µs from 1970-01-01 are out of range"))?);
            Ok(())
        }),
        DataType::List(_) => list_cells(ty, array.as_list::<i32>()),
        DataType::LargeList(_) => list_cells(ty, array.as_list::<i64>()),
        other => Err(Fault::Unsupported(format!("Arrow type {other} has no syncline type"))),
    }
}

fn encode_numeric(text: &str, out: &mut BytesMut) -> Result<(), String> {
    // `numeric::encode` has no infinities; PostgreSQL 14+ encodes them as these sign words.
    let sign: u16 = match text {
        "Infinity" => 0xD000,
        "-Infinity" => 0xF000,
        _ => return numeric::encode(text, out).ok_or_else(|| format!("{text:?} is not a decimal number")),
    };
    out.put_slice(&[0, 0, 0, 0]);
    out.put_u16(sign);
    out.put_u16(0);
    Ok(())
}

fn encode_date(days: i32, out: &mut BytesMut) -> Result<(), String> {
    let pg = days.checked_sub(EPOCH_DAYS).filter(|&d| d != i32::MIN && d != i32::MAX);
    out.put_i32(pg.ok_or_else(|| format!("{days} days from 1970-01-01 are out of range"))?);
    Ok(())
}

/// The values of a time or timestamp array in its own `unit`, as `i64`.
fn widened(array: &dyn Array, unit: TimeUnit) -> Result<Vec<Option<i64>>, Fault> {
    fn values<T: ArrowPrimitiveType>(array: &dyn Array) -> Vec<Option<i64>>
    where
        T::Native: Into<i64>,
    {
        array.as_primitive::<T>().iter().map(|v| v.map(Into::into)).collect()
    }
    Ok(match (array.data_type(), unit) {
        (DataType::Time32(_), TimeUnit::Second) => values::<Time32SecondType>(array),
        (DataType::Time32(_), TimeUnit::Millisecond) => values::<Time32MillisecondType>(array),
        (DataType::Time64(_), TimeUnit::Microsecond) => values::<Time64MicrosecondType>(array),
        (DataType::Time64(_), TimeUnit::Nanosecond) => values::<Time64NanosecondType>(array),
        (DataType::Timestamp(..), TimeUnit::Second) => values::<TimestampSecondType>(array),
        (DataType::Timestamp(..), TimeUnit::Millisecond) => values::<TimestampMillisecondType>(array),
        (DataType::Timestamp(..), TimeUnit::Microsecond) => values::<TimestampMicrosecondType>(array),
        (DataType::Timestamp(..), TimeUnit::Nanosecond) => values::<TimestampNanosecondType>(array),
        (other, _) => return Err(Fault::Unsupported(format!("Arrow type {other} has no syncline type"))),
    })
}

/// `value` in `unit`, in whole microseconds.
fn micros(value: i64, unit: TimeUnit) -> Result<i64, String> {
    let micros = match unit {
        TimeUnit::Second => value.checked_mul(1_000_000),
        TimeUnit::Millisecond => value.checked_mul(1_000),
        TimeUnit::Microsecond => Some(value),
        TimeUnit::Nanosecond => (value % 1_000 == 0).then_some(value / 1_000),
    };
    micros.ok_or_else(|| format!("{value} {unit:?} is not a whole number of microseconds in range"))
}

fn decimal_cells<T: DecimalType>(array: &dyn Array, precision: u8, scale: i8) -> Result<Cells, Fault>
where
    T::Native: Into<i128>,
{
    let scale = usize::try_from(scale).map_err(|_| Fault::Unsupported(format!("negative scale {scale}")))?;
    try_encode_each(array.as_primitive::<T>(), |v, out| {
        let v: i128 = v.into();
        let digits = format!("{:0>width$}", v.unsigned_abs(), width = scale + 1);
        let (int, frac) = digits.split_at(digits.len() - scale);
        let sign = if v < 0 { "-" } else { "" };
        let text = if scale == 0 { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") };
        if 10u128.checked_pow(precision.into()).is_some_and(|limit| v.unsigned_abs() >= limit) {
            return Err(format!("{text} does not fit numeric({precision},{scale}) (more than {precision} digits)"));
        }
        encode_numeric(&text, out)
    })
}

fn text_cells<'a>(ty: &FieldType, values: impl IntoIterator<Item = Option<&'a str>>) -> Result<Cells, Fault> {
    match *ty {
        FieldType::Numeric => try_encode_each(values, encode_numeric),
        FieldType::Decimal { precision, scale } => try_encode_each(values, |text, out| {
            let start = out.len();
            encode_numeric(text, out)?;
            check_decimal_text(&numeric_text(&out[start..])?, precision, scale)
        }),
        FieldType::Json => try_encode_each(values, |text, out| {
            check_json(text)?;
            out.put_slice(text.as_bytes());
            Ok(())
        }),
        FieldType::Jsonb => try_encode_each(values, |text, out| {
            check_json(text)?;
            out.put_u8(1);
            out.put_slice(text.as_bytes());
            Ok(())
        }),
        _ => encode_each(values, |text, out| out.put_slice(text.as_bytes())),
    }
}

/// A list column as one-dimensional PostgreSQL arrays.
fn list_cells<O: OffsetSizeTrait>(ty: &FieldType, list: &GenericListArray<O>) -> Result<Cells, Fault> {
    let FieldType::List(element) = ty else { return Err(Fault::Unsupported(format!("{ty:?} is not a list"))) };
    let oid = element.postgres_oid().ok_or_else(|| Fault::Unsupported("lists of lists are not supported".into()))?;
    // Only the elements the rows refer to, so that positions start at 0.
    let offsets: Vec<usize> = list.value_offsets().iter().map(|o| o.as_usize()).collect();
    let (first, last) = (offsets[0], offsets[offsets.len() - 1]);
    let starts: Vec<usize> = offsets.iter().map(|o| o - first).collect();
    let items = encode_column(element, list.values().slice(first, last - first).as_ref())
        .map_err(|fault| element_fault(&starts, fault))?;
    let rows = (0..list.len()).map(|i| list.is_valid(i).then_some(starts[i]..starts[i + 1]));
    try_encode_each(rows, |range, out| {
        let len = i32::try_from(range.len()).map_err(|_| "the list is too long for PostgreSQL")?;
        out.put_i32(1);
        out.put_i32(range.clone().any(|j| items.get(j).is_none()).into());
        out.put_u32(oid);
        out.put_i32(len);
        out.put_i32(1);
        for item in range.map(|j| items.get(j)) {
            match item {
                Some(b) => {
                    out.put_i32(b.len() as i32);
                    out.put_slice(b);
                }
                None => out.put_i32(-1),
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use arrow_array::types::Decimal128Type;
    use arrow_array::{
        Date64Array, DurationSecondArray, FixedSizeBinaryArray, Int8Array, Int32Array, LargeListArray,
        LargeStringArray, StringViewArray, Time32MillisecondArray, TimestampNanosecondArray, UInt64Array,
    };
    use chrono::{NaiveDate, NaiveDateTime};
    use serde_json::json;

    use super::*;
    use crate::record::Value;

    fn schema(fields: &[(&str, FieldType)]) -> Arc<Schema> {
        let fields = fields.iter().map(|(name, ty)| Field { name: (*name).into(), field_type: ty.clone() }).collect();
        Arc::new(Schema { fields })
    }

    fn ts(y: i32, m: u32, d: u32, micros: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d).and_then(|d| d.and_hms_micro_opt(20, 17, 40, micros)).expect("a valid time")
    }

    fn list(ty: FieldType) -> FieldType {
        FieldType::List(Box::new(ty))
    }

    fn round_trip(batch: &RecordBatch) -> arrow_array::RecordBatch {
        let arrow = to_arrow(batch).expect("converts to arrow");
        let back = from_arrow(&arrow).expect("converts back");
        assert_eq!(back.schema(), batch.schema());
        assert_eq!(back.len(), batch.len());
        assert_eq!(back.data(), batch.data(), "byte for byte");
        arrow
    }

    #[test]
    fn every_type_round_trips_byte_for_byte() {
        use FieldType::*;
        let schema = schema(&[
            ("bool", Bool),
            ("i16", Int16),
            ("i32", Int32),
            ("i64", Int64),
            ("f32", Float32),
            ("f64", Float64),
            ("numeric", Numeric),
            ("price", Decimal { precision: 12, scale: 2 }),
            ("huge", Decimal { precision: 50, scale: 10 }),
            ("text", Text),
            ("bytes", Bytes),
            ("date", Date),
            ("time", Time),
            ("ts", Timestamp),
            ("tstz", TimestampTz),
            ("uuid", Uuid),
            ("json", Json),
            ("jsonb", Jsonb),
            ("ints", list(Int32)),
            ("texts", list(Text)),
            ("prices", list(Decimal { precision: 5, scale: 2 })),
            ("times", list(Timestamp)),
            ("docs", list(Jsonb)),
        ]);
        let moon = ts(1969, 7, 20, 123_456);
        let uuid = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        let rows = [
            vec![
                Value::Bool(true),
                Value::Int(-7),
                Value::Int(i32::MIN.into()),
                Value::Int(i64::MAX),
                Value::Float(1.5),
                Value::Float(-0.1),
                Value::Decimal("-123456789012345678901234567890.000000000001".into()),
                Value::Decimal("-12345.67".into()),
                Value::Decimal("-1234567890123456789012345678901234567890.0123456789".into()),
                Value::Text("naïve 🎉 👩‍👩‍👧 ∑".into()),
                Value::Bytes(vec![0, 255, 1]),
                Value::Date(moon.date()),
                Value::Time(moon.time()),
                Value::Timestamp(moon),
                Value::TimestampTz(ts(1901, 12, 13, 1).and_utc()),
                Value::Uuid(uuid),
                Value::Json(json!({"a": [1, "x"], "b": null})),
                Value::Json(json!({"nested": {"🎉": 1.5}})),
                Value::List(vec![Value::Int(1), Value::Null, Value::Int(3)]),
                Value::List(vec![]),
                Value::List(vec![Value::Decimal("-1.50".into()), Value::Null]),
                Value::List(vec![Value::Timestamp(moon), Value::Timestamp(ts(1, 1, 1, 0))]),
                Value::List(vec![Value::Json(json!([])), Value::Null]),
            ],
            vec![Value::Null; 23],
            vec![
                Value::Bool(false),
                Value::Int(i16::MIN.into()),
                Value::Int(0),
                Value::Int(i64::MIN),
                Value::Float(f64::INFINITY),
                Value::Float(f64::NAN),
                Value::Decimal("NaN".into()),
                Value::Decimal("0.00".into()),
                Value::Decimal("0.0000000000".into()),
                Value::Text(String::new()),
                Value::Bytes(vec![]),
                Value::Date(NaiveDate::from_ymd_opt(2262, 4, 12).expect("a date")),
                Value::Time(chrono::NaiveTime::MIN),
                Value::Timestamp(ts(2400, 2, 29, 999_999)),
                Value::TimestampTz(ts(1970, 1, 1, 0).and_utc()),
                Value::Uuid(uuid::Uuid::nil()),
                Value::Json(json!(null)),
                Value::Json(json!("🎉")),
                Value::List(vec![Value::Null]),
                Value::List(vec![Value::Text(String::new()), Value::Null]),
                Value::List(vec![]),
                Value::List(vec![Value::Null, Value::Null]),
                Value::List(vec![]),
            ],
        ];
        let mut builder = RecordBatchBuilder::with_capacity(schema.clone(), 4096);
        for row in &rows {
            builder.push_row(row).expect("the row fits the schema");
        }
        let batch = builder.finish();
        let arrow = round_trip(&batch);
        assert_eq!(schema_from_arrow(&schema_to_arrow(&schema)).expect("reads back"), *schema);

        // The Arrow side holds the values a reader of the format expects.
        let col = |name: &str| arrow.column_by_name(name).expect("the column").clone();
        assert!(arrow.schema().fields().iter().all(|f| f.is_nullable()));
        assert_eq!(col("price").data_type(), &DataType::Decimal128(12, 2));
        assert_eq!(col("price").as_primitive::<Decimal128Type>().value(0), -1_234_567);
        assert_eq!(col("huge").as_string::<i32>().value(0), "-1234567890123456789012345678901234567890.0123456789");
        assert_eq!(col("numeric").as_string::<i32>().value(2), "NaN");
        assert_eq!(col("text").as_string::<i32>().value(0), "naïve 🎉 👩‍👩‍👧 ∑");
        let days = moon.date().signed_duration_since(NaiveDate::default()).num_days();
        assert_eq!(i64::from(col("date").as_primitive::<Date32Type>().value(0)), days);
        assert_eq!(col("ts").as_primitive::<TimestampMicrosecondType>().value(0), moon.and_utc().timestamp_micros());
        assert_eq!(col("tstz").data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        assert_eq!(col("time").as_primitive::<Time64MicrosecondType>().value(0), 73_060_123_456);
        assert_eq!(col("uuid").as_fixed_size_binary().value(0), uuid.as_bytes());
        assert_eq!(arrow.schema().field_with_name("uuid").expect("uuid").extension_type_name(), Some("arrow.uuid"));
        let ints = col("ints");
        let ints = ints.as_list::<i32>();
        assert_eq!((ints.value_length(0), ints.value(0).null_count(), ints.is_null(1)), (3, 1, true));
        assert_eq!(col("texts").as_list::<i32>().value_length(0), 0);
        assert!(col("bool").is_null(1) && col("docs").is_null(1));
    }

    #[test]
    fn stored_text_and_special_values_survive() {
        let schema = schema(&[
            ("json", FieldType::Json),
            ("jsonb", FieldType::Jsonb),
            ("n", FieldType::Numeric),
            ("f", FieldType::Float64),
        ]);
        let nan = f64::from_bits(0x7ff8_0000_0000_0001).to_be_bytes();
        let mut builder = RecordBatchBuilder::with_capacity(schema, 256);
        builder.push_values([
            Some(&b"{\"b\": 1,  \"a\": [ ] }"[..]),
            Some(&b"\x01{\"z\":1,\"a\":2}"[..]),
            Some(&[0, 0, 0, 0, 0xD0, 0, 0, 0][..]),
            Some(&nan[..]),
        ]);
        builder.push_values([None, None, Some(&[0, 0, 0, 0, 0xF0, 0, 0, 0][..]), None]);
        let arrow = round_trip(&builder.finish());
        let numeric = arrow.column(2).as_string::<i32>();
        assert_eq!((numeric.value(0), numeric.value(1)), ("Infinity", "-Infinity"));
        assert_eq!(arrow.column(0).as_string::<i32>().value(0), "{\"b\": 1,  \"a\": [ ] }");
    }

    fn to_arrow_error(ty: FieldType, rows: &[Value]) -> ValueError {
        let mut builder = RecordBatchBuilder::with_capacity(schema(&[("d", ty)]), 256);
        for value in rows {
            builder.push_row([value]).expect("encodes");
        }
        match to_arrow(&builder.finish()) {
            Err(ArrowConversionError::Value(e)) => e,
            other => panic!("expected a value error, got {other:?}"),
        }
    }

    #[test]
    fn decimals_that_do_not_fit_are_errors() {
        let price = FieldType::Decimal { precision: 5, scale: 2 };
        let fits = Value::Decimal("-999.99".into());
        let err = to_arrow_error(price.clone(), &[fits.clone(), Value::Decimal("1234.5".into())]);
        assert_eq!((err.field.as_str(), err.record), ("d", 1));
        assert!(err.reason.contains("does not fit numeric(5,2)"), "{err}");
        let err = to_arrow_error(price.clone(), &[Value::Decimal("1.234".into())]);
        assert!(err.reason.contains("more than 2 digits after the point"), "{err}");
        assert_eq!(to_arrow_error(price.clone(), &[Value::Null, Value::Decimal("NaN".into())]).record, 1);
        let wide = FieldType::Decimal { precision: 40, scale: 0 };
        let err = to_arrow_error(wide.clone(), &[Value::Decimal("NaN".into()), Value::Decimal("1e40".into())]);
        assert_eq!(err.record, 1, "the text form checks precision too, and holds NaN");
        let err = to_arrow_error(
            list(FieldType::Decimal { precision: 3, scale: 0 }),
            &[Value::List(vec![Value::Int(1)]), Value::List(vec![Value::Null, Value::Int(1000)])],
        );
        assert_eq!(err.record, 1);
        assert!(err.reason.starts_with("element 2: 1000 does not fit"), "{err}");

        // Arrow does not check precision when arrays are built; reading back does.
        let decimals = Decimal128Array::from(vec![Some(100), Some(10_000_000)]).with_precision_and_scale(5, 2);
        let arrow = arrow_array::RecordBatch::try_from_iter([("d", Arc::new(decimals.expect("valid")) as ArrayRef)]);
        match from_arrow(&arrow.expect("a batch")) {
            Err(ArrowConversionError::Value(e)) => assert_eq!((e.field.as_str(), e.record), ("d", 1)),
            other => panic!("expected a value error, got {other:?}"),
        }
    }

    #[test]
    fn values_arrow_cannot_hold_are_errors() {
        let schema = schema(&[("at", FieldType::Timestamp), ("day", FieldType::Date), ("t", FieldType::Time)]);
        let cases: [(usize, [Option<Vec<u8>>; 3]); 3] = [
            (0, [Some(i64::MAX.to_be_bytes().to_vec()), None, None]),
            (1, [None, Some(i32::MIN.to_be_bytes().to_vec()), None]),
            (2, [None, None, Some(MICROS_PER_DAY.to_be_bytes().to_vec())]),
        ];
        for (field, values) in cases {
            let mut builder = RecordBatchBuilder::with_capacity(schema.clone(), 64);
            builder.push_values([None, None, None]);
            builder.push_values(values.iter().map(|v| v.as_deref()));
            match to_arrow(&builder.finish()) {
                Err(ArrowConversionError::Value(e)) => {
                    assert_eq!((e.field.as_str(), e.record), (schema.fields[field].name.as_str(), 1))
                }
                other => panic!("expected a value error, got {other:?}"),
            }
        }
    }

    #[test]
    fn unsupported_arrow_types_are_errors_naming_the_field() {
        let arrow = arrow_array::RecordBatch::try_from_iter([
            ("id", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
            ("span", Arc::new(DurationSecondArray::from(vec![5])) as ArrayRef),
        ])
        .expect("a batch");
        let err = from_arrow(&arrow).expect_err("durations have no syncline type");
        assert!(matches!(&err, ArrowConversionError::UnsupportedField { field, .. } if field == "span"), "{err}");
        assert_eq!(err.to_string(), "field \"span\": Arrow type Duration(s) has no syncline type");

        let odd = arrow_schema::Field::new("odd", DataType::Utf8, true).with_metadata([(SYNCLINE_TYPE_KEY, "money")]);
        let err = schema_from_arrow(&arrow_schema::Schema::new(vec![odd])).expect_err("unknown syncline type");
        assert!(err.to_string().starts_with("field \"odd\""), "{err}");
    }

    #[test]
    fn plain_arrow_types_are_read() {
        let nanos = TimestampNanosecondArray::from(vec![Some(1_000), None]).with_timezone("Europe/Paris");
        let fixed = FixedSizeBinaryArray::try_from_sparse_iter_with_size([Some([1u8, 2, 3, 4]), None].into_iter(), 4);
        let lists = LargeListArray::from_iter_primitive::<Int8Type, _, _>([Some(vec![Some(1), None]), None]);
        let arrow = arrow_array::RecordBatch::try_from_iter([
            ("i8", Arc::new(Int8Array::from(vec![Some(-8), None])) as ArrayRef),
            ("u64", Arc::new(UInt64Array::from(vec![Some(u64::MAX), None]))),
            ("large", Arc::new(LargeStringArray::from(vec![Some("x"), None]))),
            ("view", Arc::new(StringViewArray::from(vec![Some("🎉"), None]))),
            ("date", Arc::new(Date64Array::from(vec![Some(-86_400_000), None]))),
            ("time", Arc::new(Time32MillisecondArray::from(vec![Some(1_500), None]))),
            ("at", Arc::new(nanos)),
            ("fixed", Arc::new(fixed.expect("fixed-size binary"))),
            ("lists", Arc::new(lists)),
        ])
        .expect("a batch");
        let batch = from_arrow(&arrow).expect("plain types convert");
        let types: Vec<_> = batch.schema().fields.iter().map(|f| f.field_type.clone()).collect();
        use FieldType::*;
        let expected =
            [Int16, Decimal { precision: 20, scale: 0 }, Text, Text, Date, Time, TimestampTz, Bytes, list(Int16)];
        assert_eq!(types, expected);
        let epoch = NaiveDate::default();
        assert_eq!(
            batch.record(0).values().expect("decodes"),
            vec![
                Value::Int(-8),
                Value::Decimal(u64::MAX.to_string()),
                Value::Text("x".into()),
                Value::Text("🎉".into()),
                Value::Date(epoch.pred_opt().expect("a day")),
                Value::Time(chrono::NaiveTime::from_hms_milli_opt(0, 0, 1, 500).expect("a time")),
                Value::TimestampTz(epoch.and_hms_micro_opt(0, 0, 0, 1).expect("a timestamp").and_utc()),
                Value::Bytes(vec![1, 2, 3, 4]),
                Value::List(vec![Value::Int(1), Value::Null]),
            ]
        );
        assert_eq!(batch.record(1).values().expect("decodes"), vec![Value::Null; 9]);

        let sub_micro = TimestampNanosecondArray::from(vec![Some(2_000), Some(1_001)]);
        let arrow = arrow_array::RecordBatch::try_from_iter([("at", Arc::new(sub_micro) as ArrayRef)]);
        match from_arrow(&arrow.expect("a batch")) {
            Err(ArrowConversionError::Value(e)) => assert_eq!((e.field.as_str(), e.record), ("at", 1)),
            other => panic!("expected a value error, got {other:?}"),
        }
    }
}
