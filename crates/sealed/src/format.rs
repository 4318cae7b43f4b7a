//! The sealed-object byte format, version 1 (all integers big-endian):
//!
//! ```text
//! offset      size   field
//! 0           4      magic "PGSL"
//! 4           1      format version = 0x01
//! 5           1      key id length L (1..=255)
//! 6           L      key id (UTF-8, non-secret, identifies the key ring)
//! 6+L         4      KEK version that wraps the data key
//! 10+L        2      wrapped data key length W (1..=1024)
//! 12+L        W      wrapped data key (provider format; software and PKCS#11: nonce 12 || key 32 || tag 16)
//! 12+L+W      12     payload nonce (random)
//! 24+L+W      n+16   payload ciphertext || GCM tag
//! ```
//!
//! Associated data (`field(x)` = u32 length || x):
//!
//! * data-key wrap: `"phigate/sealed/dek/v1" || field(key id) || KEK version || field(kind) || field(object id)`
//! * payload:       `"phigate/sealed/payload/v1" || 0x01 || field(key id) || field(kind) || field(object id)`
//!
//! The KEK version is bound through the wrapped data key rather than through the payload, so
//! that `rewrap` can replace the envelope (version + wrapped key) without re-encrypting payloads.
//! Moving a sealed object to another row or kind changes the object id or kind in both associated
//! data strings and fails to open; changing the version field makes the unwrap fail; swapping in
//! another object's wrapped key fails both the unwrap (different object id) and the payload tag.

use crate::error::{Result, SealError};

/// Magic bytes at the start of every sealed object.
pub const MAGIC: &[u8; 4] = b"PGSL";
/// The only format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
const MAX_WRAPPED_LEN: usize = 1024;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Appends a length-prefixed field, so that concatenated fields cannot be confused.
pub(crate) fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
}

/// What a sealed object is bound to: its kind and its id within that kind.
#[derive(Clone, Copy)]
pub struct ObjectContext<'a> {
    /// The object's kind (for example "kipu.response", "patient").
    pub kind: &'a str,
    /// The object's id within its kind (may be a keyed hash when the real id is PHI).
    pub id: &'a [u8],
}

impl std::fmt::Debug for ObjectContext<'_> {
    // The id may be derived from PHI: show only the kind.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectContext")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<'a> ObjectContext<'a> {
    /// A context for `kind` and `id`.
    pub fn new(kind: &'a str, id: &'a [u8]) -> Self {
        Self { kind, id }
    }

    pub(crate) fn wrap_aad(&self, key_id: &str, version: u32) -> Vec<u8> {
        let mut aad = b"phigate/sealed/dek/v1".to_vec();
        push_field(&mut aad, key_id.as_bytes());
        aad.extend_from_slice(&version.to_be_bytes());
        push_field(&mut aad, self.kind.as_bytes());
        push_field(&mut aad, self.id);
        aad
    }

    pub(crate) fn payload_aad(&self, key_id: &str) -> Vec<u8> {
        let mut aad = b"phigate/sealed/payload/v1".to_vec();
        aad.push(FORMAT_VERSION);
        push_field(&mut aad, key_id.as_bytes());
        push_field(&mut aad, self.kind.as_bytes());
        push_field(&mut aad, self.id);
        aad
    }
}

/// A parsed sealed object, borrowing the input.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// Key ring id.
    pub key_id: &'a str,
    /// KEK version wrapping the data key.
    pub kek_version: u32,
    /// The wrapped data key.
    pub wrapped_key: &'a [u8],
    /// `nonce || ciphertext || tag` of the payload.
    pub payload: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Parses the header of a sealed object without any key.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut rest = bytes;
        let magic = take(&mut rest, 4)?;
        if magic != MAGIC {
            return Err(SealError::Malformed("not a sealed object (bad magic)"));
        }
        let version = take(&mut rest, 1)?[0];
        if version != FORMAT_VERSION {
            return Err(SealError::UnsupportedVersion(version));
        }
        let key_id_len = usize::from(take(&mut rest, 1)?[0]);
        if key_id_len == 0 {
            return Err(SealError::Malformed("empty key id"));
        }
        let key_id = std::str::from_utf8(take(&mut rest, key_id_len)?)
            .map_err(|_| SealError::Malformed("key id is not UTF-8"))?;
        let kek_version = u32::from_be_bytes(
            take(&mut rest, 4)?
                .try_into()
                .map_err(|_| SealError::Malformed("version"))?,
        );
        let wrapped_len = usize::from(u16::from_be_bytes(
            take(&mut rest, 2)?
                .try_into()
                .map_err(|_| SealError::Malformed("length"))?,
        ));
        if wrapped_len == 0 || wrapped_len > MAX_WRAPPED_LEN {
            return Err(SealError::Malformed("wrapped key length out of range"));
        }
        let wrapped_key = take(&mut rest, wrapped_len)?;
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed("payload shorter than nonce and tag"));
        }
        Ok(Self {
            key_id,
            kek_version,
            wrapped_key,
            payload: rest,
        })
    }

    /// Serialises an envelope.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        encode(
            self.key_id,
            self.kek_version,
            self.wrapped_key,
            self.payload,
        )
    }
}

pub(crate) fn encode(
    key_id: &str,
    kek_version: u32,
    wrapped_key: &[u8],
    payload: &[u8],
) -> Result<Vec<u8>> {
    let mut out = encode_header(key_id, kek_version, wrapped_key, payload.len())?;
    out.extend_from_slice(payload);
    Ok(out)
}

/// The header up to the payload, with room reserved for `payload_len` more bytes.
pub(crate) fn encode_header(
    key_id: &str,
    kek_version: u32,
    wrapped_key: &[u8],
    payload_len: usize,
) -> Result<Vec<u8>> {
    let key_id_len = u8::try_from(key_id.len())
        .ok()
        .filter(|l| *l > 0)
        .ok_or(SealError::Malformed("key id must be 1..=255 bytes"))?;
    let wrapped_len = u16::try_from(wrapped_key.len())
        .ok()
        .filter(|l| *l > 0 && usize::from(*l) <= MAX_WRAPPED_LEN)
        .ok_or(SealError::Malformed("wrapped key length out of range"))?;
    let mut out = Vec::with_capacity(12 + key_id.len() + wrapped_key.len() + payload_len);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.push(key_id_len);
    out.extend_from_slice(key_id.as_bytes());
    out.extend_from_slice(&kek_version.to_be_bytes());
    out.extend_from_slice(&wrapped_len.to_be_bytes());
    out.extend_from_slice(wrapped_key);
    Ok(out)
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if rest.len() < n {
        return Err(SealError::Malformed("truncated header"));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}
