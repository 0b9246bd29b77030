//! Filter predicates and constants as SQL, spelled by each database through [`Spelling`].
//!
//! Negative tests (`Inequality`, `StringDoesNotContain`, `StringNotOneOf`, …) hold for NULL
//! values too: a field that is empty does not contain the text. String tests compare as the
//! database does (MariaDB's default collations ignore case, PostgreSQL's do not).

use syncline_core::sync::filter::{Condition, Function, Operand, Predicate, Scalar, Unit};

/// How a database spells what filters differ in.
pub(crate) trait Spelling {
    /// A constant, in a form the database turns into the type of whatever it is compared with.
    fn literal(&self, value: &Scalar) -> String;

    /// A string literal.
    fn string(&self, text: &str) -> String;

    /// `expr` as text, for the string tests.
    fn text(&self, expr: &str) -> String;

    /// The moment `amount` `unit`s before now.
    fn ago(&self, amount: i64, unit: Unit) -> String;

    /// Whether array `expr` has `value` as an element.
    fn array_contains(&self, expr: &str, value: &Scalar) -> String;
}

/// The SQL of `predicate`; `column` gives the expression of a field by name.
pub(crate) fn render(predicate: &Predicate, column: &dyn Fn(&str) -> String, spelling: &dyn Spelling) -> String {
    let join = |parts: &[Predicate], with: &str| {
        let parts: Vec<String> = parts.iter().map(|p| format!("({})", render(p, column, spelling))).collect();
        parts.join(with)
    };
    match predicate {
        Predicate::Test(condition) => test(condition, &column(&condition.field), spelling),
        Predicate::All(parts) => join(parts, " and "),
        Predicate::Any(parts) => join(parts, " or "),
    }
}

