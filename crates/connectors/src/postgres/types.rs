//! Mapping PostgreSQL column types onto record field types.

use syncline_core::record::FieldType;
use tokio_postgres::types::Type;

/// Column types whose binary encoding is a record field type's, with that type.
const NATIVE: &[(Type, FieldType)] = &[
    (Type::BOOL, FieldType::Bool),
    (Type::INT2, FieldType::Int16),
    (Type::INT4, FieldType::Int32),
    (Type::INT8, FieldType::Int64),
    (Type::FLOAT4, FieldType::Float32),
    (Type::FLOAT8, FieldType::Float64),
    (Type::NUMERIC, FieldType::Numeric),
    (Type::TEXT, FieldType::Text),
    (Type::BYTEA, FieldType::Bytes),
    (Type::DATE, FieldType::Date),
    (Type::TIME, FieldType::Time),
    (Type::TIMESTAMP, FieldType::Timestamp),
    (Type::TIMESTAMPTZ, FieldType::TimestampTz),
    (Type::UUID, FieldType::Uuid),
    (Type::JSON, FieldType::Json),
    (Type::JSONB, FieldType::Jsonb),
];

/// Array column types read as lists, with their element type.
const ARRAYS: &[(Type, Type)] = &[
    (Type::BOOL_ARRAY, Type::BOOL),
    (Type::INT2_ARRAY, Type::INT2),
    (Type::INT4_ARRAY, Type::INT4),
    (Type::INT8_ARRAY, Type::INT8),
    (Type::FLOAT4_ARRAY, Type::FLOAT4),
    (Type::FLOAT8_ARRAY, Type::FLOAT8),
    (Type::NUMERIC_ARRAY, Type::NUMERIC),
    (Type::TEXT_ARRAY, Type::TEXT),
    (Type::DATE_ARRAY, Type::DATE),
    (Type::TIMESTAMP_ARRAY, Type::TIMESTAMP),
    (Type::TIMESTAMPTZ_ARRAY, Type::TIMESTAMPTZ),
    (Type::UUID_ARRAY, Type::UUID),
    (Type::JSONB_ARRAY, Type::JSONB),
];

/// The field type whose binary encoding a column of type `ty` already has, if any. Columns of
/// other types (enums, intervals, varchar arrays, …) are read as text.
pub(super) fn native(ty: &Type) -> Option<FieldType> {
    if let Some((_, field_type)) = NATIVE.iter().find(|(t, _)| t == ty) {
        return Some(field_type.clone());
    }
    if *ty == Type::VARCHAR || *ty == Type::NAME {
        return Some(FieldType::Text);
    }
    let (_, element) = ARRAYS.iter().find(|(t, _)| t == ty)?;
    Some(FieldType::List(Box::new(native(element)?)))
}

/// The field type a column of type `ty` is read as.
pub(super) fn field_type(ty: &Type) -> FieldType {
    native(ty).unwrap_or(FieldType::Text)
}

/// The field type a column of type `oid` is read as (text for types unknown here: enums,
/// domains, extensions' types).
pub(super) fn field_type_of(oid: u32) -> FieldType {
    Type::from_oid(oid).map_or(FieldType::Text, |ty| field_type(&ty))
}

/// Whether a column of type `oid` accepts values in `field_type`'s binary format as they are.
pub(super) fn accepts_binary(oid: u32, field_type: &FieldType) -> bool {
    let exact = match field_type {
        FieldType::List(element) => ARRAYS
            .iter()
            .find(|(_, e)| NATIVE.iter().any(|(t, f)| t == e && f == element.as_ref()))
            .map(|(array, _)| array.oid()),
        FieldType::Decimal { .. } => Some(Type::NUMERIC.oid()),
        other => NATIVE.iter().find(|(_, f)| f == other).map(|(t, _)| t.oid()),
    };
    exact == Some(oid) || (*field_type == FieldType::Text && oid == Type::VARCHAR.oid())
}

/// Whether a column of type `oid` is `jsonb` and `field_type` JSON text, which it takes after
/// jsonb's version byte.
pub(super) fn json_into_jsonb(oid: u32, field_type: &FieldType) -> bool {
    *field_type == FieldType::Json && oid == Type::JSONB.oid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_formats_match_only_identical_types() {
        assert!(accepts_binary(Type::INT8.oid(), &FieldType::Int64));
        assert!(accepts_binary(Type::VARCHAR.oid(), &FieldType::Text));
        assert!(accepts_binary(Type::INT4_ARRAY.oid(), &FieldType::List(Box::new(FieldType::Int32))));
        assert!(!accepts_binary(Type::INT4.oid(), &FieldType::Int64));
        assert!(!accepts_binary(Type::TEXT.oid(), &FieldType::Jsonb));
        assert!(!accepts_binary(Type::JSONB.oid(), &FieldType::Json));
        assert!(json_into_jsonb(Type::JSONB.oid(), &FieldType::Json));
        assert!(!json_into_jsonb(Type::JSON.oid(), &FieldType::Json));
        assert_eq!(field_type(&Type::INTERVAL), FieldType::Text);
        assert_eq!(field_type(&Type::TEXT_ARRAY), FieldType::List(Box::new(FieldType::Text)));
        assert_eq!(field_type(&Type::VARCHAR_ARRAY), FieldType::Text);
    }
}
