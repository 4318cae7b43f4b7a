use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::error::{Result, SealError};
use crate::nonce::random_nonce;
use crate::plaintext::Plaintext;

/// Length of every symmetric key in this crate (AES-256).
pub const KEY_LEN: usize = 32;
/// Length of an AES-GCM tag.
pub const TAG_LEN: usize = 16;

/// A 256-bit symmetric key (a data key or a software KEK). Zeroized on drop; Debug prints nothing
/// of the key.
///
/// The AES-GCM key schedule is expanded once when the key is made, not per message: at 1 KiB
/// the expansion costs as much as the encryption itself. aws-lc clears the expanded state when
/// the key is dropped.
pub struct DataKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    aead: LessSafeKey,
}

impl Clone for DataKey {
    fn clone(&self) -> Self {
        Self::from_bytes(self.bytes.clone())
            .unwrap_or_else(|_| unreachable!("a valid key stays valid"))
    }
}

impl DataKey {
    /// A fresh key from the operating system's CSPRNG (through aws-lc-rs).
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| SealError::Crypto("random generator"))?;
        Self::from_bytes(bytes)
    }

    fn from_bytes(bytes: Zeroizing<[u8; KEY_LEN]>) -> Result<Self> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes.as_ref())
            .map_err(|_| SealError::Crypto("AES-256-GCM key"))?;
        Ok(Self {
            bytes,
            aead: LessSafeKey::new(unbound),
        })
    }

    /// Takes key bytes; the slice is copied, the caller zeroizes its own copy.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != KEY_LEN {
            return Err(SealError::InvalidKey(format!(
                "expected {KEY_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(bytes);
        Self::from_bytes(key)
    }

    /// The key bytes, for handing to a primitive. Never log or persist them unwrapped.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// AES-256-GCM with a fresh random 96-bit nonce; returns `nonce || ciphertext || tag`.
    ///
    /// One allocation, sized once; the payload is copied into it and encrypted in place. The
    /// nonce comes from a per-thread batch of DRBG output (see the `nonce` module for why that
    /// is as safe as one DRBG call per nonce).
    pub fn encrypt(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(sealed_len(plaintext.len()));
        self.encrypt_append(aad, plaintext, &mut out)?;
        Ok(out)
    }

    /// Like [`DataKey::encrypt`], appending `nonce || ciphertext || tag` to `out` so a caller
    /// building a larger frame (the envelope header) encrypts in place without another copy.
    pub fn encrypt_append(&self, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let nonce = random_nonce()?;
        out.reserve(sealed_len(plaintext.len()));
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[start..],
            )
            .map_err(|_| SealError::Crypto("AES-256-GCM seal"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens `nonce || ciphertext || tag` produced by [`DataKey::encrypt`]. The plaintext is
    /// wiped when the returned [`Plaintext`] is dropped (and on failure, before returning).
    pub fn decrypt(&self, aad: &[u8], sealed: &[u8]) -> Result<Plaintext> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed(
                "ciphertext shorter than nonce and tag",
            ));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Malformed("nonce"))?;
        let mut buf = Plaintext::with_capacity(body.len());
        buf.extend_from_slice(body);
        let len = self
            .aead
            .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())
            .map_err(|_| SealError::AuthenticationFailed)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    /// Turns decrypted key bytes into a key; the bytes are wiped when `bytes` is dropped.
    pub(crate) fn from_plaintext(bytes: Plaintext) -> Result<Self> {
        Self::from_slice(&bytes).map_err(|_| SealError::AuthenticationFailed)
    }
}

/// Length of `nonce || ciphertext || tag` for a plaintext of `len` bytes.
pub(crate) fn sealed_len(len: usize) -> usize {
    NONCE_LEN.saturating_add(len).saturating_add(TAG_LEN)
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}