/// `pattern` with LIKE's wildcards and its escape character escaped.
fn escape_like(pattern: &str) -> String {
    pattern.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

fn test(condition: &Condition, c: &str, spelling: &dyn Spelling) -> String {
    use Function::*;
    let lit = |value: &Scalar| spelling.literal(value);
    let or_null = |test: String| format!("({test} or {c} is null)");
    let like = |pattern: String| {
        format!("{} like {} escape {}", spelling.text(c), spelling.string(&pattern), spelling.string("\\"))
    };
    let plain_like = |pattern: &str| format!("{} like {}", spelling.text(c), spelling.string(pattern));
    let value = match &condition.operand {
        Operand::Value(value) => Some(value),
        _ => None,
    };
    let text = value.map(Scalar::text).unwrap_or_default();
    match (condition.function, &condition.operand) {
        (IsNull, _) => format!("{c} is null"),
        (IsNotNull, _) => format!("{c} is not null"),
        (True, _) => format!("{c} = true"),
        (False, _) => format!("{c} = false"),
        (Equality, Operand::Value(v)) => format!("{c} = {}", lit(v)),
        (Inequality, Operand::Value(v)) => or_null(format!("{c} <> {}", lit(v))),
        (GreaterThan, Operand::Value(v)) => format!("{c} > {}", lit(v)),
        (GreaterThanEqual | OnOrAfter, Operand::Value(v)) => format!("{c} >= {}", lit(v)),
        (LessThan, Operand::Value(v)) => format!("{c} < {}", lit(v)),
        (LessThanEqual | OnOrBefore, Operand::Value(v)) => format!("{c} <= {}", lit(v)),
        (StringContains, _) => like(format!("%{}%", escape_like(&text))),
        (StringStartsWith, _) => like(format!("{}%", escape_like(&text))),
        (StringEndsWith, _) => like(format!("%{}", escape_like(&text))),
        (StringDoesNotContain, _) => or_null(format!("not {}", like(format!("%{}%", escape_like(&text))))),
        (StringDoesNotStartWith, _) => or_null(format!("not {}", like(format!("{}%", escape_like(&text))))),
        (StringDoesNotEndWith, _) => or_null(format!("not {}", like(format!("%{}", escape_like(&text))))),
        (StringLike, _) => plain_like(&text),
        (StringNotLike, _) => or_null(format!("not {}", plain_like(&text))),
        (StringMatchesTrimmed, _) => format!("trim({}) = trim({})", spelling.text(c), spelling.string(&text)),
        (StringOneOf, Operand::List(items)) => {
            format!("{c} in ({})", items.iter().map(lit).collect::<Vec<_>>().join(", "))
        }
        (StringNotOneOf, Operand::List(items)) => {
            or_null(format!("{c} not in ({})", items.iter().map(lit).collect::<Vec<_>>().join(", ")))
        }
        (Between, Operand::Range(low, high)) => format!("{c} between {} and {}", lit(low), lit(high)),
        (ArrayContains, Operand::Value(v)) => spelling.array_contains(c, v),
        (ArrayDoesNotContain, Operand::Value(v)) => or_null(format!("not {}", spelling.array_contains(c, v))),
        (InTheLast, Operand::Ago(n, unit)) => {
            format!("{c} >= {} and {c} <= current_timestamp", spelling.ago(*n, *unit))
        }
        (RelativeOnOrAfter, Operand::Ago(n, unit)) => format!("{c} >= {}", spelling.ago(*n, *unit)),
        (RelativeOnOrBefore, Operand::Ago(n, unit)) => format!("{c} <= {}", spelling.ago(*n, *unit)),
        // An operand that does not fit its function was refused when the filter was checked.
        (function, operand) => unreachable!("{function:?} was checked with operand {operand:?}"),
    }
}

#[cfg(test)]
mod tests {
    use syncline_core::sync::filter::combine;

    use super::*;

    struct Plain;

    impl Spelling for Plain {
        fn literal(&self, value: &Scalar) -> String {
            self.string(&value.text())
        }
        fn string(&self, text: &str) -> String {
            format!("'{}'", text.replace('\'', "''"))
        }
        fn text(&self, expr: &str) -> String {
            format!("{expr}::text")
        }
        fn ago(&self, amount: i64, unit: Unit) -> String {
            format!("now() - interval '{amount} {}'", unit.as_str())
        }
        fn array_contains(&self, expr: &str, value: &Scalar) -> String {
            format!("{} = any({expr})", self.literal(value))
        }
    }

    fn condition(field: &str, function: Function, operand: Operand) -> Condition {
        Condition { field: field.into(), function, operand }
    }

    #[test]
    fn renders_logic_and_escapes_values() {
        let conditions = vec![
            condition("plan", Function::Equality, Operand::Value(Scalar::Text("pro's".into()))),
            condition("name", Function::StringContains, Operand::Value(Scalar::Text("50%_off".into()))),
            condition("age", Function::Between, Operand::Range(Scalar::Number("1".into()), Scalar::Number("9".into()))),
        ];
        let predicate = combine(conditions, Some("1 AND (2 OR 3)"), "model_filters").expect("valid").expect("some");
        let sql = render(&predicate, &|f| format!("m.\"{f}\""), &Plain);
        assert_eq!(
            sql,
            "(m.\"plan\" = 'pro''s') and ((m.\"name\"::text like '%50\\%\\_off%' escape '\\') or (m.\"age\" between '1' and '9'))"
        );
    }

    #[test]
    fn negative_tests_keep_nulls() {
        let predicate = Predicate::Test(condition(
            "tags",
            Function::StringNotOneOf,
            Operand::List(vec![Scalar::Text("a".into()), Scalar::Number("2".into())]),
        ));
        assert_eq!(render(&predicate, &|f| f.to_owned(), &Plain), "(tags not in ('a', '2') or tags is null)");
        let predicate = Predicate::Test(condition("at", Function::InTheLast, Operand::Ago(3, Unit::Day)));
        assert_eq!(
            render(&predicate, &|f| f.to_owned(), &Plain),
            "at >= now() - interval '3 day' and at <= current_timestamp"
        );
    }
}
