//! Mapping PostgreSQL column types onto record field types.

use syncline_core::record::FieldType;
use tokio_postgres::types::Type;

/// The field type whose binary encoding a column of type `ty` already has, if any. Columns of
/// other types (enums, arrays, intervals, …) are read as text.
pub(super) fn native(ty: &Type) -> Option<FieldType> {
    Some(match *ty {
        Type::BOOL => FieldType::Bool,
        Type::INT2 => FieldType::Int16,
        Type::INT4 => FieldType::Int32,
        Type::INT8 => FieldType::Int64,
        Type::FLOAT4 => FieldType::Float32,
        Type::FLOAT8 => FieldType::Float64,
        Type::NUMERIC => FieldType::Numeric,
        Type::TEXT | Type::VARCHAR | Type::NAME => FieldType::Text,
        Type::BYTEA => FieldType::Bytes,
        Type::DATE => FieldType::Date,
        Type::TIMESTAMP => FieldType::Timestamp,
        Type::TIMESTAMPTZ => FieldType::TimestampTz,
        Type::UUID => FieldType::Uuid,
        Type::JSON => FieldType::Json,
        Type::JSONB => FieldType::Jsonb,
        _ => return None,
    })
}

/// The field type a column of type `ty` is read as.
pub(super) fn field_type(ty: &Type) -> FieldType {
    native(ty).unwrap_or(FieldType::Text)
}
