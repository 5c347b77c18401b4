//! Index files: decoding never panics; decode → encode is byte-identical.
#![no_main]
use cairn::format::index::IndexFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = IndexFile::from_bytes(data) {
        assert_eq!(f.to_bytes().unwrap(), data);
    }
});
