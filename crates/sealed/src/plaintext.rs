//! Decrypted bytes that are wiped when dropped (see [`Plaintext`]).

use std::fmt;
use std::ops::Deref;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Decrypted bytes, wiped (initialised part and spare capacity) when dropped, with a bulk wipe
/// instead of byte-by-byte volatile writes.
///
/// # The wipe and the guarantee it relies on
///
/// `zeroize::Zeroizing<Vec<u8>>` wipes through `Vec::zeroize`, which (zeroize 1.9) writes every
/// initialised element with its own volatile store: one store per byte, about a third of the
/// cost of opening a 1 MiB object. `Plaintext` wipes its whole allocation (initialised bytes
/// and spare capacity) through zeroize's slice implementations instead:
///
/// * `<[u8] as Zeroize>::zeroize` — on x86, x86-64, AArch64, ARM, RISC-V, LoongArch and s390x:
///   `slice.fill(0)` (compiled to a bulk memset) followed by `zeroize::optimization_barrier`, an
///   `asm!` block that receives the slice's address and is declared as possibly reading that
///   memory. The compiler must treat the block as an observer of the zero bytes, so it cannot
///   drop the stores as dead even though the allocation is freed right after; this is the same
///   mechanism zeroize uses for all its types on those targets. On other targets zeroize falls
///   back to volatile writes.
/// * `<[MaybeUninit<u8>] as Zeroize>::zeroize` for the spare capacity: the same write-then-
///   barrier backend (`zeroize_byte_ptr`).
///
/// The crate needs zeroize >= 1.9 for this (the workspace pins it). No `unsafe` is used here.
///
/// A `Plaintext` never reallocates behind the caller's back: it hands out slices only, and the
/// crate-internal growth path copies into a larger buffer and wipes the old one, so no stale
/// copy of the plaintext is left on the heap (`Zeroizing<Vec<u8>>` cannot promise that once a
/// caller pushes to the vector).
///
/// Derefs to `[u8]`; Debug prints nothing of the content.
pub struct Plaintext(Vec<u8>);

impl Plaintext {
    /// An empty plaintext buffer with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    /// Takes ownership of decrypted bytes that some other API returned as a plain vector.
    pub(crate) fn from_vec(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// Appends `data`. When the buffer must grow, the bytes move to a new allocation and the
    /// old one is wiped before it is freed.
    pub(crate) fn extend_from_slice(&mut self, data: &[u8]) {
        let needed = self.0.len().saturating_add(data.len());
        if needed > self.0.capacity() {
            let capacity = needed.max(self.0.capacity().saturating_mul(2));
            let mut grown = Vec::with_capacity(capacity);
            grown.extend_from_slice(&self.0);
            // The old buffer is wiped by Plaintext's Drop.
            drop(std::mem::replace(&mut self.0, grown));
        }
        self.0.extend_from_slice(data);
    }

    /// The bytes for decryption in place (crate-internal: the length never changes through it).
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// Keeps the first `len` bytes and wipes the rest.
    pub(crate) fn truncate(&mut self, len: usize) {
        if len < self.0.len() {
            self.0[len..].zeroize();
            self.0.truncate(len);
        }
    }

    /// Wipes the content and empties the buffer, keeping its allocation.
    pub(crate) fn clear(&mut self) {
        self.0.as_mut_slice().zeroize();
        self.0.clear();
    }

    /// Wipes the whole allocation: content and spare capacity.
    fn wipe(&mut self) {
        self.0.as_mut_slice().zeroize();
        self.0.spare_capacity_mut().zeroize();
        self.0.clear();
    }
}

impl Deref for Plaintext {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Plaintext {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl ZeroizeOnDrop for Plaintext {}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Plaintext([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_keeps_the_bytes_in_order() {
        let mut p = Plaintext::with_capacity(2);
        p.extend_from_slice(b"ab");
        p.extend_from_slice(b"cdefgh");
        p.extend_from_slice(b"");
        p.extend_from_slice(b"i");
        assert_eq!(p.as_slice(), b"abcdefghi");
    }

    #[test]
    fn truncate_keeps_the_prefix_and_clear_empties() {
        let mut p = Plaintext::with_capacity(8);
        p.extend_from_slice(b"secret!!");
        p.truncate(3);
        assert_eq!(p.as_slice(), b"sec");
        p.truncate(10);
        assert_eq!(p.as_slice(), b"sec");
        p.clear();
        assert!(p.is_empty());
        p.extend_from_slice(b"again");
        assert_eq!(p.as_slice(), b"again");
    }

    #[test]
    fn wipe_leaves_an_empty_buffer_with_its_allocation() {
        let mut p = Plaintext::with_capacity(64);
        p.extend_from_slice(&[0xA5; 40]);
        p.wipe();
        assert!(p.is_empty());
        assert!(p.0.capacity() >= 64);
    }

    #[test]
    fn debug_shows_no_content() {
        let mut p = Plaintext::with_capacity(4);
        p.extend_from_slice(b"CANARY-PHI");
        assert_eq!(format!("{p:?}"), "Plaintext([REDACTED])");
    }
}
