//! Cell values and column types, with the widening rules of schema inference.

use serde_json::Value;

/// Integers up to this magnitude are exactly representable as `f64`.
const F64_EXACT_INT: u64 = 1 << 53;

/// One cell of a flattened row.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    /// JSON `null`, or a cell a row does not have.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A JSON integer that fits `i64`.
    Int(i64),
    /// A JSON number with a fraction or exponent.
    Float(f64),
    /// A string (also an unsigned integer beyond `i64`, kept as its exact digits, and an array
    /// that holds objects or arrays, kept as compact JSON text).
    Str(String),
    /// An array of scalars (list column).
    List(Vec<Scalar>),
}

impl Scalar {
    /// Converts a JSON scalar; arrays of scalars become [`Scalar::List`], any other array or
    /// object becomes its compact JSON text.
    pub fn from_json(value: &Value) -> Scalar {
        match value {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => number(n),
            Value::String(s) => Scalar::Str(s.clone()),
            Value::Array(items) if items.iter().all(is_json_scalar) => {
                Scalar::List(items.iter().map(Scalar::from_json).collect())
            }
            other => Scalar::Str(other.to_string()),
        }
    }

    /// The value as JSON (the inverse of [`Scalar::from_json`] for scalars and lists).
    pub fn to_json(&self) -> Value {
        match self {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Int(i) => Value::from(*i),
            Scalar::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Scalar::Str(s) => Value::String(s.clone()),
            Scalar::List(items) => Value::Array(items.iter().map(Scalar::to_json).collect()),
        }
    }

    /// The text of the value in a string column or a CSV cell: strings as they are, numbers and
    /// booleans in their JSON spelling, lists as compact JSON. `None` for null.
    pub fn to_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match self {
            Scalar::Null => None,
            Scalar::Str(s) => Some(Cow::Borrowed(s.as_str())),
            Scalar::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Scalar::Int(i) => Some(Cow::Owned(i.to_string())),
            Scalar::Float(_) | Scalar::List(_) => Some(Cow::Owned(self.to_json().to_string())),
        }
    }

    /// The narrowest column type that holds this value.
    pub fn column_type(&self) -> ColumnType {
        match self {
            Scalar::Null => ColumnType::Null,
            Scalar::Bool(_) => ColumnType::Bool,
            Scalar::Int(_) => ColumnType::Int,
            Scalar::Float(_) => ColumnType::Float,
            Scalar::Str(_) => ColumnType::Str,
            Scalar::List(items) => ColumnType::List(
                items
                    .iter()
                    .fold(ElemType::Null, |t, v| t.join(ElemType::of(v), true)),
            ),
        }
    }

    /// Approximate heap plus inline bytes, for memory accounting.
    pub(crate) fn weight(&self) -> usize {
        std::mem::size_of::<Scalar>()
            + match self {
                Scalar::Str(s) => s.capacity(),
                Scalar::List(items) => items.iter().map(Scalar::weight).sum(),
                _ => 0,
            }
    }

    /// Whether an integer here could not be converted to `f64` exactly.
    pub(crate) fn has_inexact_int(&self) -> bool {
        match self {
            Scalar::Int(i) => i.unsigned_abs() > F64_EXACT_INT,
            Scalar::List(items) => items.iter().any(Scalar::has_inexact_int),
            _ => false,
        }
    }
}

fn is_json_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

fn number(n: &serde_json::Number) -> Scalar {
    if let Some(i) = n.as_i64() {
        Scalar::Int(i)
    } else if n.is_u64() {
        // Beyond i64: keep the exact digits rather than round through f64.
        Scalar::Str(n.to_string())
    } else {
        n.as_f64().map_or(Scalar::Null, Scalar::Float)
    }
}

/// The element type of a list column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElemType {
    /// Only nulls (or empty lists) seen so far.
    Null,
    /// Booleans.
    Bool,
    /// 64-bit integers.
    Int,
    /// 64-bit floats.
    Float,
    /// UTF-8 strings.
    Str,
}

impl ElemType {
    fn of(v: &Scalar) -> ElemType {
        match v {
            Scalar::Null => ElemType::Null,
            Scalar::Bool(_) => ElemType::Bool,
            Scalar::Int(_) => ElemType::Int,
            Scalar::Float(_) => ElemType::Float,
            Scalar::Str(_) | Scalar::List(_) => ElemType::Str,
        }
    }

    /// The narrowest type holding both; `ints_exact` says whether every integer seen fits
    /// `f64` exactly (else int and float meet at string).
    pub fn join(self, other: ElemType, ints_exact: bool) -> ElemType {
        use ElemType::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Null, x) | (x, Null) => x,
            (Int, Float) | (Float, Int) if ints_exact => Float,
            _ => Str,
        }
    }
}

/// The type of a column, as inferred from the values seen.
///
/// Widening: null < bool, int < float < string; int and float meet at float (at string when
/// an integer beyond 2^53 would lose digits); bool and a number meet at string; a list and a
/// scalar meet at string (the list as JSON text); two lists meet at a list of the joined
/// element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// Only nulls seen so far.
    Null,
    /// Booleans.
    Bool,
    /// 64-bit integers.
    Int,
    /// 64-bit floats.
    Float,
    /// UTF-8 strings.
    Str,
    /// Lists of scalars.
    List(ElemType),
}

impl ColumnType {
    /// The narrowest type holding values of both.
    pub fn join(self, other: ColumnType, ints_exact: bool) -> ColumnType {
        use ColumnType::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Null, x) | (x, Null) => x,
            (Int, Float) | (Float, Int) if ints_exact => Float,
            (List(a), List(b)) => List(a.join(b, ints_exact)),
            _ => Str,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn widening_follows_int_float_string() {
        use ColumnType::*;
        assert_eq!(Int.join(Float, true), Float);
        assert_eq!(Int.join(Float, false), Str);
        assert_eq!(Float.join(Str, true), Str);
        assert_eq!(Bool.join(Int, true), Str);
        assert_eq!(Null.join(Bool, true), Bool);
        assert_eq!(
            List(ElemType::Int).join(List(ElemType::Float), true),
            List(ElemType::Float)
        );
        assert_eq!(List(ElemType::Int).join(Int, true), Str);
    }

    #[test]
    fn json_numbers_keep_their_exact_value() {
        assert_eq!(Scalar::from_json(&json!(7)), Scalar::Int(7));
        assert_eq!(Scalar::from_json(&json!(1.5)), Scalar::Float(1.5));
        assert_eq!(
            Scalar::from_json(&json!(u64::MAX)),
            Scalar::Str(u64::MAX.to_string())
        );
        assert_eq!(
            Scalar::from_json(&json!([1, "a", null])),
            Scalar::List(vec![Scalar::Int(1), Scalar::Str("a".into()), Scalar::Null])
        );
        assert_eq!(
            Scalar::from_json(&json!([[1], {"a": 1}])),
            Scalar::Str("[[1],{\"a\":1}]".into())
        );
        assert_eq!(Scalar::Float(2.0).to_text().unwrap(), "2.0");
        assert_eq!(Scalar::Int(-3).to_text().unwrap(), "-3");
    }
}
