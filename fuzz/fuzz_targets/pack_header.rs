//! Pack trailers and headers: decoding never panics; a decoded header
//! re-encodes to the same bytes.
#![no_main]
use cairn::format::pack::{entry_offsets, header_from_bytes, header_to_bytes, split_pack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = header_from_bytes(data) {
        assert_eq!(header_to_bytes(&entries).unwrap(), data);
        let total: u64 = entries.iter().map(|e| u64::from(e.sealed_len)).sum();
        assert!(entry_offsets(&entries, total).is_ok());
        assert!(entry_offsets(&entries, total + 1).is_err());
    }
    if let Ok((region, header)) = split_pack(data) {
        assert_eq!(region.len() + header.len() + 4, data.len());
    }
});
