//! Mapping MySQL / MariaDB column types onto record field types, and values both ways.
//!
//! | column | field type |
//! |---|---|
//! | `TINYINT(1)`, `BOOL`, `BIT(1)` | `Bool` (a `TINYINT(1)` holding another number fails the record) |
//! | `TINYINT`, `SMALLINT`, `YEAR` | `Int16` |
//! | `SMALLINT UNSIGNED`, `MEDIUMINT`, `INT` | `Int32` |
//! | `INT UNSIGNED`, `BIGINT` | `Int64` |
//! | `BIGINT UNSIGNED` | `Decimal(20, 0)`, so values above 2⁶³ survive |
//! | `FLOAT`, `DOUBLE` | `Float32`, `Float64` |
//! | `DECIMAL(p, s)` | `Decimal(p, s)`, read as text: exact at every precision up to 65 |
//! | `CHAR`, `VARCHAR`, `TEXT`, `ENUM`, `SET` | `Text` (read as `utf8mb4`) |
//! | `BINARY`, `VARBINARY`, `BLOB`, `BIT(n > 1)`, `GEOMETRY` | `Bytes` |
//! | `JSON` (MariaDB: a `LONGTEXT` with a `json_valid` check) | `Json` |
//! | `DATE`, `TIME`, `DATETIME` | `Date`, `Time`, `Timestamp` |
//! | `TIMESTAMP` | `TimestampTz` (sessions run in UTC) |
//!
//! JSON text is passed on as the server sends it. Values that have no field value fail the read
//! with an error naming field and record, never a substitute: zero dates (`0000-00-00`,
//! `2024-00-00`), and `TIME`s outside a day (MySQL's `TIME` spans ±838 hours).

use bytes::{BufMut, BytesMut};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use mysql_async::{
    Column, Value as MyValue,
    consts::{ColumnFlags, ColumnType},
};
use serde::de::IgnoredAny;
use syncline_core::record::{FieldType, Value};

/// The character set number of binary strings.
pub(super) const BINARY_CHARSET: u16 = 63;

/// What decides a column's field type, from result metadata or from its declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ColumnInfo {
    ty: ColumnType,
    unsigned: bool,
    /// Display width (`TINYINT(1)`), bits (`BIT(n)`) or precision (`DECIMAL(p, s)`).
    width: u32,
    scale: u8,
    /// A binary string (no character set).
    binary: bool,
    /// Known to hold JSON.
    json: bool,
}

impl ColumnInfo {
    /// From a result column's metadata; `json` when the column is known to hold JSON (MariaDB
    /// reports its JSON columns as `LONGTEXT`).
    pub(super) fn from_column(column: &Column, json: bool) -> Self {
        let unsigned = column.flags().contains(ColumnFlags::UNSIGNED_FLAG);
        let scale = column.decimals();
        let width = match column.column_type() {
            // The display length counts the point and the sign.
            ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL => {
                column.column_length().saturating_sub(u32::from(scale > 0) + u32::from(!unsigned))
            }
            _ => column.column_length(),
        };
        let binary = column.character_set() == BINARY_CHARSET;
        Self { ty: column.column_type(), unsigned, width, scale, binary, json }
    }

