//! MariaDB's and MySQL's spelling of filters and constants.

use syncline_core::sync::filter::{Scalar, Unit};

use crate::predicate::Spelling;

/// Numbers and booleans are written bare, strings quoted with backslashes escaped.
pub(super) struct Mysql;

impl Spelling for Mysql {
    fn literal(&self, value: &Scalar) -> String {
        match value {
            Scalar::Text(text) => self.string(text),
            // A JSON number, which is valid SQL as written.
            Scalar::Number(number) => number.clone(),
            Scalar::Bool(b) => b.to_string(),
        }
    }

    fn string(&self, text: &str) -> String {
        format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
    }

    fn text(&self, expr: &str) -> String {
        expr.to_owned()
    }

    fn ago(&self, amount: i64, unit: Unit) -> String {
        format!("(current_timestamp - interval {amount} {})", unit.as_str())
    }

    fn array_contains(&self, expr: &str, value: &Scalar) -> String {
        let element = match value {
            Scalar::Text(text) => serde_json::Value::String(text.clone()).to_string(),
            other => other.text(),
        };
        format!("json_contains({expr}, {})", self.string(&element))
    }
}

/// `value` (`None`: NULL) as a constant.
pub(super) fn constant(value: Option<&Scalar>) -> String {
    value.map_or_else(|| "null".to_owned(), |value| Mysql.literal(value))
}
