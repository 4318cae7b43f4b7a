//! Streaming flattening of JSON records into tables, written as Parquet, CSV or JSON lines.
//!
//! One job: turn a stream of JSON objects (EHR records) into rectangular tables without
//! holding the stream in memory and without losing or inventing values.
//!
//! ```
//! use tabular::{Destination, Format, Layout, Options, Sink, TableSet};
//! # #[derive(Default)] struct Mem(std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>);
//! # struct MemSink(String, Vec<u8>, std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>);
//! # impl std::io::Write for MemSink { fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.1.extend_from_slice(b); Ok(b.len()) } fn flush(&mut self) -> std::io::Result<()> { Ok(()) } }
//! # impl Sink for MemSink { fn commit(self: Box<Self>) -> std::io::Result<u64> { let n = self.1.len() as u64; self.2.lock().unwrap().push((self.0, self.1)); Ok(n) } }
//! # impl Destination for Mem { fn create(&mut self, name: &str) -> std::io::Result<Box<dyn Sink>> { Ok(Box::new(MemSink(name.into(), Vec::new(), self.0.clone()))) } }
//! let options = Options { layout: Layout::Relational, format: Format::Jsonl, ..Options::default() };
//! let mut tables = TableSet::new("patients", options, Box::new(Mem::default()))?;
//! tables.push(&serde_json::json!({"id": 1, "diagnoses": [{"code": "F10.20"}, {"code": "F41.1"}]}))?;
//! let summary = tables.finish()?;
//! assert_eq!(summary.files.len(), 2); // patients/part-000.jsonl, patients__diagnoses/part-000.jsonl
//! # Ok::<(), tabular::Error>(())
//! ```
//!
//! # Layouts
//!
//! * **relational** (the default): the root table (`patients`) has one row per record and a
//!   `_id` column (a row number that continues across parts, see [`Summary::next_row_ids`]).
//!   Every array that holds objects or arrays becomes a child table named
//!   `<parent>__<key path>` (`patients__diagnoses`) with `_id`, `_parent_id` (the parent
//!   row's `_id`) and `_ordinal` (the position in the array). Arrays of scalars are list
//!   columns; a scalar element of a mixed array goes into a `value` column of the child row.
//!   Nested objects join their keys with the separator (`address_city`). Nothing is multiplied
//!   and every scalar leaf of the input appears exactly once in the output (a property test
//!   checks it). When two keys flatten to the same column name (`{"a_b": 1, "a": {"b": 2}}`)
//!   the later one is written as `a_b_2`, so no value is lost. Empty objects and arrays hold no
//!   value and produce no column.
//! * **wide**: compatible with kipu-python's `flatten_json_df` for people switching (rules in
//!   [`wide`]): one table, `_` joins nested keys, arrays explode into rows, sibling arrays
//!   multiply, empty objects and arrays drop out, the later of two colliding keys wins.
//!
//! # Where kipu-python crashes or corrupts data, and what this crate does instead
//!
//! | kipu-python 0.0.2 (`flatten_json_df`) | here |
//! |---|---|
//! | an empty list of records raises `ValueError("No objects to concatenate")` | an empty stream gives no rows and no file, and no error |
//! | the strings `"None"`, `"nan"` and `"<NA>"` become null | strings are kept exactly |
//! | every all-null row is dropped (a record `{"c": null}` disappears) | every record keeps its rows |
//! | integer columns with gaps become floats (`1` → `1.0`); bools may be coerced | types are inferred and widened only as far as needed: int → float → string; an int beyond 2^53 never goes through float |
//! | an element that is not an object raises `AttributeError` | a typed error naming the record's position |
//! | sibling arrays multiply without bound | the wide layout stops at [`Options::max_rows_per_record`] with an error suggesting the relational layout |
//! | the whole input and every intermediate frame are held in memory | memory is bounded by [`Options::memory_budget`] |
//!
//! A nested array kept as a cell value (`{"m": [[1, 2], [3]]}` gives `m = [1, 2]` and
//! `m = [3]`) is a list column when its elements are scalars and JSON text otherwise.
//!
//! # Schema inference over a stream
//!
//! Columns appear in first-seen order; types widen (null < bool, int < float < string; a list
//! and a scalar meet at string). Rows are buffered column-wise until the buffers of all tables
//! reach [`Options::memory_budget`]; then the largest tables are flushed, each flush one Parquet
//! row group (or a run of CSV/JSONL lines). A file keeps the schema it was opened with. **When a
//! new column or a wider type appears after a file has rows, that file is closed and the table
//! continues in a new file** (`part-001`, `part-002`, ...) whose schema includes the new column
//! at the end and the wider types. Each file is self-describing; readers that merge schemas by
//! name (pyarrow `dataset`, DuckDB `union_by_name`, Spark `mergeSchema`) read a table's files as
//! one. Nothing is ever rewritten, so memory stays bounded however long the stream.
//!
//! # Security invariants
//!
//! * No value reaches an error message: errors name a record position, a table and a rule.
//!   Table and column names come from JSON keys (the schema), never from values.
//! * The crate does no I/O of its own: files are whatever the caller's [`Destination`] makes
//!   of them (the `phigate` binary writes temporary files renamed on commit, optionally
//!   encrypted), and it reads no environment variable.
//! * CSV cells are not altered to defuse spreadsheet formulas (`=`, `+`, `-`, `@`): that would
//!   change clinical values such as `-5`. Open exported CSV in a spreadsheet with care.

#![forbid(unsafe_code)]

mod buffer;
mod error;
mod table;
pub mod value;
pub mod wide;

pub use error::Error;
pub use table::{
    Destination, FileInfo, Format, Layout, ORDINAL, Options, PARENT_ID, ROW_ID, Sink, Summary,
    TableSet,
};
pub use value::{ColumnType, ElemType, Scalar};
