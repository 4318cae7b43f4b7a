//! The `wide` layout: kipu-python's `flatten_json` (kipu-api.md §4.1), reproduced rule for rule.
//!
//! One input object becomes one or more rows. Nested objects join their keys with the
//! separator; arrays explode into rows without an index; sibling arrays multiply (cartesian
//! product); scalars after an array are copied onto every exploded row; empty objects and
//! arrays drop out; "remove the first empty record" is applied exactly where kipu-python
//! applies it. Key collisions keep the later value at the earlier position, as in Python's
//! `dict.update`.

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::value::Scalar;

/// One flattened row: column → value, in insertion order.
pub type WideRow = IndexMap<String, Scalar>;

/// Flattening stopped: the record would expand to more rows than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowLimitExceeded;

/// Flattens one object into rows (kipu-python `flatten_json(obj)` with separator `sep`).
/// `max_rows` bounds the cartesian expansion of one record.
pub fn flatten_record(
    obj: &Map<String, Value>,
    sep: &str,
    max_rows: usize,
) -> Result<Vec<WideRow>, RowLimitExceeded> {
    flatten(obj, "", sep, max_rows)
}

fn flatten(
    obj: &Map<String, Value>,
    parent: &str,
    sep: &str,
    max_rows: usize,
) -> Result<Vec<WideRow>, RowLimitExceeded> {
    let mut records: Vec<WideRow> = vec![WideRow::new()];
    for (k, v) in obj {
        let key = if parent.is_empty() {
            k.clone()
        } else {
            let mut key = String::with_capacity(parent.len() + sep.len() + k.len());
            key.push_str(parent);
            key.push_str(sep);
            key.push_str(k);
            key
        };
        match v {
            Value::Object(child) => {
                let children = flatten(child, &key, sep, max_rows)?;
                records = merge(records, children, max_rows)?;
            }
            Value::Array(items) => {
                let mut list_records: Vec<WideRow> = vec![WideRow::new()];
                for item in items {
                    match item {
                        Value::Object(child) => {
                            list_records.extend(flatten(child, &key, sep, max_rows)?);
                        }
                        other => {
                            let mut row = WideRow::with_capacity(1);
                            row.insert(key.clone(), Scalar::from_json(other));
                            list_records.push(row);
                        }
                    }
                    if list_records.len() > max_rows.saturating_add(1) {
                        return Err(RowLimitExceeded);
                    }
                }
                remove_first_empty(&mut list_records);
                records = merge(records, list_records, max_rows)?;
            }
            scalar => {
                let value = Scalar::from_json(scalar);
                for record in &mut records {
                    record.insert(key.clone(), value.clone());
                }
            }
        }
    }
    remove_first_empty(&mut records);
    Ok(records)
}

/// kipu-python's `_merge_records`: parent-major product, child values overwrite.
fn merge(
    parents: Vec<WideRow>,
    children: Vec<WideRow>,
    max_rows: usize,
) -> Result<Vec<WideRow>, RowLimitExceeded> {
    let total = parents.len().saturating_mul(children.len());
    if total > max_rows {
        return Err(RowLimitExceeded);
    }
    let mut result = Vec::with_capacity(total + 1);
    result.push(WideRow::new());
    for parent in &parents {
        for child in &children {
            let mut row = parent.clone();
            for (k, v) in child {
                row.insert(k.clone(), v.clone());
            }
            result.push(row);
        }
    }
    remove_first_empty(&mut result);
    Ok(result)
}

/// "If the list holds an empty record and more than one entry, remove the first empty one."
fn remove_first_empty(rows: &mut Vec<WideRow>) {
    if rows.len() > 1
        && let Some(pos) = rows.iter().position(IndexMap::is_empty)
    {
        rows.remove(pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(v: Value) -> Value {
        let Value::Object(m) = v else {
            panic!("test input must be an object")
        };
        let out = flatten_record(&m, "_", 1_000).unwrap();
        Value::Array(
            out.into_iter()
                .map(|r| Value::Object(r.into_iter().map(|(k, v)| (k, v.to_json())).collect()))
                .collect(),
        )
    }

    #[test]
    fn sibling_arrays_multiply_like_kipu_python() {
        let out = rows(json!({"id":1,"a":[1,2],"b":["x","y","z"]}));
        assert_eq!(out.as_array().unwrap().len(), 6);
        assert_eq!(out[1], json!({"id":1,"a":1,"b":"y"}));
        assert_eq!(out[3], json!({"id":1,"a":2,"b":"x"}));
    }

    #[test]
    fn the_row_limit_stops_a_cartesian_blow_up() {
        let big: Vec<u32> = (0..100).collect();
        let Value::Object(m) = json!({"a": big, "b": big, "c": big}) else {
            unreachable!()
        };
        assert_eq!(flatten_record(&m, "_", 10_000), Err(RowLimitExceeded));
    }
}
