//! Every decoder returns an error, never panics, on random, truncated or
//! bit-flipped input; valid values round-trip.

use cairn::crypto::{KdfParams, SealKey, Secret32};
use cairn::format::config::{ChunkerParams, Config};
use cairn::format::index::{IndexBlob, IndexFile, IndexPack};
use cairn::format::keyfile::{KeyFile, KeyInfo, KeyMeta};
use cairn::format::lock::Lock;
use cairn::format::pack::{
    PackEntry, entry_offsets, header_from_bytes, header_to_bytes, split_pack,
};
use cairn::format::snapshot::{Snapshot, Summary};
use cairn::format::tree::{FileContent, Node, NodeKind, Timestamp, Tree, Xattr};
use cairn::format::{BlobType, Compression};
use cairn::id::{BlobId, IndexId, PackId};
use proptest::prelude::*;

/// Run every decoder on `b`; they may fail but must not panic.
fn decode_all(b: &[u8]) {
    let _ = header_from_bytes(b);
    if let Ok((region, _)) = split_pack(b) {
        let _ = entry_offsets(&[], region.len() as u64);
    }
    let _ = IndexFile::from_bytes(b);
    let _ = Tree::from_bytes(b);
    let _ = cairn::format::chunklist::IdList::from_bytes(b);
    let _ = Snapshot::from_bytes(b);
    let _ = KeyFile::from_bytes(b);
    let _ = KeyInfo::from_bytes(b);
    let _ = Config::from_bytes(b);
    let _ = Config::split_header(b);
    let _ = Lock::from_bytes(b);
    let key = SealKey::new(&Secret32::from_bytes([3; 32]));
    let _ = key.open(b"aad", b, "fuzz");
    let _ = cairn::repo::decompress(b, 1 << 16);
}

fn id() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(1u8..=255, 1..40).prop_filter("valid name", |n| {
        !n.contains(&b'/') && n != b"." && n != b".."
    })
}

fn node() -> impl Strategy<Value = Node> {
    let kind = prop_oneof![
        proptest::collection::vec(id(), 0..4).prop_map(|v| NodeKind::File {
            content: FileContent::Inline(v.into_iter().map(BlobId).collect())
        }),
        (1u8..=10, proptest::collection::vec(id(), 1..4)).prop_map(|(height, v)| NodeKind::File {
            content: FileContent::Tree {
                height,
                top: v.into_iter().map(BlobId).collect()
            }
        }),
        id().prop_map(|i| NodeKind::Dir { subtree: BlobId(i) }),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|t| NodeKind::Symlink { target: t }),
        Just(NodeKind::Fifo),
        any::<u64>().prop_map(|rdev| NodeKind::CharDevice { rdev }),
        any::<u64>().prop_map(|rdev| NodeKind::BlockDevice { rdev }),
        Just(NodeKind::Socket),
    ];
    (
        name(),
        kind,
        any::<(u32, u32, u32, i64, u32, u64, u64, u64, u8)>(),
        proptest::collection::vec(
            (name(), proptest::collection::vec(any::<u8>(), 0..20)),
            0..3,
        ),
        "[a-z]{0,8}",
    )
        .prop_map(
            |(name, kind, (mode, uid, gid, sec, nsec, inode, size, nlink, flags), xattrs, user)| {
                let mut n = Node::new(name, kind);
                n.mode = mode;
                n.uid = uid;
                n.gid = gid;
                n.user = user.clone();
                n.group = user;
                n.mtime = Timestamp {
                    sec,
                    nsec: nsec % 1_000_000_000,
                };
                n.ctime = Timestamp {
                    sec: sec / 2,
                    nsec: nsec % 999,
                };
                n.inode = inode;
                n.size = size;
                n.nlink = nlink;
                n.flags = flags;
                n.xattrs = xattrs
                    .into_iter()
                    .map(|(name, value)| Xattr { name, value })
                    .collect();
                n.xattrs.sort_by(|a, b| a.name.cmp(&b.name));
                n
            },
        )
}

fn tree() -> impl Strategy<Value = Tree> {
    proptest::collection::vec(node(), 0..6).prop_map(|mut nodes| {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes.dedup_by(|a, b| a.name == b.name);
        Tree { nodes }
    })
}

