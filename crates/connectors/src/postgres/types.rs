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

/// Whether a column of type `oid` accepts values in `field_type`'s binary format as they are.
pub(super) fn accepts_binary(oid: u32, field_type: FieldType) -> bool {
    let exact = match field_type {
        FieldType::Bool => Type::BOOL,
        FieldType::Int16 => Type::INT2,
        FieldType::Int32 => Type::INT4,
        FieldType::Int64 => Type::INT8,
        FieldType::Float32 => Type::FLOAT4,
        FieldType::Float64 => Type::FLOAT8,
        FieldType::Numeric => Type::NUMERIC,
        FieldType::Text => Type::TEXT,
        FieldType::Bytes => Type::BYTEA,
        FieldType::Date => Type::DATE,
        FieldType::Timestamp => Type::TIMESTAMP,
        FieldType::TimestampTz => Type::TIMESTAMPTZ,
        FieldType::Uuid => Type::UUID,
        FieldType::Json => Type::JSON,
        FieldType::Jsonb => Type::JSONB,
    };
    oid == exact.oid() || (field_type == FieldType::Text && oid == Type::VARCHAR.oid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_formats_match_only_identical_types() {
        assert!(accepts_binary(Type::INT8.oid(), FieldType::Int64));
        assert!(accepts_binary(Type::VARCHAR.oid(), FieldType::Text));
        assert!(!accepts_binary(Type::INT4.oid(), FieldType::Int64));
        assert!(!accepts_binary(Type::TEXT.oid(), FieldType::Jsonb));
        assert_eq!(field_type(&Type::INTERVAL), FieldType::Text);
    }
}
