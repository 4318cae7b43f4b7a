//! A column-oriented buffer of rows for one table, and its encodings (Arrow, CSV, JSON lines).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::value::{ColumnType, ElemType, Scalar};

/// One column: its name, the type inferred so far, and the buffered values.
#[derive(Debug)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) ty: ColumnType,
    ints_exact: bool,
    values: Vec<Scalar>,
}

/// Buffered rows of one table. Columns keep their first-seen order and their (widened) types
/// across flushes, so consecutive batches of a table share a schema unless a new column or a
/// wider type appears.
#[derive(Debug, Default)]
pub(crate) struct TableBuffer {
    columns: Vec<Column>,
    index: HashMap<String, usize>,
    rows: usize,
    bytes: usize,
}

impl TableBuffer {
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Sets a cell of the row being built (row number `self.rows`). Gives the value back if the
    /// column already has one in this row.
    pub(crate) fn try_set(&mut self, name: &str, value: Scalar) -> Result<(), Scalar> {
        let idx = match self.index.get(name) {
            Some(&i) => i,
            None => {
                let i = self.columns.len();
                let mut values = Vec::with_capacity(self.rows + 1);
                values.resize(self.rows, Scalar::Null);
                self.columns.push(Column {
                    name: name.to_string(),
                    ty: ColumnType::Null,
                    ints_exact: true,
                    values,
                });
                self.index.insert(name.to_string(), i);
                self.bytes += self.rows * std::mem::size_of::<Scalar>() + name.len() + 64;
                i
            }
        };
        let column = &mut self.columns[idx];
        if column.values.len() > self.rows {
            return Err(value);
        }
        column.ints_exact &= !value.has_inexact_int();
        column.ty = column.ty.join(value.column_type(), column.ints_exact);
        self.bytes += value.weight();
        column.values.push(value);
        Ok(())
    }

    /// Completes the row being built: columns it did not set get a null.
    pub(crate) fn end_row(&mut self) {
        for column in &mut self.columns {
            if column.values.len() == self.rows {
                column.values.push(Scalar::Null);
                self.bytes += std::mem::size_of::<Scalar>();
            }
        }
        self.rows += 1;
    }

    /// The current column names and types.
    pub(crate) fn signature(&self) -> Vec<(String, ColumnType)> {
        self.columns
            .iter()
            .map(|c| (c.name.clone(), c.ty))
            .collect()
    }

    /// Empties the buffer, keeping columns and types.
    pub(crate) fn clear(&mut self) {
        for column in &mut self.columns {
            column.values = Vec::new();
        }
        self.rows = 0;
        self.bytes = 0;
    }

    /// The buffered rows as an Arrow batch under `schema` (which must be [`arrow_schema`] of
    /// the current signature).
    pub(crate) fn to_record_batch(
        &self,
        schema: &SchemaRef,
    ) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let arrays: Vec<ArrayRef> = self.columns.iter().map(column_array).collect();
        RecordBatch::try_new_with_options(
            schema.clone(),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(self.rows)),
        )
    }

    /// Writes the buffered rows as CSV records (no header).
    pub(crate) fn write_csv(&self, out: &mut impl Write) -> std::io::Result<()> {
        for row in 0..self.rows {
            for (i, column) in self.columns.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                if let Some(text) = column.values[row].to_text() {
                    write_csv_field(out, &text)?;
                }
            }
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Writes the buffered rows as JSON lines, each value with its own JSON type.
    pub(crate) fn write_jsonl(&self, out: &mut impl Write) -> std::io::Result<()> {
        for row in 0..self.rows {
            let mut object = serde_json::Map::with_capacity(self.columns.len());
            for column in &self.columns {
                object.insert(column.name.clone(), column.values[row].to_json());
            }
            serde_json::to_writer(&mut *out, &serde_json::Value::Object(object))?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// A CSV header line for `names`.
pub(crate) fn write_csv_header(out: &mut impl Write, names: &[String]) -> std::io::Result<()> {
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        write_csv_field(out, name)?;
    }
    out.write_all(b"\n")
}

/// RFC 4180 quoting; an empty string is written as `""` so that it differs from null (an
/// empty field).
fn write_csv_field(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    if text.is_empty() || text.contains([',', '"', '\n', '\r']) {
        out.write_all(b"\"")?;
        out.write_all(text.replace('"', "\"\"").as_bytes())?;
        out.write_all(b"\"")
    } else {
        out.write_all(text.as_bytes())
    }
}

/// The Arrow type of a column type. A column that only ever held nulls is a string column.
pub(crate) fn data_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Null | ColumnType::Str => DataType::Utf8,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Int => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        ColumnType::List(e) => DataType::List(Arc::new(Field::new(
            "item",
            match e {
                ElemType::Null | ElemType::Str => DataType::Utf8,
                ElemType::Bool => DataType::Boolean,
                ElemType::Int => DataType::Int64,
                ElemType::Float => DataType::Float64,
            },
            true,
        ))),
    }
}

