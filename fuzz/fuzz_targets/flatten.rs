//! Fuzzes the JSON flattener: any JSON object, both layouts, no panic; the relational layout
//! writes exactly one root row per record, and the wide layout stops at its row limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tabular::{Destination, Format, Layout, Options, Sink, TableSet};

struct Null;
struct NullSink;

impl std::io::Write for NullSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink for NullSink {
    fn commit(self: Box<Self>) -> std::io::Result<u64> {
        Ok(0)
    }
}

impl Destination for Null {
    fn create(&mut self, _name: &str) -> std::io::Result<Box<dyn Sink>> {
        Ok(Box::new(NullSink))
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for (layout, format) in [
        (Layout::Relational, Format::Parquet),
        (Layout::Wide, Format::Csv),
    ] {
        let options = Options {
            layout,
            format,
            memory_budget: 512,
            max_rows_per_record: 1_000,
            ..Options::default()
        };
        let mut set = TableSet::new("records", options, Box::new(Null)).unwrap();
        match set.push(&value) {
            Ok(()) => {
                let summary = set.finish().unwrap();
                if layout == Layout::Relational {
                    let root: u64 = summary
                        .files
                        .iter()
                        .filter(|f| f.table == "records")
                        .map(|f| f.rows)
                        .sum();
                    assert_eq!(root, 1);
                }
            }
            Err(tabular::Error::NotAnObject { .. }) => assert!(!value.is_object()),
            Err(tabular::Error::TooManyRows { .. }) => assert_eq!(layout, Layout::Wide),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
});
