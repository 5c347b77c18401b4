//! Encoders: a snapshot, lock or tree built from arbitrary field values —
//! long strings, non-ASCII text whose byte length lands anywhere around the
//! 65 535-byte limit, long lists — either encodes to bytes that decode back
//! to exactly the same record, or fails with an *invalid input* error.
//! Never a truncation, never a panic.
#![no_main]
use cairn::ErrorKind;
use cairn::format::lock::Lock;
use cairn::format::snapshot::{Snapshot, Summary};
use cairn::format::tree::{Node, NodeKind, Tree, Xattr};
use cairn::id::BlobId;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// A piece of text repeated to a length chosen by the input (up to 70 000
/// characters), so a few input bytes reach past every length limit.
fn text(u: &mut Unstructured) -> Result<String> {
    let piece: String = u.arbitrary()?;
    let n = u.int_in_range(0..=70_000usize)?;
    Ok(piece.chars().cycle().take(n).collect())
}

fn check<T: PartialEq + std::fmt::Debug>(
    original: &T,
    encoded: cairn::Result<Vec<u8>>,
    decode: fn(&[u8]) -> cairn::Result<T>,
) {
    match encoded {
        Ok(b) => assert_eq!(&decode(&b).expect("an encoded record decodes"), original),
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}"),
    }
}

fn run(u: &mut Unstructured) -> Result<()> {
    let tags = (0..u.int_in_range(0..=3u8)?)
        .map(|_| text(u))
        .collect::<Result<Vec<_>>>()?;
    let s = Snapshot {
        time_ns: u.arbitrary()?,
        utc_offset_s: u.int_in_range(-86_400..=86_400)?,
        tree: BlobId(u.arbitrary()?),
        parent: u.arbitrary()?,
        hostname: text(u)?,
        username: text(u)?,
        paths: vec![text(u)?.into_bytes()],
        tags,
        program_version: text(u)?,
        summary: Summary::default(),
        extensions: Vec::new(),
    };
    check(&s, s.to_bytes(), Snapshot::from_bytes);
    let l = Lock {
        exclusive: u.arbitrary()?,
        time_ns: u.arbitrary()?,
        hostname: text(u)?,
        username: text(u)?,
        pid: u.arbitrary()?,
        boot_id: u.arbitrary()?,
        pid_ns: u.arbitrary()?,
    };
    check(&l, l.to_bytes(), Lock::from_bytes);
    let mut n = Node::new(
        text(u)?.into_bytes(),
        NodeKind::Symlink {
            target: text(u)?.into_bytes(),
        },
    );
    n.user = text(u)?;
    n.group = text(u)?;
    let x = text(u)?;
    n.xattrs = vec![Xattr {
        name: x.clone().into_bytes(),
        value: x.into_bytes(),
    }];
    let t = Tree { nodes: vec![n] };
    check(&t, t.to_bytes(), Tree::from_bytes);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
