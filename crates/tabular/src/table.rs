//! [`TableSet`]: records in, flattened tables out, in bounded memory.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Write};

use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::{Map, Value};

use crate::buffer::{TableBuffer, arrow_schema, write_csv_header};
use crate::error::Error;
use crate::value::{ColumnType, Scalar};
use crate::wide::{RowLimitExceeded, flatten_record};

/// How records become tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Layout {
    /// One table per array path, with row ids, parent ids and ordinals: nothing is multiplied
    /// and no value is lost.
    #[default]
    Relational,
    /// kipu-python's `flatten_json_df` layout: one table, arrays exploded into rows, sibling
    /// arrays multiplied.
    Wide,
}

/// The file format of the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Apache Parquet, zstd-compressed, one row group per flush.
    Parquet,
    /// RFC 4180 CSV with a header line; null is an empty field, an empty string is `""`.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// The file extension (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

/// Where the files go. The caller decides what a file is (a temporary file renamed on commit,
/// an encrypted stream, memory in tests); this crate does no file I/O of its own.
pub trait Destination: Send {
    /// Starts the file `name` (a relative path such as `patients__insurances/part-00001-000.parquet`).
    fn create(&mut self, name: &str) -> std::io::Result<Box<dyn Sink>>;
}

/// A file being written.
pub trait Sink: Write + Send {
    /// Makes the file durable and visible; returns its size in bytes.
    fn commit(self: Box<Self>) -> std::io::Result<u64>;
}

/// Limits and naming.
#[derive(Clone, Debug)]
pub struct Options {
    /// Table layout.
    pub layout: Layout,
    /// Output format.
    pub format: Format,
    /// Separator of nested object keys in column names (kipu-python: `_`).
    pub separator: String,
    /// Buffered bytes (all tables together) that trigger a flush: each flush is one Parquet
    /// row group, so this bounds both the buffer and the writer's memory.
    pub memory_budget: usize,
    /// The most rows one record may expand to in the wide layout.
    pub max_rows_per_record: usize,
    /// File names are `<table>/<file_prefix>-<seq>.<ext>`.
    pub file_prefix: String,
    /// zstd level for Parquet.
    pub zstd_level: i32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            layout: Layout::Relational,
            format: Format::Parquet,
            separator: "_".into(),
            memory_budget: 64 << 20,
            max_rows_per_record: 100_000,
            file_prefix: "part".into(),
            zstd_level: 3,
        }
    }
}

/// A file that was written and committed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileInfo {
    /// The table it belongs to.
    pub table: String,
    /// Its name as given to [`Destination::create`].
    pub name: String,
    /// Rows in it.
    pub rows: u64,
    /// Its size as reported by [`Sink::commit`].
    pub bytes: u64,
}

/// What [`TableSet::finish`] returns.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Every committed file, in commit order.
    pub files: Vec<FileInfo>,
    /// Records pushed.
    pub records: u64,
    /// Next row id per table (relational layout); pass to [`TableSet::with_row_ids`] to
    /// continue the numbering in a later part.
    pub next_row_ids: BTreeMap<String, u64>,
}

enum Writer {
    Parquet(Box<ArrowWriter<Box<dyn Sink>>>, SchemaRef),
    Csv(BufWriter<Box<dyn Sink>>),
    Jsonl(BufWriter<Box<dyn Sink>>),
}

struct OpenFile {
    name: String,
    signature: Vec<(String, ColumnType)>,
    writer: Writer,
    rows: u64,
}

struct Table {
    name: String,
    identity: String,
    buffer: TableBuffer,
    file: Option<OpenFile>,
    seq: u32,
    next_id: u64,
    current_id: u64,
}

/// Names reserved for the relational layout's keys.
pub const ROW_ID: &str = "_id";
/// See [`ROW_ID`].
pub const PARENT_ID: &str = "_parent_id";
/// See [`ROW_ID`].
pub const ORDINAL: &str = "_ordinal";

/// Flattens a stream of JSON objects into tables and writes them.
pub struct TableSet {
    options: Options,
    tables: Vec<Table>,
    by_identity: HashMap<String, usize>,
    taken_names: std::collections::HashSet<String>,
    destination: Box<dyn Destination>,
    files: Vec<FileInfo>,
    records: u64,
    start_ids: BTreeMap<String, u64>,
    props: WriterProperties,
}

