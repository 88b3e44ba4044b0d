//! The one seeded random number generator of the MIRAM project.
//!
//! Every random number of the project (weight initialisation, masking noise, drop path,
//! augmentation, dataset generation, data splits, bootstrap resampling) is drawn from
//! [`Rng`], never from candle's device generators: `Device::Cpu.set_seed` fails in
//! candle 0.11, and a run must be reproducible from its seed alone.
//!
//! [`Rng`] is xoshiro256++ (Blackman and Vigna, 2019) seeded through SplitMix64. Its whole
//! state is four `u64`, so it can be saved in a checkpoint ([`Rng::state`]) and restored
//! ([`Rng::from_state`]) to resume a run exactly. [`Rng::keyed`] derives independent
//! streams from a seed and a key (an epoch, a sample index), so parallel workers draw the
//! same numbers whatever their scheduling.
//!
//! ```
//! use miram_rand::Rng;
//! let mut a = Rng::new(7);
//! let mut b = Rng::new(7);
//! assert_eq!(a.next_u64(), b.next_u64());
//! let x = a.uniform_f32();
//! assert!((0.0..1.0).contains(&x));
//! // Streams keyed by (epoch, index) do not depend on the order they are made in.
//! let s = Rng::keyed(7, &[3, 42]).next_u64();
//! assert_eq!(s, Rng::keyed(7, &[3, 42]).next_u64());
//! ```
#![warn(missing_docs)]

/// SplitMix64 step: the seeding function recommended for xoshiro generators.
#[inline]
fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seeded xoshiro256++ generator; see the crate documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator seeded from one `u64` (SplitMix64 expansion of the seed).
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let s = [
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
        ];
        Self { s }
    }

    /// An independent stream derived from `seed` and a key path, e.g. `&[epoch, index]`.
    /// The same seed and key always give the same stream.
    pub fn keyed(seed: u64, key: &[u64]) -> Self {
        let mut h = seed ^ 0x6A09_E667_F3BC_C908;
        let mut acc = splitmix64(&mut h);
        for &k in key {
            let mut x = acc ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            acc = splitmix64(&mut x) ^ splitmix64(&mut h);
        }
        Self::new(acc)
    }

    /// Restores a generator from a state returned by [`Rng::state`].
    ///
    /// An all-zero state is a fixed point of xoshiro; it is replaced by the state of
    /// `Rng::new(0)` so that a restored generator always produces a stream.
    pub fn from_state(state: [u64; 4]) -> Self {
        if state == [0; 4] {
            return Self::new(0);
        }
        Self { s: state }
    }

    /// The full state of the generator, for checkpoints.
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// A new generator whose stream is independent of this one's continuation.
    pub fn fork(&mut self) -> Self {
        Self::new(self.next_u64())
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// The next 32 random bits (the high half of [`Rng::next_u64`]).
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn uniform_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, 1)` with 24 random bits.
    #[inline]
    pub fn uniform_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in `[lo, hi)`.
    #[inline]
    pub fn uniform_range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform_f64()
    }

    /// Uniform integer in `0..n` without modulo bias (Lemire's method). `n` must be > 0;
    /// `below(0)` returns 0.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            let low = m as u64;
            if low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }

    /// Uniform index in `0..n` (`n` > 0).
    #[inline]
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// `true` with probability `p`.
    #[inline]
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.uniform_f64() < p
    }

    /// A standard normal deviate (Box-Muller; two uniforms per call, no cached state, so
    /// [`Rng::state`] captures everything).
    pub fn normal_f64(&mut self) -> f64 {
        // 1 - u lies in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform_f64();
        let u2 = self.uniform_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A normal deviate with the given mean and standard deviation, as `f32`.
    #[inline]
    pub fn normal_f32(&mut self, mean: f32, std: f32) -> f32 {
        mean + std * self.normal_f64() as f32
    }

    /// Fills `out` with uniform values in `[lo, hi)`.
    pub fn fill_uniform(&mut self, out: &mut [f32], lo: f32, hi: f32) {
        for v in out {
            *v = lo + (hi - lo) * self.uniform_f32();
        }
    }

    /// Fills `out` with normal values of the given mean and standard deviation.
    pub fn fill_normal(&mut self, out: &mut [f32], mean: f32, std: f32) {
        for v in out {
            *v = self.normal_f32(mean, std);
        }
    }

    /// `n` uniform values in `[lo, hi)`.
    pub fn uniform_vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        let mut v = vec![0f32; n];
        self.fill_uniform(&mut v, lo, hi);
        v
    }

    /// `n` normal values of the given mean and standard deviation.
    pub fn normal_vec(&mut self, n: usize, mean: f32, std: f32) -> Vec<f32> {
        let mut v = vec![0f32; n];
        self.fill_normal(&mut v, mean, std);
        v
    }

    /// Fisher-Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }

    /// A uniformly random permutation of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        self.shuffle(&mut p);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::new(123);
        let mut b = Rng::new(123);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn state_round_trip_continues_the_stream() {
        let mut a = Rng::new(9);
        a.next_u64();
        let mut b = Rng::from_state(a.state());
        for _ in 0..10 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn xoshiro_reference_values() {
        // Reference: xoshiro256++ from state {1, 2, 3, 4} (the authors' C code).
        let mut r = Rng::from_state([1, 2, 3, 4]);
        assert_eq!(r.next_u64(), 41_943_041);
        assert_eq!(r.next_u64(), 58_720_359);
        assert_eq!(r.next_u64(), 3_588_806_011_781_223);
    }

    #[test]
    fn uniform_and_normal_moments() {
        let mut r = Rng::new(5);
        let n = 200_000;
        let (mut s, mut s2) = (0.0, 0.0);
        for _ in 0..n {
            let x = r.normal_f64();
            s += x;
            s2 += x * x;
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.02, "{var}");
        let u: f64 = (0..n).map(|_| r.uniform_f64()).sum::<f64>() / n as f64;
        assert!((u - 0.5).abs() < 0.005);
    }

    #[test]
    fn below_is_in_range_and_covers() {
        let mut r = Rng::new(11);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let v = r.below(7) as usize;
            seen[v] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut r = Rng::new(3);
        let mut p = r.permutation(50);
        p.sort_unstable();
        assert_eq!(p, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn keyed_streams_differ_by_key() {
        assert_ne!(
            Rng::keyed(1, &[0, 1]).next_u64(),
            Rng::keyed(1, &[1, 0]).next_u64()
        );
        assert_ne!(
            Rng::keyed(1, &[0]).next_u64(),
            Rng::keyed(2, &[0]).next_u64()
        );
    }
}
