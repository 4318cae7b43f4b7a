//! Ed25519 signing keys whose private half is kept sealed under a [`Keyring`].
//!
//! The private key exists in clear only inside this process, in an aws-lc-rs key pair; what is
//! persisted is its PKCS#8 document sealed with [`Keyring::seal`] (a fresh data key wrapped
//! under the key ring's active KEK, which comes from the environment, a key file or a PKCS#11
//! token), bound to the object kind [`SIGNING_KEY_KIND`] and the key's name. A sealed key copied
//! under another name, or opened with another KEK, does not open. The public half is plain and
//! may be published.
//!
//! Users: the audit log's checkpoint signer (C2SP signed notes). Nothing here prints or returns
//! private key bytes; Debug shows only the public key.

use std::fmt;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};

use crate::error::{Result, SealError};
use crate::format::ObjectContext;
use crate::keyring::Keyring;

/// The object kind sealed Ed25519 private keys are bound to.
pub const SIGNING_KEY_KIND: &str = "signing-key.ed25519";

/// An Ed25519 signing key opened from (or generated into) its sealed form.
pub struct SealedSigningKey {
    pair: Ed25519KeyPair,
    public: [u8; 32],
}

impl fmt::Debug for SealedSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSigningKey")
            .field("public", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

impl SealedSigningKey {
    /// Generates a new key named `name`; returns it with its sealed PKCS#8 document, which the
    /// caller persists.
    pub fn generate(keyring: &Keyring, name: &str) -> Result<(Self, Vec<u8>)> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| SealError::Crypto("Ed25519 key generation"))?;
        Self::seal_pkcs8(keyring, name, pkcs8.as_ref())
    }

    /// Seals an existing PKCS#8 Ed25519 key (for example one an older version kept in clear)
    /// and returns it with its sealed form.
    pub fn seal_pkcs8(keyring: &Keyring, name: &str, pkcs8: &[u8]) -> Result<(Self, Vec<u8>)> {
        let key = Self::from_pkcs8(pkcs8)?;
        let sealed = keyring.seal(
            &ObjectContext::new(SIGNING_KEY_KIND, name.as_bytes()),
            pkcs8,
        )?;
        Ok((key, sealed))
    }

    /// Opens a key sealed by [`SealedSigningKey::generate`] or [`SealedSigningKey::seal_pkcs8`]
    /// under the same `name`.
    pub fn open(keyring: &Keyring, name: &str, sealed: &[u8]) -> Result<Self> {
        let pkcs8 = keyring.open(
            &ObjectContext::new(SIGNING_KEY_KIND, name.as_bytes()),
            sealed,
        )?;
        Self::from_pkcs8(&pkcs8)
    }

    fn from_pkcs8(pkcs8: &[u8]) -> Result<Self> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|_| SealError::InvalidKey("not an Ed25519 PKCS#8 key".into()))?;
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        Ok(Self { pair, public })
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};

    use super::*;
    use crate::{DataKey, SoftwareKeyProvider};

    fn keyring(root: u8) -> Keyring {
        let provider =
            SoftwareKeyProvider::from_root(DataKey::from_slice(&[root; 32]).unwrap(), "test")
                .unwrap();
        let ring = Keyring::new(Arc::new(provider), Vec::new()).unwrap();
        ring.initialize().unwrap();
        ring
    }

    #[test]
    fn sealed_key_reopens_and_signs_verifiably() {
        let ring = keyring(1);
        let (key, sealed) = SealedSigningKey::generate(&ring, "audit").unwrap();
        let reopened = SealedSigningKey::open(&ring, "audit", &sealed).unwrap();
        assert_eq!(reopened.public_key(), key.public_key());
        let sig = reopened.sign(b"checkpoint");
        UnparsedPublicKey::new(&ED25519, key.public_key())
            .verify(b"checkpoint", &sig)
            .unwrap();
    }

    #[test]
    fn sealed_key_does_not_open_under_another_name_or_kek() {
        let ring = keyring(1);
        let (_, sealed) = SealedSigningKey::generate(&ring, "audit").unwrap();
        assert!(matches!(
            SealedSigningKey::open(&ring, "other", &sealed),
            Err(SealError::AuthenticationFailed)
        ));
        let other = keyring(2);
        assert!(SealedSigningKey::open(&other, "audit", &sealed).is_err());
    }

    #[test]
    fn sealed_form_does_not_contain_the_private_key() {
        let ring = keyring(1);
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let (key, sealed) = SealedSigningKey::seal_pkcs8(&ring, "audit", pkcs8.as_ref()).unwrap();
        let debug = format!("{key:?}");
        for window in pkcs8.as_ref().windows(32) {
            assert!(!sealed.windows(32).any(|w| w == window));
            if window != key.public_key() {
                assert!(!debug.contains(&hex::encode(window)));
            }
        }
    }
}
