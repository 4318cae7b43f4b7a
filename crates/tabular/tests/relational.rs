//! The relational layout: tables, keys, schema inference and file rollover.

mod common;

use std::collections::BTreeMap;

use arrow_array::Array as _;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tabular::{Format, Layout, ORDINAL, Options, PARENT_ID, ROW_ID, TableSet};

fn run(records: &[Value], options: Options) -> (common::Files, tabular::Summary) {
    let memory = common::Memory::default();
    let mut set = TableSet::new("patients", options, Box::new(memory.clone())).unwrap();
    for r in records {
        set.push(r).unwrap();
    }
    let summary = set.finish().unwrap();
    (memory.files, summary)
}

fn jsonl() -> Options {
    Options {
        layout: Layout::Relational,
        format: Format::Jsonl,
        ..Options::default()
    }
}

#[test]
fn arrays_of_objects_become_child_tables_with_parent_ids_and_ordinals() {
    let records = [
        json!({"casefile_id": "1:a", "diagnoses": [{"code": "F10.20"}, {"code": "F41.1"}], "insurances": [{"payor": "Aetna"}], "tags": ["x", "y"]}),
        json!({"casefile_id": "2:b", "diagnoses": [{"code": "F32.9"}], "insurances": [], "tags": []}),
    ];
    let (files, summary) = run(&records, jsonl());
    let patients = common::jsonl_rows(&files, "patients");
    assert_eq!(
        patients.len(),
        2,
        "one row per record: no cartesian blow-up"
    );
    assert_eq!(patients[0][ROW_ID], json!(0));
    assert_eq!(
        patients[0]["tags"],
        json!(["x", "y"]),
        "arrays of scalars are list columns"
    );
    let diagnoses = common::jsonl_rows(&files, "patients__diagnoses");
    let keys: Vec<(Value, Value, Value)> = diagnoses
        .iter()
        .map(|r| (r[PARENT_ID].clone(), r[ORDINAL].clone(), r["code"].clone()))
        .collect();
    assert_eq!(
        keys,
        [
            (json!(0), json!(0), json!("F10.20")),
            (json!(0), json!(1), json!("F41.1")),
            (json!(1), json!(0), json!("F32.9")),
        ]
    );
    assert_eq!(common::jsonl_rows(&files, "patients__insurances").len(), 1);
    assert_eq!(summary.next_row_ids["patients"], 2);
    assert_eq!(summary.next_row_ids["patients__diagnoses"], 3);
}

#[test]
fn colliding_keys_keep_both_values() {
    let (files, _) = run(&[json!({"a_b": 1, "a": {"b": 2}})], jsonl());
    let rows = common::jsonl_rows(&files, "patients");
    assert_eq!(rows[0]["a_b"], json!(1));
    assert_eq!(rows[0]["a_b_2"], json!(2));
}

#[test]
fn row_ids_continue_from_a_previous_part() {
    let mut next = BTreeMap::new();
    next.insert("patients".to_string(), 10);
    let memory = common::Memory::default();
    let mut set = TableSet::new("patients", jsonl(), Box::new(memory.clone()))
        .unwrap()
        .with_row_ids(next);
    set.push(&json!({"x": 1})).unwrap();
    let summary = set.finish().unwrap();
    assert_eq!(
        common::jsonl_rows(&memory.files, "patients")[0][ROW_ID],
        json!(10)
    );
    assert_eq!(summary.next_row_ids["patients"], 11);
}

#[test]
fn a_record_that_is_not_an_object_is_refused_by_position_without_its_value() {
    let memory = common::Memory::default();
    let mut set = TableSet::new("patients", jsonl(), Box::new(memory)).unwrap();
    set.push(&json!({"a": 1})).unwrap();
    let err = set.push(&json!("Qxcanary-value")).unwrap_err().to_string();
    assert_eq!(err, "record 1 is a string, not a JSON object");
}

fn parquet_batches(bytes: &[u8]) -> Vec<arrow_array::RecordBatch> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::copy_from_slice(bytes),
    )
    .unwrap()
    .build()
    .unwrap();
    reader.map(Result::unwrap).collect()
}

#[test]
fn types_widen_int_to_float_to_string_and_a_new_column_opens_a_new_file() {
    use arrow_schema::DataType;
    let options = Options {
        format: Format::Parquet,
        memory_budget: 1, // flush after every record: the worst case for schema changes
        ..Options::default()
    };
    let records = [
        json!({"n": 1, "big": 9007199254740993_i64}),
        json!({"n": 2, "big": 1}),
        json!({"n": 2.5, "big": 0.5}),
        json!({"n": "x", "big": 2, "new": true}),
    ];
    let (files, summary) = run(&records, options);
    let files = files.lock().unwrap();
    let names: Vec<&String> = files.keys().collect();
    assert_eq!(
        names,
        [
            "patients/part-000.parquet",
            "patients/part-001.parquet",
            "patients/part-002.parquet"
        ]
    );
    let total: u64 = summary.files.iter().map(|f| f.rows).sum();
    assert_eq!(total, 4, "no row lost across files");
    let first = parquet_batches(&files["patients/part-000.parquet"]);
    assert_eq!(
        first.iter().map(|b| b.num_rows()).sum::<usize>(),
        2,
        "two row groups, one file"
    );
    assert_eq!(
        first[0].schema().field_with_name("n").unwrap().data_type(),
        &DataType::Int64
    );
    let second = parquet_batches(&files["patients/part-001.parquet"]);
    let schema = second[0].schema();
    assert_eq!(
        schema.field_with_name("n").unwrap().data_type(),
        &DataType::Float64
    );
    // An int beyond 2^53 would lose digits as a float: the column becomes text instead.
    assert_eq!(
        schema.field_with_name("big").unwrap().data_type(),
        &DataType::Utf8
    );
    let third = parquet_batches(&files["patients/part-002.parquet"]);
    let schema = third[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [ROW_ID, "n", "big", "new"],
        "first-seen order, new column last"
    );
    assert_eq!(
        schema.field_with_name("n").unwrap().data_type(),
        &DataType::Utf8
    );
}

