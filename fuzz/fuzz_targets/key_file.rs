//! Key files (both versions, and version 2's sealed information), the
//! config and locks: decoding never panics (and never
//! accepts KDF costs that could exhaust memory); decode → encode is
//! byte-identical.
#![no_main]
use cairn::format::config::Config;
use cairn::format::keyfile::{KeyFile, KeyInfo};
use cairn::format::lock::Lock;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = KeyFile::from_bytes(data) {
        assert_eq!(k.to_bytes().unwrap(), data);
        assert!(k.kdf.validate().is_ok());
    }
    if let Ok(i) = KeyInfo::from_bytes(data) {
        assert_eq!(i.to_bytes().unwrap(), data);
    }
    if let Ok(c) = Config::from_bytes(data) {
        assert_eq!(c.to_bytes().unwrap(), data);
    }
    let _ = Config::split_header(data);
    if let Ok(l) = Lock::from_bytes(data) {
        assert_eq!(l.to_bytes().unwrap(), data);
    }
});
