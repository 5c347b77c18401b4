//! Snapshots: decoding never panics; decode → encode is byte-identical.
#![no_main]
use cairn::format::snapshot::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Snapshot::from_bytes(data) {
        assert_eq!(s.to_bytes().unwrap(), data);
    }
});
