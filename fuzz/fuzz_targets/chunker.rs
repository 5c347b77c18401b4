//! The chunker: chunks tile the input exactly and respect the size limits.
#![no_main]
use cairn::chunker::Chunker;
use cairn::format::config::ChunkerParams;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let seed = u64::from_le_bytes(data[..8].try_into().unwrap());
    let input = &data[8..];
    let params = ChunkerParams { min_len: 128, avg_len: 512, max_len: 2048, gear_seed: seed };
    let cuts: Vec<_> = Chunker::new(params).cuts(input).collect();
    let mut pos = 0;
    for (i, c) in cuts.iter().enumerate() {
        assert_eq!(c.offset, pos);
        assert!(c.len > 0 && c.len <= 2048);
        if i + 1 < cuts.len() {
            assert!(c.len >= 128);
        }
        pos += c.len;
    }
    assert_eq!(pos, input.len());
});
