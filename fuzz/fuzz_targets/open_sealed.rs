//! Opening arbitrary ciphertext fails cleanly (it cannot authenticate), and
//! decompressing arbitrary frames never grows past the stated length.
#![no_main]
use cairn::crypto::{SealKey, Secret32};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SealKey::new(&Secret32::from_bytes([7; 32]));
    assert!(key.open(b"fuzz", data, "fuzz").is_err());
    if data.len() >= 3 {
        let len = usize::from(u16::from_le_bytes([data[0], data[1]])) * 16;
        if let Ok(out) = cairn::repo::decompress(&data[2..], len) {
            assert_eq!(out.len(), len);
        }
    }
});
