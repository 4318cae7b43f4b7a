use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Result, SealError};

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
    pub fn encrypt(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        self.encrypt_append(aad, plaintext, &mut out)?;
        Ok(out)
    }

    /// Like [`DataKey::encrypt`], appending `nonce || ciphertext || tag` to `out` so a caller
    /// building a larger frame encrypts in place without another copy of the payload.
    pub fn encrypt_append(&self, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SealError::Crypto("random generator"))?;
        out.reserve(NONCE_LEN + plaintext.len() + TAG_LEN);
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

    /// Opens `nonce || ciphertext || tag` produced by [`DataKey::encrypt`].
    pub fn decrypt(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed(
                "ciphertext shorter than nonce and tag",
            ));
        }
        let key = &self.aead;
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Malformed("nonce"))?;
        let mut buf = Zeroizing::new(body.to_vec());
        let len = key
            .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())
            .map_err(|_| SealError::AuthenticationFailed)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    /// Consumes the key, turning decrypted key bytes into a key and wiping the buffer.
    pub(crate) fn from_plaintext(mut bytes: Zeroizing<Vec<u8>>) -> Result<Self> {
        let key = Self::from_slice(&bytes);
        bytes.zeroize();
        key.map_err(|_| SealError::AuthenticationFailed)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}
