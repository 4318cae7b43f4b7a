//! The crate's error type. Messages name the record number, the table and the rule broken,
//! never a value (values may be PHI).

/// Why flattening or writing failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A record of the stream is not a JSON object.
    #[error("record {index} is {kind}, not a JSON object")]
    NotAnObject {
        /// 0-based position in the stream.
        index: u64,
        /// What it is instead.
        kind: &'static str,
    },
    /// In the wide layout, a record would expand to more rows than allowed.
    #[error(
        "record {index} expands to more than {limit} rows in the wide layout (sibling arrays multiply); use the relational layout"
    )]
    TooManyRows {
        /// 0-based position in the stream.
        index: u64,
        /// The configured limit.
        limit: usize,
    },
    /// Invalid options.
    #[error("invalid tabular options: {0}")]
    Config(&'static str),
    /// Writing a file of `table` failed (disk full, permission denied, ...).
    #[error("cannot write table {table}: {source}")]
    Io {
        /// The table whose file failed.
        table: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The Parquet or Arrow encoder failed.
    #[error("Parquet encoding failed: {0}")]
    Encode(String),
}

impl Error {
    pub(crate) fn io(table: &str, source: std::io::Error) -> Self {
        Error::Io {
            table: table.to_string(),
            source,
        }
    }

    pub(crate) fn parquet(e: parquet::errors::ParquetError) -> Self {
        // An I/O error inside the encoder keeps its kind, so callers can tell a full disk.
        match e {
            parquet::errors::ParquetError::External(inner) => {
                match inner.downcast::<std::io::Error>() {
                    Ok(io) => Error::Io {
                        table: String::new(),
                        source: *io,
                    },
                    Err(other) => Error::Encode(other.to_string()),
                }
            }
            other => Error::Encode(other.to_string()),
        }
    }

    pub(crate) fn arrow(e: arrow_schema::ArrowError) -> Self {
        match e {
            arrow_schema::ArrowError::IoError(_, io) => Error::Io {
                table: String::new(),
                source: io,
            },
            other => Error::Encode(other.to_string()),
        }
    }

    /// The I/O error kind, when the failure was an I/O error.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}
