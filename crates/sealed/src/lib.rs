//! Encryption at rest for phigate: envelope encryption with AES-256-GCM, key-encryption keys
//! (KEKs) from the environment, a key file or a PKCS#11 token, KEK versions and rotation.
//!
//! One job: turn a plaintext plus the identity of the record it belongs to into a sealed,
//! self-describing byte string, and back, with keys that can be rotated and destroyed.
//!
//! # How it works
//!
//! Every object gets a fresh 256-bit data key (DEK). The payload is encrypted with the DEK
//! (AES-256-GCM, random 96-bit nonce); the DEK is wrapped by the active KEK version of a
//! [`Keyring`]. The byte format is documented in [`format`]; sealed streams (backups) in
//! [`stream`]. KEKs come from a [`KeyProvider`]: [`SoftwareKeyProvider`] (root key from
//! `PHIGATE_KEK` or a key file, passed in by the binary) or [`Pkcs11KeyProvider`] (KEKs generated
//! on the token, non-extractable; wrapping happens inside the token).
//!
//! # Security invariants
//!
//! * Associated data binds each ciphertext to its key id, KEK version, object kind and object id:
//!   a ciphertext copied to another row or kind does not open (see [`format`] for why the version
//!   is bound through the wrapped DEK).
//! * Nonces are 96-bit random values from aws-lc's DRBG, fetched in per-thread batches that are
//!   never shared, never rewound and discarded after a fork (the `nonce` module argues why this
//!   is as safe as one DRBG call per nonce); each DEK encrypts one payload (or one stream's
//!   chunks), far below the 2^32 random-nonce limit per key.
//! * Key bytes live in [`DataKey`] (zeroized on drop, redacted Debug) or inside the token.
//!   Decrypted bytes come back as [`Plaintext`], which wipes its whole allocation when dropped
//!   (bulk `fill(0)` plus zeroize's optimization barrier; see [`Plaintext`] for the guarantee).
//!   No error message, Debug output or log line carries key bytes, plaintext or object ids.
//! * A retired KEK version is destroyed (its sealed material deleted, or its token object
//!   destroyed). Retiring the active version, or one that still wraps data keys, is refused.
//! * Failures never panic; every authentication failure is the same opaque error so that it
//!   gives an attacker no oracle beyond "did not open".
//! * A key file is refused when group or others can access it.
//!
//! Decision: the spec suggests CKM_AES_KEY_WRAP_PAD for PKCS#11; we use CKM_AES_GCM inside the
//! token instead, because it authenticates associated data and so keeps the wrapped DEK bound
//! to its record exactly as in the software provider.

#![forbid(unsafe_code)]

mod error;
pub mod format;
mod keyring;
mod keys;
mod nonce;
mod pkcs11;
mod plaintext;
mod provider;
pub mod signing;
mod software;
pub mod stream;

pub use error::{Result, SealError};
pub use format::{Envelope, ObjectContext};
pub use keyring::{KeyState, KeyVersionRecord, Keyring};
pub use keys::{DataKey, KEY_LEN, TAG_LEN};
pub use pkcs11::{Pkcs11Config, Pkcs11KeyProvider};
pub use plaintext::Plaintext;
pub use provider::KeyProvider;
pub use signing::SealedSigningKey;
pub use software::SoftwareKeyProvider;
pub use stream::{StreamReader, StreamWriter};
