//! Random 96-bit AES-GCM nonces, drawn from aws-lc's DRBG in batches.
//!
//! Every nonce is still 96 uniformly random bits from the same CSPRNG (aws-lc's CTR-DRBG, seeded
//! from the operating system); what changes is how often we call it. A `RAND_bytes` call has a
//! fixed cost (thread-local DRBG lookup, fork and reseed checks, additional input) that is
//! larger than encrypting a 1 KiB message, so each thread asks for [`BATCH_NONCES`] nonces at
//! once and hands them out one by one.
//!
//! Why this is as safe as one DRBG call per nonce:
//!
//! * The nonce distribution is unchanged. CTR-DRBG output is indistinguishable from uniform
//!   whether it is requested 12 bytes or 3 KiB at a time (a single request stays far below
//!   SP 800-90A's 64 KiB limit), so the collision probability of random nonces under one key is
//!   exactly what it was: it depends only on how many nonces the key uses.
//! * No nonce is handed out twice. The batch is thread-local (never shared between threads) and
//!   the read position moves past a nonce before it is returned; a batch is never rewound.
//! * Nonces are not secret (each is stored in clear next to its ciphertext), so holding future
//!   nonces in memory discloses nothing an attacker would not see later anyway. GCM needs them
//!   unique, not unpredictable.
//! * Fork: a child process made by `fork()` without `exec` would inherit a copy of the batch
//!   and could repeat the parent's next nonces under a key they share (aws-lc's own DRBG
//!   detects forks for the same reason). The batch records the process id it was drawn in and
//!   is discarded when the id differs, so a forked child always draws fresh bytes.
//! * If the thread-local batch is unavailable (a thread that is being torn down), the nonce
//!   comes from the DRBG directly.

use std::cell::RefCell;

use crate::error::{Result, SealError};

/// Length of an AES-GCM nonce.
pub(crate) const NONCE_LEN: usize = 12;
/// Nonces fetched per DRBG request.
pub(crate) const BATCH_NONCES: usize = 256;
const BATCH_BYTES: usize = NONCE_LEN * BATCH_NONCES;

struct Batch {
    bytes: Box<[u8; BATCH_BYTES]>,
    next: usize,
    pid: u32,
}

impl Batch {
    fn draw(pid: u32) -> Result<Self> {
        let mut bytes = Box::new([0u8; BATCH_BYTES]);
        aws_lc_rs::rand::fill(bytes.as_mut_slice())
            .map_err(|_| SealError::Crypto("random generator"))?;
        Ok(Self {
            bytes,
            next: 0,
            pid,
        })
    }
}

thread_local! {
    static BATCH: RefCell<Option<Batch>> = const { RefCell::new(None) };
}

/// A fresh random 96-bit nonce.
pub(crate) fn random_nonce() -> Result<[u8; NONCE_LEN]> {
    BATCH
        .try_with(|cell| {
            let mut slot = cell.try_borrow_mut().ok()?;
            Some(next_from(&mut slot))
        })
        .ok()
        .flatten()
        .unwrap_or_else(direct_nonce)
}

fn next_from(slot: &mut Option<Batch>) -> Result<[u8; NONCE_LEN]> {
    let pid = std::process::id();
    let usable = slot
        .as_ref()
        .is_some_and(|b| b.pid == pid && b.next + NONCE_LEN <= BATCH_BYTES);
    if !usable {
        *slot = Some(Batch::draw(pid)?);
    }
    let batch = slot.as_mut().ok_or(SealError::Crypto("random generator"))?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&batch.bytes[batch.next..batch.next + NONCE_LEN]);
    batch.next += NONCE_LEN;
    Ok(nonce)
}

fn direct_nonce() -> Result<[u8; NONCE_LEN]> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SealError::Crypto("random generator"))?;
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn nonces_do_not_repeat_across_many_batches() {
        let mut seen = HashSet::new();
        for _ in 0..(BATCH_NONCES * 8 + 7) {
            assert!(seen.insert(random_nonce().unwrap()), "a nonce repeated");
        }
    }

    #[test]
    fn threads_get_different_nonces() {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..BATCH_NONCES * 2)
                        .map(|_| random_nonce().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for h in handles {
            for n in h.join().unwrap() {
                assert!(seen.insert(n), "two threads handed out the same nonce");
            }
        }
    }

    #[test]
    fn a_batch_from_another_process_id_is_discarded() {
        // What a forked child sees: a batch drawn under its parent's process id.
        let parent = Batch::draw(std::process::id().wrapping_add(1)).unwrap();
        let parent_next: [u8; NONCE_LEN] = parent.bytes[..NONCE_LEN].try_into().unwrap();
        let mut slot = Some(parent);
        let child_nonce = next_from(&mut slot).unwrap();
        assert_ne!(child_nonce, parent_next, "the inherited batch was reused");
        assert_eq!(slot.as_ref().unwrap().pid, std::process::id());
        assert_eq!(slot.as_ref().unwrap().next, NONCE_LEN);
    }

    #[test]
    fn an_exhausted_batch_is_refilled() {
        let mut slot = Some(Batch::draw(std::process::id()).unwrap());
        let mut seen = HashSet::new();
        for _ in 0..BATCH_NONCES {
            assert!(seen.insert(next_from(&mut slot).unwrap()));
        }
        assert_eq!(slot.as_ref().unwrap().next, BATCH_BYTES);
        assert!(seen.insert(next_from(&mut slot).unwrap()));
        assert_eq!(slot.as_ref().unwrap().next, NONCE_LEN);
    }
}