    /// From `information_schema.columns`: `data_type`, `column_type` (`decimal(38,10)`,
    /// `int(10) unsigned`) and `character_set_name` (none for binary strings).
    pub(super) fn from_declared(data_type: &str, column_type: &str, charset: Option<&str>, json: bool) -> Self {
        use ColumnType::*;
        let column_type = column_type.to_ascii_lowercase();
        let args: Vec<u32> = column_type
            .split_once('(')
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(args, _)| args.split(',').filter_map(|a| a.trim().parse().ok()).collect())
            .unwrap_or_default();
        let ty = match data_type.to_ascii_lowercase().as_str() {
            "tinyint" | "bool" | "boolean" => MYSQL_TYPE_TINY,
            "smallint" => MYSQL_TYPE_SHORT,
            "mediumint" => MYSQL_TYPE_INT24,
            "int" | "integer" => MYSQL_TYPE_LONG,
            "bigint" => MYSQL_TYPE_LONGLONG,
            "float" => MYSQL_TYPE_FLOAT,
            "double" | "real" => MYSQL_TYPE_DOUBLE,
            "decimal" | "numeric" => MYSQL_TYPE_NEWDECIMAL,
            "date" => MYSQL_TYPE_DATE,
            "time" => MYSQL_TYPE_TIME,
            "datetime" => MYSQL_TYPE_DATETIME,
            "timestamp" => MYSQL_TYPE_TIMESTAMP,
            "year" => MYSQL_TYPE_YEAR,
            "bit" => MYSQL_TYPE_BIT,
            "json" => MYSQL_TYPE_JSON,
            "enum" => MYSQL_TYPE_ENUM,
            "set" => MYSQL_TYPE_SET,
            "char" | "binary" => MYSQL_TYPE_STRING,
            "tinytext" | "text" | "mediumtext" | "longtext" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                MYSQL_TYPE_BLOB
            }
            "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon"
            | "geometrycollection" => MYSQL_TYPE_GEOMETRY,
            _ => MYSQL_TYPE_VAR_STRING,
        };
        let binary = charset.is_none() && !matches!(ty, MYSQL_TYPE_ENUM | MYSQL_TYPE_SET);
        Self {
            ty,
            unsigned: column_type.contains("unsigned"),
            width: args.first().copied().unwrap_or(if ty == MYSQL_TYPE_BIT { 1 } else { 0 }),
            scale: args.get(1).map_or(0, |s| u8::try_from(*s).unwrap_or(u8::MAX)),
            binary,
            json,
        }
    }
}

/// The field type a column is read as (see the module's table).
pub(super) fn field_type(c: &ColumnInfo) -> FieldType {
    use ColumnType::*;
    match c.ty {
        _ if c.json => FieldType::Json,
        MYSQL_TYPE_TINY | MYSQL_TYPE_BIT if c.width == 1 => FieldType::Bool,
        MYSQL_TYPE_TINY | MYSQL_TYPE_YEAR => FieldType::Int16,
        MYSQL_TYPE_SHORT if !c.unsigned => FieldType::Int16,
        MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 => FieldType::Int32,
        MYSQL_TYPE_LONG if !c.unsigned => FieldType::Int32,
        MYSQL_TYPE_LONG => FieldType::Int64,
        MYSQL_TYPE_LONGLONG if !c.unsigned => FieldType::Int64,
        MYSQL_TYPE_LONGLONG => FieldType::Decimal { precision: 20, scale: 0 },
        MYSQL_TYPE_FLOAT => FieldType::Float32,
        MYSQL_TYPE_DOUBLE => FieldType::Float64,
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => {
            FieldType::Decimal { precision: u8::try_from(c.width).unwrap_or(u8::MAX), scale: c.scale }
        }
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => FieldType::Date,
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => FieldType::Time,
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => FieldType::Timestamp,
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => FieldType::TimestampTz,
        MYSQL_TYPE_JSON => FieldType::Json,
        MYSQL_TYPE_BIT => FieldType::Bytes,
        _ if c.binary => FieldType::Bytes,
        _ => FieldType::Text,
    }
}

