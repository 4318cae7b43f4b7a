//! Packed pages: up to [`PAGE_LEAVES`] entry rows (with their search rows) in one result row.
//!
//! Verification reads every entry. Streamed one driver row per entry, the database driver's
//! per-row cost (SQLite: a row handed from the connection's worker thread to the async task,
//! every column copied) was larger than hashing and parsing the entry. A page query makes the
//! database concatenate the rows of an index range, in index order, into one blob, so the
//! per-row work stays inside the database engine and the driver moves one value per page.
//!
//! Record layout, repeated for each row (all lengths in bytes):
//!
//! ```text
//! header, 75 ASCII characters (hex digits and 0/1 flags):
//!   idx %016x | len(leaf) %08x | len(leaf_hash) %08x |
//!   has search row 0/1 | principal not null 0/1 | patient not null 0/1 |
//!   time_us %016x | len(kind) %08x | len(principal) %08x | len(patient) %08x
//! then: leaf | leaf_hash | kind | principal | patient
//! ```
//!
//! Negative integers appear as 16 hex digits of their two's complement. Nothing in a record
//! is trusted: the verifier checks each row's position, hash and search columns, and a page
//! that does not parse is an irregularity like any other (the verifier falls back to its
//! ordered row-by-row pass, which reports the damage).

use crate::error::{AuditError, storage};
use crate::store::{Db, Layout};

/// Entries per page.
pub(crate) const PAGE_LEAVES: u64 = 1024;

const HEADER: usize = 16 + 8 + 8 + 3 + 16 + 8 + 8 + 8;

fn sqlite_sql(layout: Layout) -> String {
    format!(
        "SELECT CAST(group_concat(rec, '') AS BLOB) FROM (SELECT \
         CAST(printf('%016x%08x%08x%d%d%d%016x%08x%08x%08x', e.idx, \
           length(CAST(e.leaf AS BLOB)), length(CAST(e.leaf_hash AS BLOB)), \
           s.idx IS NOT NULL, s.principal IS NOT NULL, s.patient IS NOT NULL, \
           ifnull(s.time_us, 0), ifnull(length(CAST(s.kind AS BLOB)), 0), \
           ifnull(length(CAST(s.principal AS BLOB)), 0), \
           ifnull(length(CAST(s.patient AS BLOB)), 0)) AS BLOB) \
         || e.leaf || e.leaf_hash || ifnull(s.kind, '') || ifnull(s.principal, '') \
         || ifnull(s.patient, '') AS rec \
         FROM audit_entries e LEFT JOIN {} s ON s.idx = e.idx \
         WHERE e.idx >= ? AND e.idx < ? ORDER BY e.idx)",
        layout.search_table()
    )
}

fn postgres_sql(layout: Layout) -> String {
    format!(
        "SELECT string_agg(rec, ''::bytea ORDER BY idx) FROM (SELECT e.idx, \
         convert_to(lpad(to_hex(e.idx), 16, '0') \
           || lpad(to_hex(length(e.leaf)), 8, '0') || lpad(to_hex(length(e.leaf_hash)), 8, '0') \
           || (s.idx IS NOT NULL)::int::text || (s.principal IS NOT NULL)::int::text \
           || (s.patient IS NOT NULL)::int::text \
           || lpad(to_hex(coalesce(s.time_us, 0)), 16, '0') \
           || lpad(to_hex(coalesce(octet_length(s.kind), 0)), 8, '0') \
           || lpad(to_hex(coalesce(octet_length(s.principal), 0)), 8, '0') \
           || lpad(to_hex(coalesce(octet_length(s.patient), 0)), 8, '0'), 'UTF8') \
         || e.leaf || e.leaf_hash || convert_to(coalesce(s.kind, ''), 'UTF8') \
         || convert_to(coalesce(s.principal, ''), 'UTF8') \
         || convert_to(coalesce(s.patient, ''), 'UTF8') AS rec \
         FROM audit_entries e LEFT JOIN {} s ON s.idx = e.idx \
         WHERE e.idx >= $1 AND e.idx < $2) AS r",
        layout.search_table()
    )
}

/// The page query for a backend and layout (built once per verification).
#[derive(Debug, Clone)]
pub(crate) struct PageQuery(String);

impl PageQuery {
    pub(crate) fn new(db: &Db, layout: Layout) -> Self {
        Self(match db {
            Db::Sqlite(_) => sqlite_sql(layout),
            Db::Postgres(_) => postgres_sql(layout),
        })
    }

    /// The packed rows with `lower <= idx < upper`, in index order (empty if none).
    pub(crate) async fn read(
        &self,
        db: &Db,
        lower: i64,
        upper: i64,
    ) -> Result<Vec<u8>, AuditError> {
        let row: (Option<Vec<u8>>,) = match db {
            Db::Sqlite(p) => {
                sqlx::query_as(&self.0)
                    .bind(lower)
                    .bind(upper)
                    .fetch_one(p)
                    .await
            }
            Db::Postgres(p) => {
                sqlx::query_as(&self.0)
                    .bind(lower)
                    .bind(upper)
                    .fetch_one(p)
                    .await
            }
        }
        .map_err(storage("reading entries"))?;
        Ok(row.0.unwrap_or_default())
    }
}

