//! Content-defined chunking: FastCDC v2020 with a keyed gear table.
//!
//! Owns: where a byte stream is cut into chunks. The gear table is XORed
//! with a 64-bit secret from the repository config, so cut points depend on
//! the key as well as on the content. Never touches: I/O, hashing, storage.

use fastcdc::v2020::{FastCDC, Normalization};

use crate::format::config::ChunkerParams;

/// A chunker for one repository's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Chunker {
    params: ChunkerParams,
}

/// One chunk's position in its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Offset of the first byte.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

impl Chunker {
    /// A chunker for validated parameters.
    pub fn new(params: ChunkerParams) -> Self {
        Chunker { params }
    }

    /// The parameters.
    pub fn params(&self) -> &ChunkerParams {
        &self.params
    }

    /// Cut points of `data`, in order; the chunks tile `data` exactly.
    /// Inputs no longer than the minimum chunk are one chunk (no gear table
    /// is built for them).
    pub fn cuts<'a>(&self, data: &'a [u8]) -> Box<dyn Iterator<Item = Cut> + Send + 'a> {
        if data.is_empty() {
            return Box::new(std::iter::empty());
        }
        if data.len() <= self.params.min_len as usize {
            return Box::new(std::iter::once(Cut {
                offset: 0,
                len: data.len(),
            }));
        }
        let p = &self.params;
        Box::new(
            FastCDC::with_level_and_seed(
                data,
                p.min_len as usize,
                p.avg_len as usize,
                p.max_len as usize,
                Normalization::Level1,
                p.gear_seed,
            )
            .map(|c| Cut {
                offset: c.offset,
                len: c.length,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn small_params(seed: u64) -> ChunkerParams {
        ChunkerParams {
            min_len: 2048,
            avg_len: 8192,
            max_len: 65536,
            gear_seed: seed,
        }
    }

    #[test]
    fn chunks_tile_the_input_and_respect_limits() {
        let c = Chunker::new(small_params(7));
        for len in [0usize, 1, 2047, 2048, 2049, 65535, 65536, 65537, 1 << 20] {
            let d = data(len, 3);
            let cuts: Vec<Cut> = c.cuts(&d).collect();
            let mut pos = 0;
            for (i, cut) in cuts.iter().enumerate() {
                assert_eq!(cut.offset, pos);
                assert!(cut.len <= 65536);
                if i + 1 < cuts.len() {
                    assert!(cut.len >= 2048, "len {len}: chunk {i} is {}", cut.len);
                }
                pos += cut.len;
            }
            assert_eq!(pos, len);
        }
    }

    #[test]
    fn the_seed_changes_cut_points() {
        let d = data(1 << 20, 5);
        let a: Vec<Cut> = Chunker::new(small_params(1)).cuts(&d).collect();
        let b: Vec<Cut> = Chunker::new(small_params(2)).cuts(&d).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn an_insertion_shifts_only_nearby_cuts() {
        let c = Chunker::new(small_params(9));
        let d = data(1 << 20, 11);
        let mut e = d.clone();
        e.splice(1000..1000, [1u8, 2, 3]);
        let a: Vec<usize> = c.cuts(&d).map(|c| c.offset + c.len).collect();
        let b: Vec<usize> = c.cuts(&e).map(|c| c.offset + c.len - 3).collect();
        let shared = a.iter().filter(|x| b.contains(x)).count();
        assert!(
            shared + 3 >= a.len(),
            "{shared} of {} cut points survive",
            a.len()
        );
    }
}