fn index_file() -> impl Strategy<Value = IndexFile> {
    let blob = (
        id(),
        any::<bool>(),
        any::<bool>(),
        any::<u16>(),
        0u32..1_000_000,
    )
        .prop_map(|(i, tree, zstd, offset, raw)| IndexBlob {
            blob_type: if tree { BlobType::Tree } else { BlobType::Data },
            compression: if zstd {
                Compression::Zstd
            } else {
                Compression::None
            },
            id: BlobId(i),
            offset: u32::from(offset),
            sealed_len: if zstd { 40 + raw / 2 } else { 40 + raw },
            raw_len: raw,
        });
    (
        proptest::collection::vec((id(), proptest::collection::vec(blob, 0..5)), 0..4),
        proptest::collection::vec(id(), 0..3),
    )
        .prop_map(|(packs, sup)| IndexFile {
            packs: packs
                .into_iter()
                .map(|(i, blobs)| IndexPack {
                    id: PackId(i),
                    blobs,
                })
                .collect(),
            supersedes: sup.into_iter().map(IndexId).collect(),
        })
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (
        any::<i64>(),
        -86_400i32..=86_400,
        id(),
        proptest::option::of(id()),
        "[a-z]{0,12}",
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..30), 0..3),
        proptest::collection::vec("[a-z]{1,6}", 0..3),
        any::<[u64; 4]>(),
    )
        .prop_map(|(t, off, tree, parent, host, paths, tags, s)| Snapshot {
            time_ns: t,
            utc_offset_s: off,
            tree: BlobId(tree),
            parent,
            hostname: host.clone(),
            username: host,
            paths,
            tags,
            program_version: "cairn test".into(),
            summary: Summary {
                files: s[0],
                bytes_read: s[1],
                bytes_added: s[2],
                duration_ns: s[3],
                ..Summary::default()
            },
            extensions: vec![],
        })
}