impl std::fmt::Debug for TableSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableSet")
            .field("tables", &self.tables.len())
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl TableSet {
    /// A table set whose root table is `root` (the endpoint's record key, e.g. `patients`).
    pub fn new(
        root: &str,
        options: Options,
        destination: Box<dyn Destination>,
    ) -> Result<Self, Error> {
        let level = ZstdLevel::try_new(options.zstd_level)
            .map_err(|_| Error::Config("zstd level must be between 1 and 22"))?;
        if options.separator.is_empty() {
            return Err(Error::Config("the separator must not be empty"));
        }
        if root.is_empty() || root.contains(['/', '\\']) || root.starts_with('.') {
            return Err(Error::Config(
                "the root table name must be a plain, non-empty name",
            ));
        }
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .build();
        let mut set = Self {
            options,
            tables: Vec::new(),
            by_identity: HashMap::new(),
            taken_names: Default::default(),
            destination,
            files: Vec::new(),
            records: 0,
            start_ids: BTreeMap::new(),
            props,
        };
        set.table(String::new(), root.to_string());
        Ok(set)
    }

    /// Continues row ids from a previous part (see [`Summary::next_row_ids`]).
    pub fn with_row_ids(mut self, next: BTreeMap<String, u64>) -> Self {
        for table in &mut self.tables {
            if let Some(id) = next.get(&table.name) {
                table.next_id = *id;
            }
        }
        self.start_ids = next;
        self
    }

    /// Records pushed so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    fn table(&mut self, identity: String, name: String) -> usize {
        if let Some(&i) = self.by_identity.get(&identity) {
            return i;
        }
        let mut unique = name.clone();
        let mut n = 2;
        while self.taken_names.contains(&unique) {
            unique = format!("{name}_{n}");
            n += 1;
        }
        self.taken_names.insert(unique.clone());
        let next_id = self.start_ids.get(&unique).copied().unwrap_or(0);
        self.tables.push(Table {
            name: unique,
            identity: identity.clone(),
            buffer: TableBuffer::default(),
            file: None,
            seq: 0,
            next_id,
            current_id: 0,
        });
        let i = self.tables.len() - 1;
        self.by_identity.insert(identity, i);
        i
    }

    /// Flattens one record (it must be a JSON object) into the tables; flushes to files when
    /// the memory budget is reached.
    pub fn push(&mut self, record: &Value) -> Result<(), Error> {
        let Value::Object(obj) = record else {
            return Err(Error::NotAnObject {
                index: self.records,
                kind: json_kind(record),
            });
        };
        match self.options.layout {
            Layout::Wide => {
                let rows = flatten_record(
                    obj,
                    &self.options.separator,
                    self.options.max_rows_per_record,
                )
                .map_err(|RowLimitExceeded| Error::TooManyRows {
                    index: self.records,
                    limit: self.options.max_rows_per_record,
                })?;
                let buffer = &mut self.tables[0].buffer;
                for row in rows {
                    for (k, v) in row {
                        // Keys of one row are unique, so this never collides.
                        let _ = buffer.try_set(&k, v);
                    }
                    buffer.end_row();
                }
            }
            Layout::Relational => {
                let id = self.begin_row(0);
                self.set_unique(0, ROW_ID, Scalar::Int(id as i64));
                self.walk(0, "", obj);
                self.tables[0].buffer.end_row();
            }
        }
        self.records += 1;
        let total: usize = self.tables.iter().map(|t| t.buffer.bytes()).sum();
        if total >= self.options.memory_budget {
            self.flush_until(self.options.memory_budget / 2)?;
        }
        Ok(())
    }

    fn begin_row(&mut self, t: usize) -> u64 {
        let table = &mut self.tables[t];
        let id = table.next_id;
        table.next_id += 1;
        table.current_id = id;
        id
    }

    fn set_unique(&mut self, t: usize, key: &str, value: Scalar) {
        let buffer = &mut self.tables[t].buffer;
        let Err(mut value) = buffer.try_set(key, value) else {
            return;
        };
        // A key collision (`{"a_b": 1, "a": {"b": 2}}`): keep both values, the later one
        // under a suffixed name.
        let mut n = 2u32;
        loop {
            match buffer.try_set(&format!("{key}_{n}"), value) {
                Ok(()) => return,
                Err(v) => value = v,
            }
            n += 1;
        }
    }

    fn walk(&mut self, t: usize, prefix: &str, obj: &Map<String, Value>) {
        for (k, v) in obj {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}{}{k}", self.options.separator)
            };
            self.field(t, &key, v);
        }
    }

    fn field(&mut self, t: usize, key: &str, v: &Value) {
        match v {
            Value::Object(child) => self.walk(t, key, child),
            Value::Array(items) if items.is_empty() => {}
            Value::Array(items) if items.iter().all(|i| !i.is_array() && !i.is_object()) => {
                self.set_unique(t, key, Scalar::from_json(v));
            }
            Value::Array(items) => {
                let parent_id = self.tables[t].current_id;
                let identity = format!("{}\u{1f}{key}", self.tables[t].identity);
                let name = format!("{}__{key}", self.tables[t].name);
                let c = self.table(identity, name);
                for (ordinal, item) in items.iter().enumerate() {
                    let id = self.begin_row(c);
                    self.set_unique(c, ROW_ID, Scalar::Int(id as i64));
                    self.set_unique(c, PARENT_ID, Scalar::Int(parent_id as i64));
                    self.set_unique(c, ORDINAL, Scalar::Int(ordinal as i64));
                    match item {
                        Value::Object(child) => self.walk(c, "", child),
                        other => self.field(c, "value", other),
                    }
                    self.tables[c].buffer.end_row();
                    // A nested table may have replaced the current id of this one.
                    self.tables[t].current_id = parent_id;
                }
            }
            scalar => self.set_unique(t, key, Scalar::from_json(scalar)),
        }
    }

    fn flush_until(&mut self, target: usize) -> Result<(), Error> {
        let mut order: Vec<usize> = (0..self.tables.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.tables[i].buffer.bytes()));
        let mut total: usize = self.tables.iter().map(|t| t.buffer.bytes()).sum();
        for i in order {
            if total <= target {
                break;
            }
            total -= self.tables[i].buffer.bytes();
            self.flush_table(i)?;
        }
        Ok(())
    }

    fn flush_table(&mut self, t: usize) -> Result<(), Error> {
        if self.tables[t].buffer.rows() == 0 {
            return Ok(());
        }
        let signature = self.tables[t].buffer.signature();
        let compatible = self.tables[t]
            .file
            .as_ref()
            .is_some_and(|f| f.signature == signature);
        if !compatible {
            self.close_file(t)?;
            self.open_file(t, signature)?;
        }
        let table = &mut self.tables[t];
        let Some(file) = table.file.as_mut() else {
            return Err(Error::Config("internal: no open file after opening one"));
        };
        let rows = table.buffer.rows() as u64;
        let io = |e: std::io::Error| Error::io(&table.name, e);
        match &mut file.writer {
            Writer::Parquet(writer, schema) => {
                let batch = table.buffer.to_record_batch(schema).map_err(Error::arrow)?;
                writer.write(&batch).map_err(Error::parquet)?;
                writer.flush().map_err(Error::parquet)?;
            }
            Writer::Csv(w) => table.buffer.write_csv(w).map_err(io)?,
            Writer::Jsonl(w) => table.buffer.write_jsonl(w).map_err(io)?,
        }
        file.rows += rows;
        table.buffer.clear();
        Ok(())
    }

    fn open_file(&mut self, t: usize, signature: Vec<(String, ColumnType)>) -> Result<(), Error> {
        let table = &mut self.tables[t];
        let name = format!(
            "{}/{}-{:03}.{}",
            table.name,
            self.options.file_prefix,
            table.seq,
            self.options.format.extension()
        );
        table.seq += 1;
        let sink = self
            .destination
            .create(&name)
            .map_err(|e| Error::io(&table.name, e))?;
        let writer = match self.options.format {
            Format::Parquet => {
                let schema = arrow_schema(&signature);
                let writer = ArrowWriter::try_new(sink, schema.clone(), Some(self.props.clone()))
                    .map_err(Error::parquet)?;
                Writer::Parquet(Box::new(writer), schema)
            }
            Format::Csv => {
                let mut w = BufWriter::with_capacity(256 << 10, sink);
                let names: Vec<String> = signature.iter().map(|(n, _)| n.clone()).collect();
                write_csv_header(&mut w, &names).map_err(|e| Error::io(&table.name, e))?;
                Writer::Csv(w)
            }
            Format::Jsonl => Writer::Jsonl(BufWriter::with_capacity(256 << 10, sink)),
        };
        table.file = Some(OpenFile {
            name,
            signature,
            writer,
            rows: 0,
        });
        Ok(())
    }

    fn close_file(&mut self, t: usize) -> Result<(), Error> {
        let table = &mut self.tables[t];
        let Some(file) = table.file.take() else {
            return Ok(());
        };
        let io = |e: std::io::Error| Error::io(&table.name, e);
        let sink = match file.writer {
            Writer::Parquet(writer, _) => writer.into_inner().map_err(Error::parquet)?,
            Writer::Csv(w) | Writer::Jsonl(w) => w.into_inner().map_err(|e| io(e.into_error()))?,
        };
        let bytes = sink.commit().map_err(io)?;
        self.files.push(FileInfo {
            table: table.name.clone(),
            name: file.name,
            rows: file.rows,
            bytes,
        });
        Ok(())
    }

    /// Flushes every buffer and commits every file.
    pub fn finish(mut self) -> Result<Summary, Error> {
        for t in 0..self.tables.len() {
            self.flush_table(t)?;
            self.close_file(t)?;
        }
        let next_row_ids = self
            .tables
            .iter()
            .filter(|_| self.options.layout == Layout::Relational)
            .map(|t| (t.name.clone(), t.next_id))
            .collect();
        Ok(Summary {
            files: self.files,
            records: self.records,
            next_row_ids,
        })
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
