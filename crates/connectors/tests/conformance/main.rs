//! The conformance suite (`syncline_connectors::conformance`) for every connector, one module
//! per connector with its fixture. Adding a connector: a module like `memory.rs` with its
//! [`Fixture`](syncline_connectors::conformance::Fixture) and the line
//! `syncline_connectors::conformance_suite!(<fixture expression>);`, and its `mod` line here.

mod memory;
mod mysql;
mod postgres;

use syncline_core::record::{FieldType, Value};

/// Every field type with a value that round-trips exactly.
pub fn every_type() -> Vec<(FieldType, Value)> {
    let ts = chrono::NaiveDate::from_ymd_opt(1969, 7, 20)
        .and_then(|d| d.and_hms_micro_opt(20, 17, 40, 123_456))
        .expect("a timestamp");
    vec![
        (FieldType::Bool, Value::Bool(true)),
        (FieldType::Int16, Value::Int(-7)),
        (FieldType::Int32, Value::Int(i32::MIN.into())),
        (FieldType::Int64, Value::Int(i64::MAX)),
        (FieldType::Float32, Value::Float(1.5)),
        (FieldType::Float64, Value::Float(-0.1)),
        (FieldType::Decimal { precision: 38, scale: 10 }, Value::Decimal("-1234567890.0123456789".into())),
        (FieldType::Numeric, Value::Decimal("0.0005".into())),
        (FieldType::Text, Value::Text("naïve 🎉 'quoted' \"too\"".into())),
        (FieldType::Bytes, Value::Bytes(vec![0, 255, 1])),
        (FieldType::Date, Value::Date(ts.date())),
        (FieldType::Time, Value::Time(ts.time())),
        (FieldType::Timestamp, Value::Timestamp(ts)),
        (FieldType::TimestampTz, Value::TimestampTz(ts.and_utc())),
        (FieldType::Uuid, Value::Uuid(uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef))),
        (FieldType::Json, Value::Json(serde_json::json!({"a": [1, "x"], "b": null}))),
        (FieldType::Jsonb, Value::Json(serde_json::json!({"nested": {"b": 2.5}}))),
        (FieldType::List(Box::new(FieldType::Int32)), Value::List(vec![Value::Int(1), Value::Null, Value::Int(3)])),
        (
            FieldType::List(Box::new(FieldType::Text)),
            Value::List(vec![Value::Text("a".into()), Value::Text("é".into())]),
        ),
    ]
}