/// A value read over the binary protocol as a value of field type `ty`; the error says why it
/// has none.
pub(super) fn from_mysql(value: MyValue, ty: &FieldType) -> Result<Value, String> {
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"));
    Ok(match (ty, value) {
        (_, MyValue::NULL) => Value::Null,
        (FieldType::Bool, MyValue::Int(v @ (0 | 1))) => Value::Bool(v == 1),
        (FieldType::Bool, MyValue::UInt(v @ (0 | 1))) => Value::Bool(v == 1),
        (FieldType::Bool, MyValue::Bytes(b)) if b.len() == 1 && b[0] <= 1 => Value::Bool(b[0] == 1),
        (FieldType::Int16 | FieldType::Int32 | FieldType::Int64, MyValue::Int(v)) => Value::Int(v),
        (FieldType::Int16 | FieldType::Int32 | FieldType::Int64, MyValue::UInt(v)) => {
            Value::Int(i64::try_from(v).map_err(|_| format!("{v} is out of range"))?)
        }
        (FieldType::Decimal { .. } | FieldType::Numeric, MyValue::Int(v)) => Value::Decimal(v.to_string()),
        (FieldType::Decimal { .. } | FieldType::Numeric, MyValue::UInt(v)) => Value::Decimal(v.to_string()),
        (FieldType::Decimal { .. } | FieldType::Numeric, MyValue::Bytes(b)) => Value::Decimal(text(b)?),
        (FieldType::Float32 | FieldType::Float64, MyValue::Float(v)) => Value::Float(f64::from(v)),
        (FieldType::Float32 | FieldType::Float64, MyValue::Double(v)) => Value::Float(v),
        (FieldType::Text, MyValue::Bytes(b)) => Value::Text(text(b)?),
        (FieldType::Bytes, MyValue::Bytes(b)) => Value::Bytes(b),
        (FieldType::Json, MyValue::Bytes(b)) => {
            Value::Json(serde_json::from_slice(&b).map_err(|e| format!("not valid JSON: {e}"))?)
        }
        (FieldType::Date, MyValue::Date(y, m, d, ..)) => Value::Date(date(y, m, d)?),
        (FieldType::Timestamp, MyValue::Date(y, m, d, h, i, s, us)) => {
            Value::Timestamp(date_time(y, m, d, h, i, s, us)?)
        }
        (FieldType::TimestampTz, MyValue::Date(y, m, d, h, i, s, us)) => {
            Value::TimestampTz(date_time(y, m, d, h, i, s, us)?.and_utc())
        }
        (FieldType::Time, MyValue::Time(negative, days, h, i, s, us)) => {
            let time = (!negative && days == 0)
                .then(|| NaiveTime::from_hms_micro_opt(h.into(), i.into(), s.into(), us))
                .flatten();
            let sign = if negative { "-" } else { "" };
            let shown = || format!("{sign}{}:{i:02}:{s:02}", u32::from(h) + days * 24);
            Value::Time(time.ok_or_else(|| format!("{} is not a time of day", shown()))?)
        }
        (ty, value) => return Err(format!("{value:?} is not a {}", ty.postgres_name())),
    })
}

/// Appends the encoding of a value read over the binary protocol as a value of field type `ty`
/// to `out`; `Ok(false)` for NULL, which appends nothing. JSON goes as sent (checked, not parsed
/// into a tree and written again), other values as [`from_mysql`] reads them.
pub(super) fn encode(value: MyValue, ty: &FieldType, out: &mut BytesMut) -> Result<bool, String> {
    match (ty, value) {
        (_, MyValue::NULL) => return Ok(false),
        (FieldType::Json, MyValue::Bytes(b)) => {
            serde_json::from_slice::<IgnoredAny>(&b).map_err(|e| format!("not valid JSON: {e}"))?;
            out.put_slice(&b);
        }
        (ty, value) => from_mysql(value, ty)?.encode(ty, out).map_err(|e| e.0)?,
    }
    Ok(true)
}

fn date(y: u16, m: u8, d: u8) -> Result<NaiveDate, String> {
    NaiveDate::from_ymd_opt(y.into(), m.into(), d.into())
        .ok_or_else(|| format!("'{y:04}-{m:02}-{d:02}' is not a date (a MySQL zero date?)"))
}

#[allow(clippy::too_many_arguments)]
fn date_time(y: u16, m: u8, d: u8, h: u8, i: u8, s: u8, us: u32) -> Result<NaiveDateTime, String> {
    date(y, m, d)?
        .and_hms_micro_opt(h.into(), i.into(), s.into(), us)
        .ok_or_else(|| format!("'{h:02}:{i:02}:{s:02}.{us:06}' is not a time of day"))
}

