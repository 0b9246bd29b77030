//! Filters of a model sync (`model_filters`, `target_filters`, `overrides`): Polytomic's filter
//! functions, checked against the type of the field they test, combined by a `logic`
//! expression such as `1 AND (2 OR 3)` into a [`Predicate`] that a database renders as SQL.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Declares [`Function`] and its [`Function::ALL`] from one list.
macro_rules! functions {
    ($($name:ident),* $(,)?) => {
        /// Polytomic's `FilterFunction`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum Function {
            $($name),*
        }

        impl Function {
            /// Every function.
            pub const ALL: &[Function] = &[$(Function::$name),*];
        }
    };
}

functions!(
    Equality,
    Inequality,
    IsNull,
    IsNotNull,
    True,
    False,
    OnOrAfter,
    OnOrBefore,
    GreaterThan,
    GreaterThanEqual,
    LessThan,
    LessThanEqual,
    StringContains,
    StringStartsWith,
    StringEndsWith,
    StringDoesNotContain,
    StringDoesNotStartWith,
    StringDoesNotEndWith,
    StringOneOf,
    StringNotOneOf,
    Between,
    ArrayContains,
    ArrayDoesNotContain,
    InTheLast,
    RelativeOnOrBefore,
    RelativeOnOrAfter,
    StringLike,
    StringNotLike,
    StringMatchesTrimmed,
);

impl Function {
    /// Whether the function tests fields of `kind`.
    pub fn applies_to(self, kind: Kind) -> bool {
        use Function::*;
        let kinds: &[Kind] = match self {
            Equality | Inequality | IsNull | IsNotNull => return true,
            True | False => &[Kind::Boolean],
            OnOrAfter | OnOrBefore | InTheLast | RelativeOnOrBefore | RelativeOnOrAfter => &[Kind::Datetime],
            GreaterThan | GreaterThanEqual | LessThan | LessThanEqual | Between => {
                &[Kind::Number, Kind::Datetime, Kind::String]
            }
            StringOneOf | StringNotOneOf => &[Kind::String, Kind::Number],
            StringContains
            | StringStartsWith
            | StringEndsWith
            | StringDoesNotContain
            | StringDoesNotStartWith
            | StringDoesNotEndWith
            | StringLike
            | StringNotLike
            | StringMatchesTrimmed => &[Kind::String],
            ArrayContains | ArrayDoesNotContain => &[Kind::Array],
        };
        kinds.contains(&kind)
    }
}

/// The Polytomic type of a field (`string`, `number`, `boolean`, `datetime`, `array`, …),
/// which decides the functions that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Number,
    Boolean,
    Datetime,
    Array,
    /// Objects, binary and types Polytomic has no name for: tested for equality and NULL only.
    Other,
}

impl Kind {
    /// The kind of a Polytomic type name.
    pub fn of(type_name: &str) -> Self {
        match type_name {
            "string" => Self::String,
            "number" | "integer" => Self::Number,
            "boolean" => Self::Boolean,
            "datetime" | "date" => Self::Datetime,
            "array" => Self::Array,
            _ => Self::Other,
        }
    }
}

/// A constant in a filter or an override: rendered as a literal of the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Text(String),
    /// A JSON number, kept as written.
    Number(String),
    Bool(bool),
}

impl Scalar {
    /// The scalar of a JSON value (`None` for null, arrays and objects).
    pub fn of(value: &Json) -> Option<Self> {
        match value {
            Json::String(text) => Some(Self::Text(text.clone())),
            Json::Number(n) => Some(Self::Number(n.to_string())),
            Json::Bool(b) => Some(Self::Bool(*b)),
            _ => None,
        }
    }

    /// The value as text (what string functions compare).
    pub fn text(&self) -> String {
        match self {
            Self::Text(text) | Self::Number(text) => text.clone(),
            Self::Bool(b) => b.to_string(),
        }
    }
}

/// A unit of a relative time span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Minute,
    Hour,
    Day,
    Week,
}

impl Unit {
    /// The SQL name (`minute`, `hour`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
        }
    }
}

/// What a condition compares its field with.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    None,
    Value(Scalar),
    List(Vec<Scalar>),
    Range(Scalar, Scalar),
    /// A span back from now: `amount` `unit`s.
    Ago(i64, Unit),
}

/// One checked condition on a field.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: String,
    pub function: Function,
    pub operand: Operand,
}

/// Conditions combined.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    Test(Condition),
    All(Vec<Predicate>),
    Any(Vec<Predicate>),
}

impl Predicate {
    /// Every field the predicate tests.
    pub fn fields(&self) -> Vec<&str> {
        match self {
            Self::Test(condition) => vec![condition.field.as_str()],
            Self::All(parts) | Self::Any(parts) => parts.iter().flat_map(Self::fields).collect(),
        }
    }
}