/// The Arrow schema of a signature.
pub(crate) fn arrow_schema(signature: &[(String, ColumnType)]) -> SchemaRef {
    Arc::new(Schema::new(
        signature
            .iter()
            .map(|(name, ty)| Field::new(name, data_type(*ty), true))
            .collect::<Vec<_>>(),
    ))
}

fn column_array(column: &Column) -> ArrayRef {
    match column.ty {
        ColumnType::Null | ColumnType::Str => {
            let mut b = StringBuilder::with_capacity(column.values.len(), 16 * column.values.len());
            for v in &column.values {
                b.append_option(v.to_text());
            }
            Arc::new(b.finish())
        }
        ColumnType::Bool => {
            let mut b = BooleanBuilder::with_capacity(column.values.len());
            for v in &column.values {
                append_bool(&mut b, v);
            }
            Arc::new(b.finish())
        }
        ColumnType::Int => {
            let mut b = Int64Builder::with_capacity(column.values.len());
            for v in &column.values {
                append_int(&mut b, v);
            }
            Arc::new(b.finish())
        }
        ColumnType::Float => {
            let mut b = Float64Builder::with_capacity(column.values.len());
            for v in &column.values {
                append_float(&mut b, v);
            }
            Arc::new(b.finish())
        }
        ColumnType::List(elem) => match elem {
            ElemType::Null | ElemType::Str => {
                list_array(&column.values, StringBuilder::new(), |b, v| {
                    b.append_option(v.to_text())
                })
            }
            ElemType::Bool => list_array(&column.values, BooleanBuilder::new(), append_bool),
            ElemType::Int => list_array(&column.values, Int64Builder::new(), append_int),
            ElemType::Float => list_array(&column.values, Float64Builder::new(), append_float),
        },
    }
}

fn list_array<B>(values: &[Scalar], inner: B, mut append: impl FnMut(&mut B, &Scalar)) -> ArrayRef
where
    B: arrow_array::builder::ArrayBuilder,
{
    let mut b = ListBuilder::new(inner);
    for v in values {
        match v {
            Scalar::List(items) => {
                for item in items {
                    append(b.values(), item);
                }
                b.append(true);
            }
            // Only lists and nulls reach a list column (a list and a scalar widen to string).
            _ => b.append(false),
        }
    }
    Arc::new(b.finish())
}

fn append_bool(b: &mut BooleanBuilder, v: &Scalar) {
    match v {
        Scalar::Bool(x) => b.append_value(*x),
        _ => b.append_null(),
    }
}

fn append_int(b: &mut Int64Builder, v: &Scalar) {
    match v {
        Scalar::Int(x) => b.append_value(*x),
        _ => b.append_null(),
    }
}

fn append_float(b: &mut Float64Builder, v: &Scalar) {
    match v {
        Scalar::Float(x) => b.append_value(*x),
        // Exact: a column holding an integer beyond 2^53 never becomes float.
        Scalar::Int(x) => b.append_value(*x as f64),
        _ => b.append_null(),
    }
}
