//! The wide layout against kipu-python 0.0.2's own output (fixtures/golden.json, made by
//! fixtures/make_golden.py from the cases of kipu-api.md §4.2-§4.4).

mod common;

use serde_json::{Map, Value};
use tabular::{Format, Layout, Options, TableSet};

fn golden() -> Value {
    serde_json::from_str(include_str!("fixtures/golden.json")).unwrap()
}

fn ordered(rows: &[Map<String, Value>]) -> Vec<Vec<(String, Value)>> {
    rows.iter()
        .map(|r| r.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .collect()
}

#[test]
fn wide_records_are_identical_to_kipu_python_flatten_json() {
    let golden = golden();
    let cases = golden["records"].as_array().unwrap();
    assert!(cases.len() >= 25);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let sep = case["sep"].as_str().unwrap();
        let input = case["input"].as_object().unwrap();
        let ours: Vec<Map<String, Value>> = tabular::wide::flatten_record(input, sep, 1_000_000)
            .unwrap()
            .into_iter()
            .map(|row| row.into_iter().map(|(k, v)| (k, v.to_json())).collect())
            .collect();
        let theirs: Vec<Map<String, Value>> = case["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect();
        // Same rows, same columns in the same order, same values with the same JSON types.
        assert_eq!(ordered(&ours), ordered(&theirs), "case {name}");
    }
}

/// Runs the wide layout over `rows` into JSON lines and returns the table.
fn wide_table(rows: &[Value]) -> (Vec<String>, Vec<Vec<Value>>) {
    let memory = common::Memory::default();
    let options = Options {
        layout: Layout::Wide,
        format: Format::Jsonl,
        ..Options::default()
    };
    let mut set = TableSet::new("t", options, Box::new(memory.clone())).unwrap();
    for row in rows {
        set.push(row).unwrap();
    }
    set.finish().unwrap();
    let rows = common::jsonl_rows(&memory.files, "t");
    let columns: Vec<String> = rows
        .first()
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default();
    let cells = rows
        .iter()
        .map(|r| {
            assert_eq!(r.keys().cloned().collect::<Vec<_>>(), columns);
            r.values().cloned().collect()
        })
        .collect();
    (columns, cells)
}

/// Applies kipu-python's documented corruptions to our output, so the rest can be compared
/// exactly: "None"/"nan"/"<NA>" strings to null, all-null rows dropped, numbers compared as
/// floats (pandas turns integer columns with gaps into floats).
fn as_kipu_python_would(cells: &[Vec<Value>]) -> Vec<Vec<Value>> {
    cells
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| match v {
                    Value::String(s) if ["None", "nan", "<NA>"].contains(&s.as_str()) => {
                        Value::Null
                    }
                    Value::Number(n) => Value::from(n.as_f64().unwrap()),
                    other => other.clone(),
                })
                .collect::<Vec<_>>()
        })
        .filter(|row| !row.iter().all(Value::is_null))
        .collect()
}

fn numbers_as_floats(rows: &Value) -> Vec<Vec<Value>> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| match v {
                    Value::Number(n) => Value::from(n.as_f64().unwrap()),
                    other => other.clone(),
                })
                .collect()
        })
        .collect()
}

#[test]
fn wide_tables_match_kipu_python_flatten_json_df_except_where_it_corrupts_data() {
    let golden = golden();
    for case in golden["tables"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let input = case["input"].as_array().unwrap();
        let (columns, cells) = wide_table(input);
        let theirs = &case["output"];
        if let Some(error) = theirs.get("error") {
            // kipu-python crashes on an empty list; we give an empty table.
            assert_eq!(
                error, "ValueError: No objects to concatenate",
                "case {name}"
            );
            assert!(input.is_empty() && cells.is_empty(), "case {name}");
            continue;
        }
        let their_columns: Vec<String> = theirs["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        assert_eq!(columns, their_columns, "case {name}");
        assert_eq!(
            as_kipu_python_would(&cells),
            numbers_as_floats(&theirs["rows"]),
            "case {name}"
        );
    }
}

#[test]
fn none_and_nan_strings_stay_strings() {
    let (_, cells) = wide_table(&[
        serde_json::json!({"id": 1, "s": "None"}),
        serde_json::json!({"id": 2, "s": "nan"}),
        serde_json::json!({"id": 3, "s": "<NA>"}),
    ]);
    let s: Vec<&Value> = cells.iter().map(|r| &r[1]).collect();
    assert_eq!(
        s,
        [
            &Value::from("None"),
            &Value::from("nan"),
            &Value::from("<NA>")
        ]
    );
}

#[test]
fn all_null_records_keep_their_row_and_integers_stay_integers() {
    let (columns, cells) = wide_table(&[
        serde_json::json!({"id": 1, "n": 5}),
        serde_json::json!({}),
        serde_json::json!({"c": null}),
    ]);
    assert_eq!(columns, ["id", "n", "c"]);
    assert_eq!(cells.len(), 3);
    assert_eq!(cells[0], vec![Value::from(1), Value::from(5), Value::Null]);
    assert!(cells[1].iter().all(Value::is_null) && cells[2].iter().all(Value::is_null));
}

#[test]
fn an_empty_stream_is_an_empty_result_not_a_crash() {
    let (columns, cells) = wide_table(&[]);
    assert!(columns.is_empty() && cells.is_empty());
}