/// A search row inside a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SearchCols<'a> {
    pub(crate) time_us: i64,
    pub(crate) kind: &'a [u8],
    pub(crate) principal: Option<&'a [u8]>,
    pub(crate) patient: Option<&'a [u8]>,
}

/// One record of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub(crate) idx: i64,
    pub(crate) leaf: &'a [u8],
    pub(crate) stored_hash: &'a [u8],
    pub(crate) search: Option<SearchCols<'a>>,
}

fn hex_u64(digits: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for &d in digits {
        let n = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u64::from(n);
    }
    Some(v)
}

fn flag(b: u8) -> Option<bool> {
    match b {
        b'0' => Some(false),
        b'1' => Some(true),
        _ => None,
    }
}

/// Splits a page into records; `None` for anything that is not exactly a sequence of
/// well-formed records.
pub(crate) struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    pub(crate) fn new(page: &'a [u8]) -> Self {
        Self { rest: page }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn parse(&mut self) -> Option<Record<'a>> {
        let h = self.take(HEADER)?;
        let idx = hex_u64(&h[0..16])? as i64;
        let leaf_len = usize::try_from(hex_u64(&h[16..24])?).ok()?;
        let hash_len = usize::try_from(hex_u64(&h[24..32])?).ok()?;
        let has_search = flag(h[32])?;
        let has_principal = flag(h[33])?;
        let has_patient = flag(h[34])?;
        let time_us = hex_u64(&h[35..51])? as i64;
        let kind_len = usize::try_from(hex_u64(&h[51..59])?).ok()?;
        let principal_len = usize::try_from(hex_u64(&h[59..67])?).ok()?;
        let patient_len = usize::try_from(hex_u64(&h[67..75])?).ok()?;
        let leaf = self.take(leaf_len)?;
        let stored_hash = self.take(hash_len)?;
        let kind = self.take(kind_len)?;
        let principal = self.take(principal_len)?;
        let patient = self.take(patient_len)?;
        let search = has_search.then_some(SearchCols {
            time_us,
            kind,
            principal: has_principal.then_some(principal),
            patient: has_patient.then_some(patient),
        });
        Some(Record {
            idx,
            leaf,
            stored_hash,
            search,
        })
    }
}

impl<'a> Iterator for Records<'a> {
    /// `Err(())` once the page is malformed (and nothing after it).
    type Item = Result<Record<'a>, ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match self.parse() {
            Some(r) => Some(Ok(r)),
            None => {
                self.rest = &[];
                Some(Err(()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        idx: i64,
        leaf: &[u8],
        hash: &[u8],
        search: Option<(i64, &str, Option<&str>, Option<&str>)>,
    ) -> Vec<u8> {
        let (has, t, k, p, q) = match search {
            Some((t, k, p, q)) => (1, t, k, p, q),
            None => (0, 0, "", None, None),
        };
        let mut out = format!(
            "{:016x}{:08x}{:08x}{}{}{}{:016x}{:08x}{:08x}{:08x}",
            idx,
            leaf.len(),
            hash.len(),
            has,
            u8::from(p.is_some()),
            u8::from(q.is_some()),
            t,
            k.len(),
            p.map_or(0, str::len),
            q.map_or(0, str::len)
        )
        .into_bytes();
        out.extend_from_slice(leaf);
        out.extend_from_slice(hash);
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(p.unwrap_or("").as_bytes());
        out.extend_from_slice(q.unwrap_or("").as_bytes());
        out
    }

    #[test]
    fn records_round_trip_with_and_without_search_rows() {
        let mut page = record(-3, b"{\"x\":1}", &[0, 0xff, 0x80], None);
        page.extend(record(
            7,
            b"",
            &[1; 32],
            Some((-5, "phi_access", None, Some("hmac"))),
        ));
        page.extend(record(8, b"l", &[], Some((1, "k", Some(""), None))));
        let recs: Vec<_> = Records::new(&page).collect::<Result<_, _>>().unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(
            (
                recs[0].idx,
                recs[0].leaf,
                recs[0].stored_hash,
                recs[0].search
            ),
            (-3, &b"{\"x\":1}"[..], &[0u8, 0xff, 0x80][..], None)
        );
        assert_eq!(
            recs[1].search,
            Some(SearchCols {
                time_us: -5,
                kind: b"phi_access",
                principal: None,
                patient: Some(b"hmac")
            })
        );
        assert_eq!(recs[2].search.unwrap().principal, Some(&b""[..]));
    }

    #[test]
    fn a_truncated_or_garbled_page_is_an_error_not_a_panic() {
        let page = record(1, b"abc", &[9; 32], None);
        for cut in 0..page.len() {
            let items: Vec<_> = Records::new(&page[..cut]).collect();
            assert!(cut == 0 || items.last() == Some(&Err(())), "cut at {cut}");
        }
        let mut garbled = page.clone();
        garbled[3] = b'z';
        assert_eq!(Records::new(&garbled).next(), Some(Err(())));
        let mut huge = page;
        huge[16..24].copy_from_slice(b"ffffffff");
        assert_eq!(Records::new(&huge).next(), Some(Err(())));
    }
}
