//! RFC 6962 / Certificate Transparency reference vectors (transparency-dev/merkle testdata and
//! the CT C++ merkle tree tests), boundary sizes, and truncated/extended proof rejection.

use audit::merkle::{
    self, CompactRange, Hash, MemoryTree, ProofError, verify_consistency, verify_inclusion,
};
use proptest::prelude::*;

fn h(hex_str: &str) -> Hash {
    hex::decode(hex_str).unwrap().try_into().unwrap()
}

fn reference_leaves() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|x| hex::decode(x).unwrap())
    .collect()
}

const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn reference_tree() -> MemoryTree {
    let mut t = MemoryTree::new();
    for leaf in reference_leaves() {
        t.push(merkle::leaf_hash(&leaf));
    }
    t
}

/// (index, size, path) from the published inclusion vectors.
fn inclusion_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (
            0,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            5,
            8,
            vec![
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            3,
            vec![h(
                "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            )],
        ),
        (
            1,
            5,
            vec![
                h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
        (0, 1, vec![]),
    ]
}

/// (old, new, proof) from the published consistency vectors.
fn consistency_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            6,
            8,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            5,
            vec![
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
    ]
}

#[test]
fn roots_match_the_rfc6962_reference_tree_for_every_size_0_to_8() {
    let tree = reference_tree();
    let mut compact = CompactRange::new();
    assert_eq!(compact.root(), h(ROOTS[0]));
    for (n, leaf) in reference_leaves().iter().enumerate() {
        compact.push(merkle::leaf_hash(leaf));
        assert_eq!(
            compact.root(),
            h(ROOTS[n + 1]),
            "compact root at size {}",
            n + 1
        );
    }
    for (size, root) in ROOTS.iter().enumerate() {
        assert_eq!(
            tree.root_at(size as u64).unwrap(),
            h(root),
            "root at size {size}"
        );
    }
    assert_eq!(merkle::empty_root(), h(ROOTS[0]));
}

#[test]
fn generated_inclusion_proofs_equal_the_published_paths_and_verify() {
    let tree = reference_tree();
    for (index, size, path) in inclusion_vectors() {
        assert_eq!(
            tree.inclusion_proof(index, size).unwrap(),
            path,
            "path {index}/{size}"
        );
        let leaf = tree.leaf(index).unwrap();
        let root = h(ROOTS[size as usize]);
        assert_eq!(verify_inclusion(&leaf, index, size, &path, &root), Ok(()));
    }
}

#[test]
fn generated_consistency_proofs_equal_the_published_proofs_and_verify() {
    let tree = reference_tree();
    for (old, new, proof) in consistency_vectors() {
        assert_eq!(
            tree.consistency_proof(old, new).unwrap(),
            proof,
            "proof {old}->{new}"
        );
        let (r1, r2) = (h(ROOTS[old as usize]), h(ROOTS[new as usize]));
        assert_eq!(verify_consistency(old, new, &r1, &r2, &proof), Ok(()));
    }
}

#[test]
fn corrupted_inclusion_proofs_are_rejected() {
    let tree = reference_tree();
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    for (index, size, path) in inclusion_vectors() {
        let leaf = tree.leaf(index).unwrap();
        let root = h(ROOTS[size as usize]);
        let bad = |i: u64, s: u64, p: &[Hash], l: &Hash, r: &Hash| {
            verify_inclusion(l, i, s, p, r).is_err()
        };
        assert!(bad(index + 1, size, &path, &leaf, &root), "index+1");
        if index > 0 {
            assert!(bad(index - 1, size, &path, &leaf, &root), "index-1");
        }
        assert!(bad(index, size * 2, &path, &leaf, &root), "size*2");
        assert!(bad(index, size / 2, &path, &leaf, &root), "size/2");
        assert!(bad(index, size, &path, &some, &root), "wrong leaf");
        assert!(bad(index, size, &path, &leaf, &some), "wrong root");
        assert!(
            bad(index, size, &path, &leaf, &merkle::empty_root()),
            "empty root"
        );
        let mut extended = path.clone();
        extended.push(root);
        assert!(bad(index, size, &extended, &leaf, &root), "extended proof");
        let mut prepended = vec![root];
        prepended.extend(path.iter().copied());
        assert!(
            bad(index, size, &prepended, &leaf, &root),
            "prepended proof"
        );
        if !path.is_empty() {
            assert!(
                bad(index, size, &path[..path.len() - 1], &leaf, &root),
                "truncated proof"
            );
            for i in 0..path.len() {
                let mut flipped = path.clone();
                flipped[i][0] ^= 8;
                assert!(bad(index, size, &flipped, &leaf, &root), "bit flip {i}");
            }
        }
    }
    // Impossible parameters.
    assert_eq!(
        verify_inclusion(&some, 0, 0, &[], &merkle::empty_root()),
        Err(ProofError::OutOfRange)
    );
    assert_eq!(
        verify_inclusion(&some, 2, 1, &[], &some),
        Err(ProofError::OutOfRange)
    );
}

#[test]
fn corrupted_consistency_proofs_are_rejected() {
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    for (old, new, proof) in consistency_vectors() {
        if proof.is_empty() {
            continue;
        }
        let (r1, r2) = (h(ROOTS[old as usize]), h(ROOTS[new as usize]));
        let bad = |o: u64, n: u64, a: &Hash, b: &Hash, p: &[Hash]| {
            verify_consistency(o, n, a, b, p).is_err()
        };
        assert!(bad(old - 1, new, &r1, &r2, &proof), "old-1");
        assert!(bad(old + 1, new, &r1, &r2, &proof), "old+1");
        assert!(bad(old ^ 2, new, &r1, &r2, &proof), "old^2");
        assert!(bad(old, new * 2, &r1, &r2, &proof), "new*2");
        assert!(bad(old, new / 2, &r1, &r2, &proof), "new/2");
        assert!(bad(old, new, &some, &r2, &proof), "wrong old root");
        assert!(bad(old, new, &r1, &some, &proof), "wrong new root");
        assert!(bad(old, new, &r2, &r1, &proof), "swapped roots");
        assert!(bad(old, new, &r1, &r2, &[]), "empty proof");
        for extra in [r1, r2, some] {
            let mut extended = proof.clone();
            extended.push(extra);
            assert!(bad(old, new, &r1, &r2, &extended), "extended proof");
            let mut prepended = vec![extra];
            prepended.extend(proof.iter().copied());
            assert!(bad(old, new, &r1, &r2, &prepended), "prepended proof");
        }
        assert!(
            bad(old, new, &r1, &r2, &proof[..proof.len() - 1]),
            "truncated proof"
        );
        for i in 0..proof.len() {
            let mut flipped = proof.clone();
            flipped[i][0] ^= 16;
            assert!(bad(old, new, &r1, &r2, &flipped), "bit flip {i}");
        }
    }
}

#[test]
fn trivial_consistency_cases_follow_rfc9162() {
    let a = h(ROOTS[1]);
    let b = h(ROOTS[2]);
    let e = merkle::empty_root();
    assert!(verify_consistency(0, 0, &a, &a, &[]).is_ok());
    assert!(verify_consistency(0, 1, &a, &b, &[]).is_ok());
    assert!(verify_consistency(1, 1, &b, &b, &[]).is_ok());
    assert!(verify_consistency(1, 1, &a, &b, &[]).is_err());
    assert!(verify_consistency(1, 0, &a, &b, &[]).is_err());
    assert!(verify_consistency(2, 1, &a, &b, &[]).is_err());
    assert!(verify_consistency(1, 2, &a, &b, &[]).is_err());
    assert!(verify_consistency(0, 0, &e, &e, &[e]).is_err());
    assert!(verify_consistency(0, 1, &e, &e, &[e]).is_err());
    assert!(verify_consistency(1, 1, &e, &e, &[e]).is_err());
}

fn synthetic_tree(n: u64) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..n {
        t.push(merkle::leaf_hash(&i.to_be_bytes()));
    }
    t
}

#[test]
fn every_proof_of_every_tree_up_to_70_leaves_and_power_of_two_boundaries_verifies() {
    let tree = synthetic_tree(130);
    let mut compact = CompactRange::new();
    for size in 0..=130u64 {
        assert_eq!(
            compact.root(),
            tree.root_at(size).unwrap(),
            "compact vs tree at {size}"
        );
        assert_eq!(
            CompactRange::from_bytes(&compact.to_bytes()).unwrap(),
            compact
        );
        if size < 130 {
            compact.push(tree.leaf(size).unwrap());
        }
    }
    for size in (1..=70u64).chain([127, 128, 129, 130]) {
        let root = tree.root_at(size).unwrap();
        for i in 0..size {
            let path = tree.inclusion_proof(i, size).unwrap();
            assert_eq!(
                verify_inclusion(&tree.leaf(i).unwrap(), i, size, &path, &root),
                Ok(())
            );
        }
        for old in 0..=size {
            let proof = tree.consistency_proof(old, size).unwrap();
            let old_root = tree.root_at(old).unwrap();
            assert_eq!(
                verify_consistency(old, size, &old_root, &root, &proof),
                Ok(()),
                "{old}->{size}"
            );
        }
    }
    assert!(tree.inclusion_proof(130, 130).is_none());
    assert!(tree.inclusion_proof(0, 131).is_none());
    assert!(tree.consistency_proof(5, 4).is_none());
}

proptest! {
    #[test]
    fn compact_range_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = CompactRange::from_bytes(&bytes);
    }

    #[test]
    fn random_proofs_never_verify_and_never_panic(
        index in 0u64..64, size in 0u64..64, len in 0usize..10, seed in any::<u8>()
    ) {
        let proof: Vec<Hash> = (0..len).map(|i| [seed.wrapping_add(i as u8); 32]).collect();
        let tree = synthetic_tree(64);
        let root = tree.root_at(size).unwrap();
        let leaf = tree.leaf(index).unwrap();
        let honest = tree.inclusion_proof(index, size);
        if honest.as_deref() != Some(&proof[..]) {
            prop_assert!(verify_inclusion(&leaf, index, size, &proof, &root).is_err());
        }
        let _ = verify_consistency(index, size, &leaf, &root, &proof);
    }
}
