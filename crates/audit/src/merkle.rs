//! RFC 6962 / RFC 9162 Merkle tree hashing, proofs and proof verification.
//!
//! Hashes: leaf `SHA-256(0x00 || entry)`, interior node `SHA-256(0x01 || left || right)`, the
//! empty tree `SHA-256("")`. The split point of `n > 1` leaves is the largest power of two
//! strictly below `n`. Proof generation follows RFC 6962 §2.1.1/§2.1.2 (`PATH`, `PROOF`);
//! verification follows RFC 9162 §2.1.3.2/§2.1.4.2, including the checks that a proof is
//! consumed exactly (a truncated or extended proof is rejected).

use aws_lc_rs::digest;

/// A SHA-256 hash of a leaf, node or tree.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    sha256(&[&[]])
}

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    sha256(&[&[0x00], entry])
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

/// Largest power of two strictly smaller than `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The right edge of a tree under construction ("compact range"): the roots of the perfect
/// subtrees that make up the first `size` leaves, largest first. It is all a writer needs to
/// extend the tree and compute the new root without reading old leaves, and it is what
/// verification streams through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// `(height, hash)` of each perfect subtree, left to right; heights strictly decrease.
    peaks: Vec<(u32, Hash)>,
}

impl CompactRange {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut height = 0u32;
        let mut hash = leaf;
        while let Some(&(top_height, top_hash)) = self.peaks.last() {
            if top_height != height {
                break;
            }
            self.peaks.pop();
            hash = node_hash(&top_hash, &hash);
            height += 1;
        }
        self.peaks.push((height, hash));
        self.size += 1;
    }

    /// The RFC 6962 root hash of the leaves appended so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.peaks.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(&(_, last)) => iter.fold(last, |acc, (_, left)| node_hash(left, &acc)),
        }
    }

    /// Serializes as `8-byte big-endian size || peak hashes`; heights follow from the size.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.peaks.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        for (_, hash) in &self.peaks {
            out.extend_from_slice(hash);
        }
        out
    }

    /// Parses [`CompactRange::to_bytes`]; `None` if the length does not match the size.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let size = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let hashes = &bytes[8..];
        if hashes.len() != 32 * size.count_ones() as usize {
            return None;
        }
        let mut peaks = Vec::with_capacity(size.count_ones() as usize);
        let mut chunks = hashes.chunks_exact(32);
        for height in (0..64u32).rev() {
            if size & (1u64 << height) != 0 {
                let mut hash = [0u8; 32];
                hash.copy_from_slice(chunks.next()?);
                peaks.push((height, hash));
            }
        }
        Some(Self { size, peaks })
    }
}

/// An in-memory tree over leaf hashes that keeps every perfect, aligned subtree hash, so that
/// proofs and historical roots cost `O(log² n)` hashes instead of `O(n)`.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    /// `levels[h][j]` is the hash of leaves `[j·2^h, (j+1)·2^h)`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self {
            levels: vec![Vec::new()],
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// The leaf hash at `index`, if present.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels[0].get(usize::try_from(index).ok()?).copied()
    }

    /// Appends a leaf hash, completing every perfect subtree that ends with it.
    pub fn push(&mut self, leaf: Hash) {
        self.levels[0].push(leaf);
        let mut height = 0;
        while self.levels[height].len().is_multiple_of(2) {
            let len = self.levels[height].len();
            let parent = node_hash(&self.levels[height][len - 2], &self.levels[height][len - 1]);
            if self.levels.len() == height + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[height + 1].push(parent);
            height += 1;
        }
    }

    /// `MTH(D[start:end])`; the caller guarantees `start < end <= size`.
    fn range_hash(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let height = n.trailing_zeros() as usize;
            return self.levels[height][(start / n) as usize];
        }
        let k = split_point(n);
        node_hash(
            &self.range_hash(start, start + k),
            &self.range_hash(start + k, end),
        )
    }

    /// The root of the first `size` leaves, or `None` if the tree is smaller.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        match size {
            0 => Some(empty_root()),
            s if s <= self.size() => Some(self.range_hash(0, s)),
            _ => None,
        }
    }

    /// The inclusion proof (RFC 6962 `PATH`) of leaf `index` in the tree of the first `size`
    /// leaves; `None` if `index >= size` or `size` exceeds the tree.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        if index >= size || size > self.size() {
            return None;
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof);
        Some(proof)
    }

    fn path(&self, index: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split_point(n);
        if index < k {
            self.path(index, start, start + k, out);
            out.push(self.range_hash(start + k, end));
        } else {
            self.path(index - k, start + k, end, out);
            out.push(self.range_hash(start, start + k));
        }
    }

    /// The consistency proof (RFC 6962 `PROOF`) between the trees of sizes `old` and `new`;
    /// `None` unless `old <= new <= size`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Option<Vec<Hash>> {
        if old > new || new > self.size() {
            return None;
        }
        let mut proof = Vec::new();
        if old > 0 && old < new {
            self.subproof(old, 0, new, true, &mut proof);
        }
        Some(proof)
    }

    fn subproof(&self, m: u64, start: u64, end: u64, complete: bool, out: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !complete {
                out.push(self.range_hash(start, end));
            }
            return;
        }
        let k = split_point(n);
        if m <= k {
            self.subproof(m, start, start + k, complete, out);
            out.push(self.range_hash(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, out);
            out.push(self.range_hash(start, start + k));
        }
    }
}

/// Why a proof did not verify. Deliberately coarse: a verifier only needs to know it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The index or sizes are impossible (index beyond the tree, old size above new size...).
    #[error("proof parameters are out of range")]
    OutOfRange,
    /// The proof has too few or too many hashes for these sizes.
    #[error("proof has the wrong number of hashes")]
    WrongLength,
    /// The recomputed root does not match the expected root.
    #[error("proof does not lead to the expected root hash")]
    RootMismatch,
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange);
    }
    let mut fn_ = index;
    let mut sn = size - 1;
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2) between `old_size` with `old_root` and
/// `new_size` with `new_root`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OutOfRange);
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old_size == 0 {
        // Every tree extends the empty tree; a non-empty proof is malformed.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(old_root);
    }
    path.extend(proof.iter());
    let mut fn_ = old_size - 1;
    let mut sn = new_size - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut fr = *path[0];
    let mut sr = *path[0];
    for c in &path[1..] {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}
