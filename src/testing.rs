//! Test-only helpers: a small deterministic pseudo-random generator for the randomized
//! tests of the parsers and decoders that read outside input (see [`crate::fuzzing`]).
//! A fixed seed makes every run test the same inputs, so a failure reproduces.

use alloc::vec::Vec;

/// xorshift64* (Marsaglia's xorshift with a multiplicative output step, as Vigna
/// describes it), seeded through splitmix64 so that nearby seeds diverge at once.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True once in `n` times on average.
    pub(crate) fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A number that finds edge cases more often than a uniform one: 0, 1, all ones, a
    /// power of two or one less, a small number, or anything.
    pub(crate) fn interesting(&mut self) -> u64 {
        match self.below(6) {
            0 => *self.pick(&[0, 1, u64::MAX, u64::from(u32::MAX), 2, 3, 4, 8]),
            1 => 1 << self.below(64),
            2 => (1 << self.below(64)) - 1,
            3 => self.below(64) as u64,
            4 => self.next() & 0xffff_ffff,
            _ => self.next(),
        }
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Changes `data` a little, as a mutation fuzzer does: flips bits, writes random or
    /// interesting bytes and 32-bit words (big- or little-endian), inserts, deletes or
    /// duplicates a run, or truncates.
    pub(crate) fn mutate(&mut self, data: &mut Vec<u8>) {
        for _ in 0..1 + self.below(4) {
            let len = data.len();
            let at = if len == 0 { 0 } else { self.below(len) };
            match self.below(9) {
                0 | 1 if len > 0 => data[at] ^= 1 << self.below(8),
                2 if len > 0 => data[at] = self.next() as u8,
                3 if len >= 4 => {
                    let at = self.below(len - 3);
                    let word = self.interesting() as u32;
                    let bytes = if self.one_in(2) {
                        word.to_be_bytes()
                    } else {
                        word.to_le_bytes()
                    };
                    data[at..at + 4].copy_from_slice(&bytes);
                }
                4 => {
                    let n = 1 + self.below(16);
                    let insert = self.bytes(n);
                    data.splice(at..at, insert);
                }
                5 if len > 0 => {
                    let end = (at + 1 + self.below(32)).min(len);
                    data.drain(at..end);
                }
                6 if len > 0 => {
                    let end = (at + 1 + self.below(64)).min(len);
                    let run = data[at..end].to_vec();
                    let to = self.below(len + 1);
                    data.splice(to..to, run);
                }
                7 if len > 0 => data.truncate(at),
                _ => {
                    if len > 0 {
                        data[at] = *self.pick(&[0, 0xff, b'0', b'\n', b'"', b'[', b'=', 0x7f]);
                    }
                }
            }
        }
    }
}