#[test]
fn list_columns_are_written_as_parquet_lists() {
    let options = Options {
        format: Format::Parquet,
        ..Options::default()
    };
    let (files, _) = run(
        &[
            json!({"codes": [1, 2]}),
            json!({"codes": [3.5]}),
            json!({"codes": null}),
        ],
        options,
    );
    let files = files.lock().unwrap();
    let batches = parquet_batches(&files["patients/part-000.parquet"]);
    let column = batches[0].column_by_name("codes").unwrap();
    let list = column
        .as_any()
        .downcast_ref::<arrow_array::ListArray>()
        .unwrap();
    assert_eq!(list.len(), 3);
    assert!(list.is_null(2));
    let first = list.value(0);
    let values = first
        .as_any()
        .downcast_ref::<arrow_array::Float64Array>()
        .unwrap();
    assert_eq!(values.values(), &[1.0, 2.0]);
}

#[test]
fn csv_quotes_and_tells_empty_strings_from_nulls() {
    let options = Options {
        layout: Layout::Wide,
        format: Format::Csv,
        ..Options::default()
    };
    let (files, _) = run(
        &[json!({"a": "x,\"y\"", "b": ""}), json!({"a": null, "b": 1})],
        options,
    );
    let files = files.lock().unwrap();
    let text = std::str::from_utf8(&files["patients/part-000.csv"]).unwrap();
    assert_eq!(text, "a,b\n\"x,\"\"y\"\"\",\"\"\n,1\n");
}

// ---- property: every scalar leaf of the input appears exactly once in the output ----

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        // Decimals with at most 13 significant digits: serde_json (without its
        // float_roundtrip feature) parses them back exactly, so the test's own reader adds
        // no rounding of its own.
        (-1_000_000_000_000i64..1_000_000_000_000).prop_map(|n| Value::from(n as f64 / 1000.0)),
        "[a-zA-Z0-9 _]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            object(inner),
        ]
    })
}

fn object(inner: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    // Few, clashing key names: collisions (`a_b` vs `a`.`b`), reserved names and `value`.
    let key = prop::sample::select(vec![
        "a", "b", "a_b", "b_a", "_id", "_ordinal", "value", "value_2", "x",
    ]);
    prop::collection::vec((key, inner), 0..5).prop_map(|pairs| {
        let mut map = Map::new();
        for (k, v) in pairs {
            map.insert(k.to_string(), v);
        }
        Value::Object(map)
    })
}

fn input_leaves(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m.values().for_each(|x| input_leaves(x, out)),
        Value::Array(items) => items.iter().for_each(|x| input_leaves(x, out)),
        Value::Null => {}
        scalar => out.push(scalar.to_string()),
    }
}

fn output_leaves(files: &common::Files, out: &mut Vec<String>) {
    let files = files.lock().unwrap();
    for bytes in files.values() {
        for line in std::str::from_utf8(bytes).unwrap().lines() {
            let Value::Object(row) = serde_json::from_str(line).unwrap() else {
                panic!("not an object")
            };
            let keys: Vec<&String> = row.keys().collect();
            // The key columns are always the first ones set, so they hold these exact names.
            let reserved = if keys.first().map(|k| k.as_str()) == Some(ROW_ID)
                && keys.get(1).map(|k| k.as_str()) == Some(PARENT_ID)
            {
                3
            } else {
                1
            };
            for (_, v) in row.iter().skip(reserved) {
                match v {
                    Value::Array(items) => items
                        .iter()
                        .filter(|i| !i.is_null())
                        .for_each(|i| out.push(i.to_string())),
                    Value::Null => {}
                    scalar => out.push(scalar.to_string()),
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn relational_layout_keeps_every_non_null_scalar_leaf_exactly_once(
        records in prop::collection::vec(object(json_value()), 0..6),
        budget in prop::sample::select(vec![1usize, 4096, 64 << 20]),
    ) {
        let options = Options { memory_budget: budget, ..jsonl() };
        let (files, summary) = run(&records, options);
        let mut expected = Vec::new();
        records.iter().for_each(|r| input_leaves(r, &mut expected));
        let mut actual = Vec::new();
        output_leaves(&files, &mut actual);
        expected.sort();
        actual.sort();
        prop_assert_eq!(actual, expected);
        prop_assert_eq!(summary.records, records.len() as u64);
        let root_rows: u64 = summary.files.iter().filter(|f| f.table == "patients").map(|f| f.rows).sum();
        prop_assert_eq!(root_rows, records.len() as u64);
    }
}
