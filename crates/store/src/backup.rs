//! Encrypted, authenticated backups.
//!
//! A backup is a [`sealed::stream`] of kind `phigate.store.backup` (header with the wrapped
//! backup data key, 64 KiB chunks sealed with AES-256-GCM, chunk index and final flag in the
//! associated data). Its plaintext is a record stream, version 1:
//!
//! ```text
//! "PGBK" 0x01
//! per record: 0x01 | field(kind) | field(id) | 0/1 [field(patient)] | created i64 | updated i64
//!             | 0/1 [expires i64] | field(value)
//! end:        0x00 | record count u64
//! ```
//!
//! Records are stored decrypted inside the backup's own encryption, so a backup restores into
//! any store whose key ring can unwrap the backup key (the same KEK, any version not retired),
//! and restored records are sealed afresh under the target's active version and index key.
//! Expired records are neither backed up nor restored.
//!
//! Retiring a KEK version makes backups taken under it unreadable; take a new backup after
//! `keys rewrap`.

use std::io::{Read, Write};

use sealed::{StreamReader, StreamWriter};
use zeroize::Zeroizing;

use crate::codec::{self, Reader};
use crate::error::{Result, StoreError};
use crate::{ObjectContext, Store, db::with_pool};

const BACKUP_KIND: &str = "phigate.store.backup";
const RECORDS_MAGIC: &[u8; 5] = b"PGBK\x01";

/// What a backup wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupSummary {
    /// Records written.
    pub records: u64,
}

/// What a restore did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Records written to the store.
    pub restored: u64,
    /// Records skipped because the store holds a newer version (conflicts; use force to overwrite).
    pub conflicts: u64,
    /// Records skipped because the store already holds the same version.
    pub unchanged: u64,
    /// Records skipped because they have expired since the backup.
    pub expired: u64,
}

struct BackupRecord {
    kind: String,
    id: String,
    patient: Option<String>,
    created: i64,
    updated: i64,
    expires: Option<i64>,
    value: Zeroizing<Vec<u8>>,
}

impl Store {
    /// Writes every live record to `out` as an encrypted backup.
    pub async fn backup(&self, out: impl Write) -> Result<BackupSummary> {
        let now = self.now();
        let rows = self.all_rows().await?;
        let mut writer = StreamWriter::new(&self.inner.keyring, BACKUP_KIND, out)?;
        writer.write_all(RECORDS_MAGIC)?;
        let mut count: u64 = 0;
        for (kind, key_hmac, created, updated, expires, sealed) in rows {
            if expires.is_some_and(|e| e <= now) {
                continue;
            }
            let plain = self
                .inner
                .keyring
                .open(&ObjectContext::new(&kind, &key_hmac), &sealed)?;
            let payload = codec::decode_payload(&plain)?;
            let mut buf = Zeroizing::new(Vec::with_capacity(payload.value.len() + 64));
            buf.push(1);
            codec::push_field(&mut buf, kind.as_bytes())?;
            codec::push_field(&mut buf, payload.id.as_bytes())?;
            match &payload.patient {
                Some(p) => {
                    buf.push(1);
                    codec::push_field(&mut buf, p.as_bytes())?;
                }
                None => buf.push(0),
            }
            buf.extend_from_slice(&created.to_be_bytes());
            buf.extend_from_slice(&updated.to_be_bytes());
            match expires {
                Some(e) => {
                    buf.push(1);
                    buf.extend_from_slice(&e.to_be_bytes());
                }
                None => buf.push(0),
            }
            codec::push_field(&mut buf, &payload.value)?;
            writer.write_all(&buf)?;
            count += 1;
        }
        let mut end = vec![0u8];
        end.extend_from_slice(&count.to_be_bytes());
        writer.write_all(&end)?;
        writer.finish()?;
        Ok(BackupSummary { records: count })
    }

    /// Restores a backup. The whole file is verified before anything is written; a modified or
    /// truncated backup changes nothing. A record that is newer in the store is left alone and
    /// counted as a conflict unless `force` is set.
    pub async fn restore(&self, input: impl Read, force: bool) -> Result<RestoreReport> {
        let plain = StreamReader::new(&self.inner.keyring, BACKUP_KIND, input)?.read_to_end()?;
        let records = parse_records(&plain)?;
        let now = self.now();
        let mut report = RestoreReport::default();
        for r in records {
            if r.expires.is_some_and(|e| e <= now) {
                report.expired += 1;
                continue;
            }
            crate::check_kind(&r.kind)?;
            let key_hmac = self.key_hmac(&r.kind, &r.id);
            let existing: Option<i64> = with_pool!(self.pool(), p => {
                sqlx::query_scalar("SELECT updated_at FROM records WHERE kind = $1 AND key_hmac = $2")
                    .bind(&r.kind)
                    .bind(&key_hmac)
                    .fetch_optional(p)
                    .await?
            });
            match existing {
                Some(current) if current > r.updated && !force => {
                    report.conflicts += 1;
                    continue;
                }
                Some(current) if current == r.updated && !force => {
                    report.unchanged += 1;
                    continue;
                }
                _ => {}
            }
            self.write_record(
                &r.kind,
                &r.id,
                r.patient.as_deref(),
                &r.value,
                r.created,
                r.updated,
                r.expires,
            )
            .await?;
            report.restored += 1;
        }
        Ok(report)
    }
}

fn parse_records(plain: &[u8]) -> Result<Vec<BackupRecord>> {
    let mut r = Reader::new(plain);
    if r.take(RECORDS_MAGIC.len())? != RECORDS_MAGIC {
        return Err(StoreError::Corrupt("backup content has an unknown format"));
    }
    let mut out = Vec::new();
    loop {
        match r.u8()? {
            0 => {
                let count = u64::from_be_bytes(
                    r.take(8)?
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("count"))?,
                );
                if count != out.len() as u64 || !r.is_empty() {
                    return Err(StoreError::Corrupt("backup record count does not match"));
                }
                return Ok(out);
            }
            1 => {
                let kind = r.string()?;
                let id = r.string()?;
                let patient = match r.u8()? {
                    0 => None,
                    1 => Some(r.string()?),
                    _ => return Err(StoreError::Corrupt("bad patient flag in backup")),
                };
                let created = r.i64()?;
                let updated = r.i64()?;
                let expires = match r.u8()? {
                    0 => None,
                    1 => Some(r.i64()?),
                    _ => return Err(StoreError::Corrupt("bad expiry flag in backup")),
                };
                let value = Zeroizing::new(r.field()?.to_vec());
                out.push(BackupRecord {
                    kind,
                    id,
                    patient,
                    created,
                    updated,
                    expires,
                    value,
                });
            }
            _ => return Err(StoreError::Corrupt("bad record tag in backup")),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn arbitrary_record_streams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut input = RECORDS_MAGIC.to_vec();
            input.extend(bytes);
            let _ = parse_records(&input);
        }
    }

    #[test]
    fn record_stream_with_a_wrong_count_is_refused() {
        let mut input = RECORDS_MAGIC.to_vec();
        input.push(0);
        input.extend(3u64.to_be_bytes());
        assert!(matches!(parse_records(&input), Err(StoreError::Corrupt(_))));
        let mut ok = RECORDS_MAGIC.to_vec();
        ok.push(0);
        ok.extend(0u64.to_be_bytes());
        assert!(parse_records(&ok).unwrap().is_empty());
    }
}
