//! PostgreSQL's spelling of filters and constants.

use syncline_core::sync::filter::{Scalar, Unit};

use super::client::quote_literal;
use crate::predicate::Spelling;

/// Constants are untyped string literals, which PostgreSQL reads as the type they meet.
pub(super) struct Postgres;

impl Spelling for Postgres {
    fn literal(&self, value: &Scalar) -> String {
        quote_literal(&value.text())
    }

    fn string(&self, text: &str) -> String {
        quote_literal(text)
    }

    fn text(&self, expr: &str) -> String {
        format!("({expr})::text")
    }

    fn ago(&self, amount: i64, unit: Unit) -> String {
        format!("(current_timestamp - interval '{amount} {}')", unit.as_str())
    }

    fn array_contains(&self, expr: &str, value: &Scalar) -> String {
        format!("{} = any({expr})", self.literal(value))
    }
}

/// `value` (`None`: NULL) as a constant of type `data_type`.
pub(super) fn constant(value: Option<&Scalar>, data_type: &str) -> String {
    match value {
        Some(value) => format!("cast({} as {data_type})", Postgres.literal(value)),
        None => format!("cast(null as {data_type})"),
    }
}
