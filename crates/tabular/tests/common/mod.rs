//! An in-memory destination for tests.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use tabular::{Destination, Sink};

/// Committed files by name.
pub type Files = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

#[derive(Default, Clone)]
pub struct Memory {
    pub files: Files,
}

struct MemorySink {
    name: String,
    bytes: Vec<u8>,
    files: Files,
}

impl Write for MemorySink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink for MemorySink {
    fn commit(self: Box<Self>) -> std::io::Result<u64> {
        let n = self.bytes.len() as u64;
        self.files.lock().unwrap().insert(self.name, self.bytes);
        Ok(n)
    }
}

impl Destination for Memory {
    fn create(&mut self, name: &str) -> std::io::Result<Box<dyn Sink>> {
        Ok(Box::new(MemorySink {
            name: name.to_string(),
            bytes: Vec::new(),
            files: self.files.clone(),
        }))
    }
}

/// The JSON lines of every file whose name starts with `table/`, in file order.
#[allow(dead_code)]
pub fn jsonl_rows(files: &Files, table: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let files = files.lock().unwrap();
    let prefix = format!("{table}/");
    files
        .iter()
        .filter(|(name, _)| name.starts_with(&prefix))
        .flat_map(|(_, bytes)| {
            std::str::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(|l| match serde_json::from_str(l).unwrap() {
                    serde_json::Value::Object(m) => m,
                    _ => panic!("a JSONL line is not an object"),
                })
                .collect::<Vec<_>>()
        })
        .collect()
}