/// A filter that cannot be honoured: the field of the body at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Checks `function` with `value` on a field of `kind` (`None`: not known here) and returns
/// its operand; the message says what is wrong.
pub fn operand(function: Function, kind: Option<Kind>, value: Option<&Json>) -> Result<Operand, String> {
    use Function::*;
    if let Some(kind) = kind
        && !function.applies_to(kind)
    {
        return Err(format!("{function:?} does not apply to a field of type {}", kind_name(kind)));
    }
    let value = value.filter(|v| !v.is_null());
    let scalar = |value: Option<&Json>| {
        value.and_then(Scalar::of).ok_or_else(|| format!("{function:?} needs a value: a string, number or boolean"))
    };
    Ok(match function {
        IsNull | IsNotNull | True | False => match value {
            None => Operand::None,
            Some(_) => return Err(format!("{function:?} takes no value")),
        },
        StringOneOf | StringNotOneOf => {
            let items: Vec<Scalar> = match value {
                Some(Json::Array(items)) => items.iter().map(|i| scalar(Some(i))).collect::<Result<_, _>>()?,
                other => vec![scalar(other)?],
            };
            if items.is_empty() {
                return Err(format!("{function:?} needs at least one value"));
            }
            Operand::List(items)
        }
        Between => match value {
            Some(Json::Array(pair)) if pair.len() == 2 => Operand::Range(scalar(pair.first())?, scalar(pair.get(1))?),
            _ => return Err("Between needs a value of two items: [low, high]".into()),
        },
        InTheLast | RelativeOnOrBefore | RelativeOnOrAfter => {
            let (amount, unit) = span(value).ok_or_else(|| {
                format!(
                    "{function:?} needs a span back from now: a number of days, or \"<n> minutes|hours|days|weeks\""
                )
            })?;
            Operand::Ago(amount, unit)
        }
        _ => Operand::Value(scalar(value)?),
    })
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::String => "string",
        Kind::Number => "number",
        Kind::Boolean => "boolean",
        Kind::Datetime => "datetime",
        Kind::Array => "array",
        Kind::Other => "object",
    }
}

/// A span back from now: a whole number of days, or `"<n> <unit>"`.
fn span(value: Option<&Json>) -> Option<(i64, Unit)> {
    match value? {
        Json::Number(n) => Some((n.as_i64().filter(|n| *n >= 0)?, Unit::Day)),
        Json::String(text) => {
            let mut words = text.split_whitespace();
            let amount: i64 = words.next()?.parse().ok().filter(|n| *n >= 0)?;
            let unit = match words.next().unwrap_or("days").trim_end_matches('s') {
                "minute" => Unit::Minute,
                "hour" => Unit::Hour,
                "day" => Unit::Day,
                "week" => Unit::Week,
                _ => return None,
            };
            words.next().is_none().then_some((amount, unit))
        }
        _ => None,
    }
}

/// Combines `conditions` as `logic` says (`None` or empty: all of them must hold). `path` is
/// where the filter sits in the body (`model_filters`), for errors.
pub fn combine(conditions: Vec<Condition>, logic: Option<&str>, path: &str) -> Result<Option<Predicate>, Invalid> {
    let logic = logic.map(str::trim).filter(|l| !l.is_empty());
    let Some(logic) = logic else {
        return Ok(match conditions.len() {
            0 => None,
            1 => conditions.into_iter().next().map(Predicate::Test),
            _ => Some(Predicate::All(conditions.into_iter().map(Predicate::Test).collect())),
        });
    };
    let at = format!("{path}.logic");
    let tokens = tokenize(logic).map_err(|m| Invalid::new(&at, m))?;
    let mut parser =
        Parser { tokens: &tokens, position: 0, conditions: &conditions, used: vec![false; conditions.len()] };
    let predicate = parser.any().map_err(|m| Invalid::new(&at, m))?;
    if parser.position != tokens.len() {
        return Err(Invalid::new(&at, format!("unexpected {} in {logic:?}", tokens[parser.position])));
    }
    if let Some(unused) = parser.used.iter().position(|used| !used) {
        return Err(Invalid::new(&at, format!("condition {} is not used by {logic:?}", unused + 1)));
    }
    Ok(Some(predicate))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Number(usize),
    And,
    Or,
    Open,
    Close,
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Number(n) => write!(f, "{n}"),
            Token::And => f.write_str("AND"),
            Token::Or => f.write_str("OR"),
            Token::Open => f.write_str("\"(\""),
            Token::Close => f.write_str("\")\""),
        }
    }
}

fn tokenize(logic: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = logic.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => tokens.push(Token::Open),
            ')' => tokens.push(Token::Close),
            c if c.is_ascii_alphanumeric() => {
                let mut end = start + c.len_utf8();
                while let Some((i, next)) = chars.peek().copied().filter(|(_, n)| n.is_ascii_alphanumeric()) {
                    end = i + next.len_utf8();
                    chars.next();
                }
                let word = &logic[start..end];
                tokens.push(match word.to_ascii_uppercase().as_str() {
                    "AND" => Token::And,
                    "OR" => Token::Or,
                    _ => Token::Number(
                        word.parse().map_err(|_| format!("{word:?} is neither AND, OR nor a condition number"))?,
                    ),
                });
            }
            other => return Err(format!("unexpected {other:?}: use condition numbers, AND, OR and parentheses")),
        }
    }
    Ok(tokens)
}