/// A record value as a statement parameter: decimals, UUIDs and JSON as text, booleans as 0/1,
/// timestamps as UTC date-times. Dates outside MySQL's years 0–9999 go as text, which the
/// server refuses.
pub(super) fn to_mysql(value: &Value) -> MyValue {
    let text = |s: &str| MyValue::Bytes(s.as_bytes().to_vec());
    match value {
        Value::Null => MyValue::NULL,
        Value::Bool(v) => MyValue::Int(i64::from(*v)),
        Value::Int(v) => MyValue::Int(*v),
        Value::Float(v) => MyValue::Double(*v),
        Value::Decimal(v) | Value::Text(v) => text(v),
        Value::Bytes(v) => MyValue::Bytes(v.clone()),
        Value::Date(d) => match u16::try_from(d.year()).ok().filter(|y| *y <= 9999) {
            Some(y) => MyValue::Date(y, d.month() as u8, d.day() as u8, 0, 0, 0, 0),
            None => text(&d.to_string()),
        },
        Value::Time(t) => MyValue::Time(
            false,
            0,
            t.hour() as u8,
            t.minute() as u8,
            t.second() as u8,
            (t.nanosecond() / 1000).min(999_999),
        ),
        Value::Timestamp(ts) => timestamp(ts),
        Value::TimestampTz(ts) => timestamp(&ts.naive_utc()),
        Value::Uuid(v) => text(&v.to_string()),
        Value::Json(_) | Value::List(_) => text(&value.to_json().to_string()),
    }
}

fn timestamp(ts: &NaiveDateTime) -> MyValue {
    match u16::try_from(ts.year()).ok().filter(|y| *y <= 9999) {
        Some(y) => MyValue::Date(
            y,
            ts.month() as u8,
            ts.day() as u8,
            ts.hour() as u8,
            ts.minute() as u8,
            ts.second() as u8,
            (ts.nanosecond() / 1000).min(999_999),
        ),
        None => MyValue::Bytes(ts.to_string().into_bytes()),
    }
}

/// The column type [`Destination::apply`](syncline_core::connector::Destination::apply)
/// creates for a field. Identity text is `VARCHAR(255)` with a bytewise collation without
/// padding, so identities match exactly; other text is `LONGTEXT`. Timestamps with a time zone
/// are stored as UTC `DATETIME(6)` (`TIMESTAMP` ends in 2038). Decimals wider than MySQL's
/// `DECIMAL(65, 30)` get that.
pub(super) fn column_definition(ty: &FieldType, key: bool, mariadb: bool) -> String {
    let bytewise = if mariadb { "utf8mb4_nopad_bin" } else { "utf8mb4_0900_bin" };
    match ty {
        FieldType::Bool => "boolean".into(),
        FieldType::Int16 => "smallint".into(),
        FieldType::Int32 => "int".into(),
        FieldType::Int64 => "bigint".into(),
        FieldType::Float32 => "float".into(),
        FieldType::Float64 => "double".into(),
        FieldType::Decimal { precision, scale } if *precision <= 65 && *scale <= 30 && scale <= precision => {
            format!("decimal({precision},{scale})")
        }
        FieldType::Numeric | FieldType::Decimal { .. } => "decimal(65,30)".into(),
        FieldType::Text if key => format!("varchar(255) character set utf8mb4 collate {bytewise}"),
        FieldType::Text => "longtext character set utf8mb4".into(),
        FieldType::Bytes if key => "varbinary(255)".into(),
        FieldType::Bytes => "longblob".into(),
        FieldType::Uuid => "char(36) character set ascii".into(),
        FieldType::Date => "date".into(),
        FieldType::Time => "time(6)".into(),
        FieldType::Timestamp | FieldType::TimestampTz => "datetime(6)".into(),
        FieldType::Json | FieldType::Jsonb | FieldType::List(_) => "json".into(),
    }
}

/// What the comment of a column a bulk sync creates starts with; the field type follows as JSON.
const COMMENT_PREFIX: &str = "syncline:";