/// Every valid encoding of every record kind, for mutation tests.
fn samples() -> Vec<Vec<u8>> {
    let tree = Tree {
        nodes: vec![
            Node::new(
                "a",
                NodeKind::File {
                    content: vec![BlobId([1; 32])].into(),
                },
            ),
            Node::new(
                "ab",
                NodeKind::File {
                    content: FileContent::Tree {
                        height: 2,
                        top: vec![BlobId([8; 32]), BlobId([9; 32])],
                    },
                },
            ),
            Node::new(
                "b",
                NodeKind::Dir {
                    subtree: BlobId([2; 32]),
                },
            ),
        ],
    };
    let pack = header_to_bytes(&[PackEntry {
        blob_type: BlobType::Data,
        compression: Compression::Zstd,
        id: BlobId([4; 32]),
        sealed_len: 100,
        raw_len: 200,
    }])
    .unwrap();
    let key = KeyFile {
        kdf: KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        salt: [5; 32],
        wrapped: vec![6; 72],
        meta: KeyMeta::Sealed(vec![7; 40 + 128]),
    };
    let key_v1 = KeyFile {
        meta: KeyMeta::Clear(KeyInfo {
            created: 0,
            hostname: "h".into(),
            username: "u".into(),
        }),
        ..key.clone()
    };
    let config = Config {
        repo_id: [1; 32],
        chunker: ChunkerParams::with_seed(9),
        id_key: [2; 32],
        pack_size: 16 << 20,
        compression_level: 3,
        created: 0,
    };
    let lock = Lock {
        exclusive: false,
        time_ns: 1,
        hostname: "h".into(),
        username: "u".into(),
        pid: 2,
        boot_id: [4; 16],
        pid_ns: 5,
    };
    let sealed = SealKey::new(&Secret32::from_bytes([3; 32])).seal(b"aad", b"secret");
    vec![
        tree.to_bytes().unwrap(),
        pack,
        key.to_bytes_unchecked().unwrap(),
        key_v1.to_bytes_unchecked().unwrap(),
        config.to_bytes().unwrap(),
        lock.to_bytes().unwrap(),
        sealed,
        IndexFile::default().to_bytes().unwrap(),
        cairn::format::chunklist::list_to_bytes(1, &[BlobId([1; 32]), BlobId([2; 32])]).unwrap(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_all(&b);
    }

    #[test]
    fn mutated_records_never_panic(which in 0usize..9, pos in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        let mut b = samples()[which].clone();
        let i = pos % b.len();
        b[i] ^= byte | 1;
        decode_all(&b);
        let c = cut % (b.len() + 1);
        decode_all(&b[..c]);
    }

    #[test]
    fn trees_round_trip(t in tree()) {
        let b = t.to_bytes().unwrap();
        prop_assert_eq!(Tree::from_bytes(&b).unwrap(), t);
    }

    #[test]
    fn index_files_round_trip(f in index_file()) {
        let b = f.to_bytes().unwrap();
        prop_assert_eq!(IndexFile::from_bytes(&b).unwrap(), f);
    }

    #[test]
    fn snapshots_round_trip(s in snapshot()) {
        let b = s.to_bytes().unwrap();
        prop_assert_eq!(Snapshot::from_bytes(&b).unwrap(), s);
    }

    #[test]
    fn sealed_boxes_reject_any_single_bit_flip(data in proptest::collection::vec(any::<u8>(), 0..200), bit in any::<usize>()) {
        let key = SealKey::new(&Secret32::from_bytes([8; 32]));
        let mut sealed = key.seal(b"ad", &data);
        let i = bit % (sealed.len() * 8);
        sealed[i / 8] ^= 1 << (i % 8);
        prop_assert!(key.open(b"ad", &sealed, "test").is_err());
    }
}

/// A string that may run past the 65 535-byte limit of a `string16`, built
/// from a piece (non-ASCII included) repeated; multi-byte characters make
/// any byte-count truncation land mid-character.
fn long_text() -> impl Strategy<Value = String> {
    (
        prop_oneof!["[a-z]{1,3}", "[é中🎉]{1,3}", any::<String>()],
        prop_oneof![
            0usize..64,
            16_380usize..16_400,
            21_840usize..21_850,
            65_530usize..65_540,
            70_000usize..70_001
        ],
    )
        .prop_map(|(piece, n)| piece.chars().cycle().take(n).collect())
}

/// Either `encoded` is an error of kind *invalid input*, or it decodes back
/// to exactly `original`: an encoder never writes what its decoder rejects
/// or reads differently.
fn encodes_faithfully<T: PartialEq + std::fmt::Debug>(
    original: &T,
    encoded: cairn::Result<Vec<u8>>,
    decode: fn(&[u8]) -> cairn::Result<T>,
) -> Result<(), TestCaseError> {
    match encoded {
        Ok(b) => prop_assert_eq!(&decode(&b).unwrap(), original),
        Err(e) => prop_assert_eq!(e.kind(), cairn::ErrorKind::InvalidInput, "{}", e),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Regression: a tag of 40 000 `é` was cut mid-character at 65 535
    /// bytes and stored; the snapshot then failed to decode and every
    /// command that lists snapshots failed with it.
    #[test]
    fn long_and_non_ascii_snapshot_fields_encode_faithfully_or_fail(
        host in long_text(), user in long_text(), tag in long_text(), version in long_text(),
        path in long_text(), tags in 0usize..3,
    ) {
        let mut s = snapshot_sample();
        s.hostname = host;
        s.username = user;
        s.tags = vec![tag; tags];
        s.program_version = version;
        s.paths = vec![path.into_bytes()];
        encodes_faithfully(&s, s.to_bytes(), Snapshot::from_bytes)?;
    }

    #[test]
    fn long_and_non_ascii_lock_fields_encode_faithfully_or_fail(host in long_text(), user in long_text()) {
        let l = Lock {
            exclusive: true,
            time_ns: 5,
            hostname: host,
            username: user,
            pid: 7,
            boot_id: [3; 16],
            pid_ns: 9,
        };
        encodes_faithfully(&l, l.to_bytes(), Lock::from_bytes)?;
    }

    #[test]
    fn long_and_non_ascii_tree_fields_encode_faithfully_or_fail(
        name in long_text(), user in long_text(), target in long_text(), xattr in long_text(),
    ) {
        let mut n = Node::new(
            name.into_bytes(),
            NodeKind::Symlink { target: target.into_bytes() },
        );
        n.user = user.clone();
        n.group = user;
        n.xattrs = vec![Xattr { name: xattr.clone().into_bytes(), value: xattr.into_bytes() }];
        let t = Tree { nodes: vec![n] };
        encodes_faithfully(&t, t.to_bytes(), Tree::from_bytes)?;
    }
}

fn snapshot_sample() -> Snapshot {
    Snapshot {
        time_ns: 1,
        utc_offset_s: 0,
        tree: BlobId([1; 32]),
        parent: None,
        hostname: String::new(),
        username: String::new(),
        paths: Vec::new(),
        tags: Vec::new(),
        program_version: String::new(),
        summary: Summary::default(),
        extensions: Vec::new(),
    }
}

/// The exact tag of the report: 40 000 `é` (80 000 bytes) cannot be
/// encoded, and the error says which field and why.
#[test]
fn a_tag_of_forty_thousand_e_acute_is_refused_by_the_encoder() {
    let mut s = snapshot_sample();
    s.tags = vec!["é".repeat(40_000)];
    let e = s.to_bytes().unwrap_err();
    assert_eq!(e.kind(), cairn::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("cannot encode snapshot"), "{e}");
}
