//! Sealed streams: authenticated, chunked encryption for files such as backups.
//!
//! Format, version 1 (integers big-endian):
//!
//! ```text
//! header: "PGSS" | 0x01 | field8(kind) | stream id (16 random bytes) | field8(key id)
//!         | KEK version u32 | u16 wrapped-key length | wrapped data key
//! chunk:  flag u8 (0 = more follow, 1 = final) | u32 length of the sealed part
//!         | nonce 12 | ciphertext | tag 16
//! ```
//!
//! The data key is wrapped like a sealed object's, bound to (kind, stream id). Each chunk's
//! associated data is `SHA-256(header) || chunk index u64 || flag`, so a modified header,
//! reordered, dropped, duplicated or spliced chunk fails authentication; a stream that ends
//! without a chunk flagged final is reported as truncated; bytes after the final chunk are
//! refused. Readers must not act on any chunk before the whole stream has been verified when
//! acting on a partial stream would be harmful (restore verifies everything first).

use std::io::{Read, Write};

use aws_lc_rs::digest;

use crate::error::{Result, SealError};
use crate::format::ObjectContext;
use crate::keyring::Keyring;
use crate::keys::{DataKey, TAG_LEN};
use crate::plaintext::Plaintext;

const STREAM_MAGIC: &[u8; 4] = b"PGSS";
const STREAM_VERSION: u8 = 1;
/// Plaintext bytes per chunk.
pub const CHUNK_LEN: usize = 64 * 1024;
const MAX_SEALED_CHUNK: usize = 12 + CHUNK_LEN + TAG_LEN;

fn chunk_aad(header_hash: &[u8], index: u64, last: bool) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header_hash.len() + 9);
    aad.extend_from_slice(header_hash);
    aad.extend_from_slice(&index.to_be_bytes());
    aad.push(u8::from(last));
    aad
}

/// Writes a sealed stream. Call [`StreamWriter::finish`]; a stream dropped without it has no
/// final chunk and will be rejected as truncated.
pub struct StreamWriter<W: Write> {
    inner: W,
    key: DataKey,
    header_hash: Vec<u8>,
    index: u64,
    buffer: Plaintext,
}

impl<W: Write> std::fmt::Debug for StreamWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter")
            .field("chunks_written", &self.index)
            .finish_non_exhaustive()
    }
}

impl<W: Write> StreamWriter<W> {
    /// Starts a stream of `kind` under the key ring's active KEK and writes its header.
    pub fn new(keyring: &Keyring, kind: &str, mut inner: W) -> Result<Self> {
        let mut stream_id = [0u8; 16];
        aws_lc_rs::rand::fill(&mut stream_id).map_err(|_| SealError::Crypto("random generator"))?;
        let ctx = ObjectContext::new(kind, &stream_id);
        let (key, version, wrapped) = keyring.new_stream_key(&ctx)?;
        let mut header = STREAM_MAGIC.to_vec();
        header.push(STREAM_VERSION);
        push_field8(&mut header, kind.as_bytes())?;
        header.extend_from_slice(&stream_id);
        push_field8(&mut header, keyring.key_id().as_bytes())?;
        header.extend_from_slice(&version.to_be_bytes());
        let wrapped_len = u16::try_from(wrapped.len())
            .map_err(|_| SealError::Malformed("wrapped key too long"))?;
        header.extend_from_slice(&wrapped_len.to_be_bytes());
        header.extend_from_slice(&wrapped);
        inner.write_all(&header)?;
        let header_hash = digest::digest(&digest::SHA256, &header).as_ref().to_vec();
        Ok(Self {
            inner,
            key,
            header_hash,
            index: 0,
            buffer: Plaintext::with_capacity(CHUNK_LEN),
        })
    }

    /// Appends plaintext.
    pub fn write_all(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let room = CHUNK_LEN - self.buffer.len();
            let take = room.min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() == CHUNK_LEN && !data.is_empty() {
                self.emit(false)?;
            }
        }
        Ok(())
    }

    fn emit(&mut self, last: bool) -> Result<()> {
        let sealed = self.key.encrypt(
            &chunk_aad(&self.header_hash, self.index, last),
            &self.buffer,
        )?;
        let len =
            u32::try_from(sealed.len()).map_err(|_| SealError::Malformed("chunk too long"))?;
        self.inner.write_all(&[u8::from(last)])?;
        self.inner.write_all(&len.to_be_bytes())?;
        self.inner.write_all(&sealed)?;
        self.index += 1;
        self.buffer.clear();
        Ok(())
    }

    /// Writes the final chunk, flushes and returns the inner writer.
    pub fn finish(mut self) -> Result<W> {
        self.emit(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

/// Reads and verifies a sealed stream chunk by chunk.
pub struct StreamReader<R: Read> {
    inner: R,
    key: DataKey,
    header_hash: Vec<u8>,
    index: u64,
    finished: bool,
}

impl<R: Read> std::fmt::Debug for StreamReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader")
            .field("chunks_read", &self.index)
            .finish_non_exhaustive()
    }
}