/// A recursive-descent parser of `logic`: AND binds tighter than OR.
struct Parser<'a> {
    tokens: &'a [Token],
    position: usize,
    conditions: &'a [Condition],
    used: Vec<bool>,
}

impl Parser<'_> {
    fn any(&mut self) -> Result<Predicate, String> {
        let mut parts = vec![self.all()?];
        while self.eat(&Token::Or) {
            parts.push(self.all()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Predicate::Any(parts) })
    }

    fn all(&mut self) -> Result<Predicate, String> {
        let mut parts = vec![self.term()?];
        while self.eat(&Token::And) {
            parts.push(self.term()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Predicate::All(parts) })
    }

    fn term(&mut self) -> Result<Predicate, String> {
        match self.tokens.get(self.position).cloned() {
            Some(Token::Open) => {
                self.position += 1;
                let inner = self.any()?;
                if !self.eat(&Token::Close) {
                    return Err("a \"(\" is never closed".into());
                }
                Ok(inner)
            }
            Some(Token::Number(n)) => {
                self.position += 1;
                let condition = n
                    .checked_sub(1)
                    .and_then(|i| self.conditions.get(i))
                    .ok_or_else(|| format!("condition {n} does not exist (there are {})", self.conditions.len()))?;
                self.used[n - 1] = true;
                Ok(Predicate::Test(condition.clone()))
            }
            Some(other) => Err(format!("expected a condition number, found {other}")),
            None => Err("the expression ends where a condition number was expected".into()),
        }
    }

    fn eat(&mut self, token: &Token) -> bool {
        let matched = self.tokens.get(self.position) == Some(token);
        self.position += usize::from(matched);
        matched
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn condition(n: usize) -> Condition {
        Condition { field: format!("f{n}"), function: Function::IsNull, operand: Operand::None }
    }

    fn test(n: usize) -> Predicate {
        Predicate::Test(condition(n))
    }

    #[test]
    fn logic_binds_and_tighter_than_or() {
        let conditions: Vec<Condition> = (1..=3).map(condition).collect();
        let parsed = combine(conditions.clone(), Some("1 AND (2 or 3)"), "model_filters").expect("parses");
        assert_eq!(parsed, Some(Predicate::All(vec![test(1), Predicate::Any(vec![test(2), test(3)])])));
        let parsed = combine(conditions.clone(), Some("1 and 2 OR 3"), "model_filters").expect("parses");
        assert_eq!(parsed, Some(Predicate::Any(vec![Predicate::All(vec![test(1), test(2)]), test(3)])));
        assert_eq!(
            combine(conditions, None, "model_filters").expect("all"),
            Some(Predicate::All(vec![test(1), test(2), test(3)]))
        );
    }

    #[test]
    fn bad_logic_names_the_problem() {
        let conditions: Vec<Condition> = (1..=2).map(condition).collect();
        for (logic, expected) in [
            ("1 AND 3", "condition 3 does not exist"),
            ("1", "condition 2 is not used"),
            ("(1 AND 2", "never closed"),
            ("1 AND 2)", "unexpected"),
            ("1 XOR 2", "neither AND, OR"),
            ("1 AND", "ends where"),
            ("1 & 2", "unexpected '&'"),
        ] {
            let error = combine(conditions.clone(), Some(logic), "model_filters").expect_err(logic);
            assert_eq!(error.field, "model_filters.logic");
            assert!(error.message.contains(expected), "{logic}: {}", error.message);
        }
    }

    #[test]
    fn operands_are_checked_against_the_field_type() {
        let string = Some(Kind::String);
        assert_eq!(
            operand(Function::StringContains, string, Some(&json!("ab"))),
            Ok(Operand::Value(Scalar::Text("ab".into())))
        );
        assert!(operand(Function::StringContains, Some(Kind::Number), Some(&json!("ab"))).is_err());
        assert!(operand(Function::True, string, None).is_err());
        assert_eq!(operand(Function::True, Some(Kind::Boolean), None), Ok(Operand::None));
        assert!(operand(Function::IsNull, None, Some(&json!(1))).is_err());
        assert_eq!(
            operand(Function::Between, Some(Kind::Number), Some(&json!([1, 5]))),
            Ok(Operand::Range(Scalar::Number("1".into()), Scalar::Number("5".into())))
        );
        assert!(operand(Function::Between, Some(Kind::Number), Some(&json!([1]))).is_err());
        assert_eq!(
            operand(Function::InTheLast, Some(Kind::Datetime), Some(&json!("12 hours"))),
            Ok(Operand::Ago(12, Unit::Hour))
        );
        assert_eq!(operand(Function::InTheLast, Some(Kind::Datetime), Some(&json!(7))), Ok(Operand::Ago(7, Unit::Day)));
        assert!(operand(Function::InTheLast, Some(Kind::Datetime), Some(&json!("7 fortnights"))).is_err());
        assert_eq!(
            operand(Function::StringOneOf, string, Some(&json!(["a", "b"]))),
            Ok(Operand::List(vec![Scalar::Text("a".into()), Scalar::Text("b".into())]))
        );
        assert!(operand(Function::Equality, None, None).is_err());
    }
}
