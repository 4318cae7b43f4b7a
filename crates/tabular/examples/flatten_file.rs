//! Flattens a JSON-lines file into tables (used by `bench/flatten.sh`).
//!
//! `cargo run --release -p tabular --example flatten_file -- INPUT.jsonl OUT_DIR [parquet|csv|jsonl] [wide|relational]`
//!
//! Prints one JSON line: records, files, rows and bytes written.

use std::io::{BufRead as _, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use tabular::{Destination, Format, Layout, Options, Sink, TableSet};

struct Dir(PathBuf);

struct FileSink(BufWriter<std::fs::File>);

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Sink for FileSink {
    fn commit(self: Box<Self>) -> std::io::Result<u64> {
        let file = self.0.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(file.metadata()?.len())
    }
}

impl Destination for Dir {
    fn create(&mut self, name: &str) -> std::io::Result<Box<dyn Sink>> {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Ok(Box::new(FileSink(BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(path)?,
        ))))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: flatten_file INPUT.jsonl OUT_DIR [parquet|csv|jsonl] [wide|relational]");
        std::process::exit(2);
    }
    let format = match args.get(3).map(String::as_str).unwrap_or("parquet") {
        "parquet" => Format::Parquet,
        "csv" => Format::Csv,
        "jsonl" => Format::Jsonl,
        _ => {
            eprintln!("format must be parquet, csv or jsonl");
            std::process::exit(2);
        }
    };
    let layout = match args.get(4).map(String::as_str).unwrap_or("wide") {
        "wide" => Layout::Wide,
        "relational" => Layout::Relational,
        _ => {
            eprintln!("layout must be wide or relational");
            std::process::exit(2);
        }
    };
    let input = BufReader::with_capacity(1 << 20, std::fs::File::open(Path::new(&args[1]))?);
    let options = Options {
        layout,
        format,
        ..Options::default()
    };
    let mut set = TableSet::new("records", options, Box::new(Dir(PathBuf::from(&args[2]))))?;
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)?;
        set.push(&value)?;
    }
    let summary = set.finish()?;
    let rows: u64 = summary.files.iter().map(|f| f.rows).sum();
    let bytes: u64 = summary.files.iter().map(|f| f.bytes).sum();
    println!(
        "{{\"records\":{},\"files\":{},\"rows\":{},\"bytes\":{}}}",
        summary.records,
        summary.files.len(),
        rows,
        bytes
    );
    Ok(())
}
