//! Tree nodes and ID-list blobs: decoding never panics; anything accepted is
//! canonical (re-encodes byte-identically) and has only safe names.
#![no_main]
use cairn::format::chunklist::{IdList, list_to_bytes};
use cairn::format::tree::{Tree, validate_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Tree::from_bytes(data) {
        assert_eq!(t.to_bytes().unwrap(), data);
        for w in t.nodes.windows(2) {
            assert!(w[0].name < w[1].name);
        }
        for n in &t.nodes {
            assert!(validate_name(&n.name).is_ok());
        }
    }
    if let Ok(l) = IdList::from_bytes(data) {
        assert_eq!(list_to_bytes(l.level, &l.ids).unwrap(), data);
    }
});