/// The comment a bulk sync gives a column of field type `ty`, naming it, so the table reads back
/// as the fields it was created from ([`commented`]): `DATETIME(6)` holds both timestamps,
/// `CHAR(36)` a UUID, `JSON` lists.
pub(super) fn comment(ty: &FieldType) -> String {
    format!("{COMMENT_PREFIX}{}", serde_json::to_string(ty).unwrap_or_default())
}

/// The field type a column's comment names, if [`comment`] wrote it.
pub(super) fn commented(comment: &str) -> Option<FieldType> {
    serde_json::from_str(comment.strip_prefix(COMMENT_PREFIX)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(data_type: &str, column_type: &str, charset: Option<&str>) -> FieldType {
        field_type(&ColumnInfo::from_declared(data_type, column_type, charset, false))
    }

    fn column(ty: ColumnType, flags: ColumnFlags, length: u32, decimals: u8, charset: u16) -> FieldType {
        let column = Column::new(ty)
            .with_flags(flags)
            .with_column_length(length)
            .with_decimals(decimals)
            .with_character_set(charset);
        field_type(&ColumnInfo::from_column(&column, false))
    }

    #[test]
    fn maps_declared_types() {
        let utf8 = Some("utf8mb4");
        let cases = [
            ("tinyint", "tinyint(1)", None, FieldType::Bool),
            ("bit", "bit(1)", None, FieldType::Bool),
            ("bit", "bit(8)", None, FieldType::Bytes),
            ("tinyint", "tinyint(4)", None, FieldType::Int16),
            ("tinyint", "tinyint unsigned", None, FieldType::Int16),
            ("smallint", "smallint(6)", None, FieldType::Int16),
            ("smallint", "smallint(5) unsigned", None, FieldType::Int32),
            ("mediumint", "mediumint(8) unsigned", None, FieldType::Int32),
            ("int", "int(11)", None, FieldType::Int32),
            ("int", "int(10) unsigned", None, FieldType::Int64),
            ("bigint", "bigint(20)", None, FieldType::Int64),
            ("bigint", "bigint(20) unsigned", None, FieldType::Decimal { precision: 20, scale: 0 }),
            ("float", "float", None, FieldType::Float32),
            ("double", "double", None, FieldType::Float64),
            ("decimal", "decimal(38,10)", None, FieldType::Decimal { precision: 38, scale: 10 }),
            ("decimal", "decimal(65,30)", None, FieldType::Decimal { precision: 65, scale: 30 }),
            ("varchar", "varchar(10)", utf8, FieldType::Text),
            ("longtext", "longtext", utf8, FieldType::Text),
            ("enum", "enum('a','b')", utf8, FieldType::Text),
            ("set", "set('a','b')", utf8, FieldType::Text),
            ("varbinary", "varbinary(10)", None, FieldType::Bytes),
            ("blob", "blob", None, FieldType::Bytes),
            ("json", "json", None, FieldType::Json),
            ("date", "date", None, FieldType::Date),
            ("time", "time(6)", None, FieldType::Time),
            ("datetime", "datetime(6)", None, FieldType::Timestamp),
            ("timestamp", "timestamp(6)", None, FieldType::TimestampTz),
            ("year", "year(4)", None, FieldType::Int16),
        ];
        for (data_type, column_type, charset, expected) in cases {
            assert_eq!(declared(data_type, column_type, charset), expected, "{column_type}");
        }
        let json = ColumnInfo::from_declared("longtext", "longtext", Some("utf8mb4"), true);
        assert_eq!(field_type(&json), FieldType::Json);
    }

    #[test]
    fn maps_result_metadata() {
        use ColumnType::*;
        let none = ColumnFlags::empty();
        let unsigned = ColumnFlags::UNSIGNED_FLAG;
        assert_eq!(column(MYSQL_TYPE_TINY, none, 1, 0, 63), FieldType::Bool);
        assert_eq!(column(MYSQL_TYPE_TINY, none, 4, 0, 63), FieldType::Int16);
        assert_eq!(column(MYSQL_TYPE_LONG, unsigned, 10, 0, 63), FieldType::Int64);
        assert_eq!(column(MYSQL_TYPE_LONGLONG, unsigned, 20, 0, 63), FieldType::Decimal { precision: 20, scale: 0 });
        // DECIMAL(38,10): 38 digits, a point and a sign.
        assert_eq!(column(MYSQL_TYPE_NEWDECIMAL, none, 40, 10, 63), FieldType::Decimal { precision: 38, scale: 10 });
        assert_eq!(column(MYSQL_TYPE_NEWDECIMAL, unsigned, 5, 0, 63), FieldType::Decimal { precision: 5, scale: 0 });
        assert_eq!(column(MYSQL_TYPE_VAR_STRING, none, 40, 0, 45), FieldType::Text);
        assert_eq!(column(MYSQL_TYPE_VAR_STRING, ColumnFlags::BINARY_FLAG, 10, 0, 63), FieldType::Bytes);
        assert_eq!(column(MYSQL_TYPE_BLOB, ColumnFlags::BLOB_FLAG, 0, 0, 224), FieldType::Text);
        assert_eq!(column(MYSQL_TYPE_TIMESTAMP, none, 26, 6, 63), FieldType::TimestampTz);
        assert_eq!(column(MYSQL_TYPE_DATETIME, none, 26, 6, 63), FieldType::Timestamp);
        assert_eq!(column(MYSQL_TYPE_BIT, unsigned, 1, 0, 63), FieldType::Bool);
        assert_eq!(column(MYSQL_TYPE_JSON, none, 0, 0, 45), FieldType::Json);
    }

    #[test]
    fn reads_values_exactly() {
        let decimal = FieldType::Decimal { precision: 20, scale: 0 };
        assert_eq!(from_mysql(MyValue::UInt(u64::MAX), &decimal), Ok(Value::Decimal("18446744073709551615".into())));
        let d = FieldType::Decimal { precision: 38, scale: 10 };
        let exact = "-1234567890123456789012345678.0123456789";
        assert_eq!(from_mysql(MyValue::Bytes(exact.into()), &d), Ok(Value::Decimal(exact.into())));
        assert_eq!(from_mysql(MyValue::Bytes(vec![1]), &FieldType::Bool), Ok(Value::Bool(true)));
        assert_eq!(from_mysql(MyValue::Int(0), &FieldType::Bool), Ok(Value::Bool(false)));
        assert!(from_mysql(MyValue::Int(2), &FieldType::Bool).is_err(), "a TINYINT(1) holding 2 is no boolean");
        assert_eq!(from_mysql(MyValue::Bytes("🎉".into()), &FieldType::Text), Ok(Value::Text("🎉".into())));
        let ts = NaiveDate::from_ymd_opt(2024, 2, 29).and_then(|d| d.and_hms_micro_opt(23, 59, 58, 123_456));
        let ts = ts.expect("valid");
        let raw = MyValue::Date(2024, 2, 29, 23, 59, 58, 123_456);
        assert_eq!(from_mysql(raw.clone(), &FieldType::Timestamp), Ok(Value::Timestamp(ts)));
        assert_eq!(from_mysql(raw, &FieldType::TimestampTz), Ok(Value::TimestampTz(ts.and_utc())));
        assert_eq!(from_mysql(MyValue::NULL, &FieldType::Date), Ok(Value::Null));
        assert_eq!(
            from_mysql(MyValue::Bytes(br#"{"a": [1]}"#.to_vec()), &FieldType::Json),
            Ok(Value::Json(serde_json::json!({"a": [1]})))
        );
    }

    #[test]
    fn encodes_in_place_with_json_as_sent() {
        let encoded = |value: MyValue, ty: &FieldType| {
            let mut out = BytesMut::new();
            encode(value, ty, &mut out).map(|some| some.then(|| out.to_vec()))
        };
        let json = br#"{"b": 1, "a": ["x"]}"#;
        assert_eq!(encoded(MyValue::Bytes(json.to_vec()), &FieldType::Json), Ok(Some(json.to_vec())));
        assert!(encoded(MyValue::Bytes(b"{".to_vec()), &FieldType::Json).unwrap_err().contains("not valid JSON"));
        assert_eq!(encoded(MyValue::NULL, &FieldType::Json), Ok(None));
        assert_eq!(encoded(MyValue::Int(7), &FieldType::Int32), Ok(Some(7i32.to_be_bytes().to_vec())));
        assert!(encoded(MyValue::Int(1 << 40), &FieldType::Int32).is_err());
        assert!(encoded(MyValue::Bytes(vec![0xff]), &FieldType::Text).unwrap_err().contains("not UTF-8"));
    }

    #[test]
    fn zero_dates_and_long_times_are_errors() {
        let zero = from_mysql(MyValue::Date(0, 0, 0, 0, 0, 0, 0), &FieldType::Date).unwrap_err();
        assert!(zero.contains("'0000-00-00' is not a date"), "{zero}");
        assert!(from_mysql(MyValue::Date(2024, 0, 0, 0, 0, 0, 0), &FieldType::Timestamp).is_err());
        let long = from_mysql(MyValue::Time(false, 1, 2, 0, 0, 0), &FieldType::Time).unwrap_err();
        assert!(long.contains("26:00:00"), "{long}");
        assert!(from_mysql(MyValue::Time(true, 0, 1, 0, 0, 0), &FieldType::Time).is_err());
        assert!(from_mysql(MyValue::Int(5), &FieldType::Text).is_err());
    }

    #[test]
    fn values_bind_as_the_server_takes_them() {
        let ts = NaiveDate::from_ymd_opt(2038, 1, 19).and_then(|d| d.and_hms_micro_opt(3, 14, 8, 5)).expect("valid");
        assert_eq!(to_mysql(&Value::TimestampTz(ts.and_utc())), MyValue::Date(2038, 1, 19, 3, 14, 8, 5));
        assert_eq!(to_mysql(&Value::Bool(true)), MyValue::Int(1));
        assert_eq!(to_mysql(&Value::Decimal("1.50".into())), MyValue::Bytes(b"1.50".to_vec()));
        assert_eq!(to_mysql(&Value::Json(serde_json::json!({"a": 1}))), MyValue::Bytes(br#"{"a":1}"#.to_vec()));
        let bc = NaiveDate::from_ymd_opt(-5, 1, 1).expect("valid");
        assert!(matches!(to_mysql(&Value::Date(bc)), MyValue::Bytes(_)), "the server refuses it");
        for ty in [FieldType::Int64, FieldType::Decimal { precision: 38, scale: 10 }, FieldType::Time] {
            let value = match ty {
                FieldType::Time => Value::Time(ts.time()),
                FieldType::Int64 => Value::Int(-3),
                _ => Value::Decimal("-3.5".into()),
            };
            assert_eq!(from_mysql(to_mysql(&value), &ty), Ok(value));
        }
    }

    #[test]
    fn creates_exact_columns() {
        assert_eq!(column_definition(&FieldType::Decimal { precision: 38, scale: 10 }, false, true), "decimal(38,10)");
        assert_eq!(column_definition(&FieldType::Numeric, false, true), "decimal(65,30)");
        assert!(column_definition(&FieldType::Text, true, true).ends_with("utf8mb4_nopad_bin"));
        assert_eq!(column_definition(&FieldType::TimestampTz, false, true), "datetime(6)");
    }

    #[test]
    fn comments_name_field_types() {
        let list = FieldType::List(Box::new(FieldType::Decimal { precision: 38, scale: 10 }));
        for ty in [FieldType::TimestampTz, FieldType::Uuid, FieldType::Jsonb, list] {
            assert_eq!(commented(&comment(&ty)), Some(ty));
        }
        assert_eq!(comment(&FieldType::TimestampTz), r#"syncline:"timestamp_tz""#);
        assert_eq!(commented("a comment of the user's"), None);
        assert_eq!(commented("syncline:nonsense"), None);
    }
}