impl<R: Read> StreamReader<R> {
    /// Reads the header, checks the kind and unwraps the stream key.
    pub fn new(keyring: &Keyring, expected_kind: &str, mut inner: R) -> Result<Self> {
        let mut header = Vec::new();
        let magic = read_exact_vec(&mut inner, 4)?;
        if magic != STREAM_MAGIC {
            return Err(SealError::Malformed(
                "not a phigate sealed stream (bad magic)",
            ));
        }
        header.extend_from_slice(&magic);
        let version = read_exact_vec(&mut inner, 1)?[0];
        if version != STREAM_VERSION {
            return Err(SealError::UnsupportedVersion(version));
        }
        header.push(version);
        let kind = read_field8(&mut inner, &mut header)?;
        if kind != expected_kind.as_bytes() {
            return Err(SealError::Malformed("stream is of another kind"));
        }
        let stream_id = read_exact_vec(&mut inner, 16)?;
        header.extend_from_slice(&stream_id);
        let key_id = read_field8(&mut inner, &mut header)?;
        let key_id =
            String::from_utf8(key_id).map_err(|_| SealError::Malformed("key id is not UTF-8"))?;
        let version_bytes = read_exact_vec(&mut inner, 4)?;
        header.extend_from_slice(&version_bytes);
        let kek_version = u32::from_be_bytes(
            version_bytes
                .try_into()
                .map_err(|_| SealError::Malformed("version"))?,
        );
        let len_bytes = read_exact_vec(&mut inner, 2)?;
        header.extend_from_slice(&len_bytes);
        let wrapped_len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        let wrapped = read_exact_vec(&mut inner, wrapped_len)?;
        header.extend_from_slice(&wrapped);
        let ctx = ObjectContext::new(expected_kind, &stream_id);
        let key = keyring.open_stream_key(&ctx, &key_id, kek_version, &wrapped)?;
        let header_hash = digest::digest(&digest::SHA256, &header).as_ref().to_vec();
        Ok(Self {
            inner,
            key,
            header_hash,
            index: 0,
            finished: false,
        })
    }

    /// The next verified chunk of plaintext, or `None` after the final chunk.
    pub fn next_chunk(&mut self) -> Result<Option<Plaintext>> {
        if self.finished {
            return Ok(None);
        }
        let mut flag = [0u8; 1];
        match self.inner.read_exact(&mut flag) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(SealError::Truncated);
            }
            Err(e) => return Err(e.into()),
        }
        let last = match flag[0] {
            0 => false,
            1 => true,
            _ => return Err(SealError::Malformed("bad chunk flag")),
        };
        let len_bytes = read_exact_vec(&mut self.inner, 4)?;
        let len = usize::try_from(u32::from_be_bytes([
            len_bytes[0],
            len_bytes[1],
            len_bytes[2],
            len_bytes[3],
        ]))
        .map_err(|_| SealError::Malformed("chunk length"))?;
        if len > MAX_SEALED_CHUNK {
            return Err(SealError::Malformed("chunk length out of range"));
        }
        let sealed = read_exact_vec(&mut self.inner, len)?;
        let plain = self
            .key
            .decrypt(&chunk_aad(&self.header_hash, self.index, last), &sealed)?;
        self.index += 1;
        if last {
            self.finished = true;
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? != 0 {
                return Err(SealError::Malformed("data after the final chunk"));
            }
        }
        Ok(Some(plain))
    }

    /// Reads and verifies the whole stream; returns the plaintext only if all of it verified.
    pub fn read_to_end(mut self) -> Result<Plaintext> {
        let mut out = Plaintext::with_capacity(CHUNK_LEN);
        while let Some(chunk) = self.next_chunk()? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

fn push_field8(out: &mut Vec<u8>, field: &[u8]) -> Result<()> {
    let len = u8::try_from(field.len())
        .map_err(|_| SealError::Malformed("field longer than 255 bytes"))?;
    out.push(len);
    out.extend_from_slice(field);
    Ok(())
}

fn read_field8(inner: &mut impl Read, header: &mut Vec<u8>) -> Result<Vec<u8>> {
    let len = read_exact_vec(inner, 1)?[0];
    header.push(len);
    let field = read_exact_vec(inner, usize::from(len))?;
    header.extend_from_slice(&field);
    Ok(field)
}

fn read_exact_vec(inner: &mut impl Read, n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    match inner.read_exact(&mut buf) {
        Ok(()) => Ok(buf),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(SealError::Truncated),
        Err(e) => Err(e.into()),
    }
}
