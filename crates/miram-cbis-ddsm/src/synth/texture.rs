//! Power-law (1/f^beta) Gaussian random fields: the texture of breast tissue.
//!
//! The power spectrum of mammographic parenchyma falls as a power of the spatial frequency,
//! P(f) ~ 1/f^beta with beta close to 3 (Burgess, Jacobson and Judy 2001, "Human observer
//! detection experiments with mammograms and power-law noise", Med. Phys. 28:419). A field
//! with that spectrum is made by filling a Fourier grid with complex Gaussian coefficients of
//! amplitude f^(-beta/2) and transforming it back; the real and the imaginary parts of the
//! result are two independent fields with the same spectrum. Large images are synthesised
//! on a coarser grid (bilinear upsampling) plus a periodic tile that carries the frequencies
//! above the coarse grid's Nyquist limit, so a 3000 x 5000 image costs an FFT of at most
//! 512 x 512 and one of 256 x 256.

use miram_rand::Rng;

/// Twiddle factors `exp(sign * 2 pi i k / n)` for `k < n / 2`, computed in f64.
fn twiddles(n: usize, inverse: bool) -> Vec<(f32, f32)> {
    let sign = if inverse { 1.0 } else { -1.0 };
    (0..n / 2)
        .map(|k| {
            let a = sign * std::f64::consts::TAU * k as f64 / n as f64;
            (a.cos() as f32, a.sin() as f32)
        })
        .collect()
}

/// An in-place iterative radix-2 complex FFT over `re`/`im` (length a power of two) with the
/// twiddles of [`twiddles`] for that length and direction (no 1/n scaling: the fields are
/// normalised later).
fn fft_in_place(re: &mut [f32], im: &mut [f32], tw: &[(f32, f32)]) {
    let n = re.len();
    debug_assert!(n.is_power_of_two() && im.len() == n && tw.len() == n / 2);
    // Bit reversal.
    let mut j = 0usize;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let half = len / 2;
        let stride = n / len;
        for start in (0..n).step_by(len) {
            for k in 0..half {
                let (wr, wi) = tw[k * stride];
                let a = start + k;
                let b = a + half;
                let xr = re[b] * wr - im[b] * wi;
                let xi = re[b] * wi + im[b] * wr;
                re[b] = re[a] - xr;
                im[b] = im[a] - xi;
                re[a] += xr;
                im[a] += xi;
            }
        }
        len <<= 1;
    }
}

/// A 2-D inverse FFT of an `nx` x `ny` grid stored row-major (`ny` rows of `nx`).
fn ifft2(re: &mut [f32], im: &mut [f32], nx: usize, ny: usize) {
    let tw = twiddles(nx, true);
    for row in 0..ny {
        let r = row * nx..(row + 1) * nx;
        fft_in_place(&mut re[r.clone()], &mut im[r], &tw);
    }
    let tw = twiddles(ny, true);
    let mut cr = vec![0f32; ny];
    let mut ci = vec![0f32; ny];
    for col in 0..nx {
        for row in 0..ny {
            cr[row] = re[row * nx + col];
            ci[row] = im[row * nx + col];
        }
        fft_in_place(&mut cr, &mut ci, &tw);
        for row in 0..ny {
            re[row * nx + col] = cr[row];
            im[row * nx + col] = ci[row];
        }
    }
}

/// Signed frequency of FFT bin `k` of `n`, in cycles per grid.
fn freq(k: usize, n: usize) -> f32 {
    if k <= n / 2 {
        k as f32
    } else {
        k as f32 - n as f32
    }
}

/// Scales `v` to zero mean and unit standard deviation (no-op on a constant field).
fn standardise(v: &mut [f32]) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    let inv = if var > 0.0 { 1.0 / var.sqrt() } else { 0.0 };
    for x in v {
        *x = ((*x as f64 - mean) * inv) as f32;
    }
}

/// Two independent periodic Gaussian fields on an `nx` x `ny` grid (powers of two) whose
/// power spectrum is `(f^2 + f0^2)^(-beta/2)` for `f_lo <= |f| < f_hi` (frequencies in cycles
/// per grid along the longer side's scale) and zero elsewhere; each has zero mean and unit
/// variance.
fn power_law_pair(
    nx: usize,
    ny: usize,
    beta: f32,
    f_lo: f32,
    f_hi: f32,
    rng: &mut Rng,
) -> (Vec<f32>, Vec<f32>) {
    let mut re = vec![0f32; nx * ny];
    let mut im = vec![0f32; nx * ny];
    // Frequencies in cycles per `n_ref` pixels, so that the spectrum does not depend on the
    // aspect ratio of the grid.
    let n_ref = nx.max(ny) as f32;
    let f0 = 1.0f32;
    for ky in 0..ny {
        let fy = freq(ky, ny) * n_ref / ny as f32;
        for kx in 0..nx {
            let fx = freq(kx, nx) * n_ref / nx as f32;
            let f = (fx * fx + fy * fy).sqrt();
            let i = ky * nx + kx;
            if f == 0.0 || f < f_lo || f >= f_hi {
                // Draw anyway so that the stream does not depend on the band.
                rng.normal_f64();
                rng.normal_f64();
                continue;
            }
            let amp = (f * f + f0 * f0).powf(-beta / 4.0);
            re[i] = amp * rng.normal_f64() as f32;
            im[i] = amp * rng.normal_f64() as f32;
        }
    }
    ifft2(&mut re, &mut im, nx, ny);
    standardise(&mut re);
    standardise(&mut im);
    (re, im)
}

/// A power-law texture covering a `width` x `height` image: a coarse field sampled
/// bilinearly plus, when the coarse grid is below full resolution, a periodic tile holding
/// the finer frequencies. Two independent textures (`a` and `b`) are available.
#[derive(Debug, Clone)]
pub struct PowerLawTexture {
    /// Full-resolution pixels per coarse-grid cell.
    step: f32,
    nx: usize,
    ny: usize,
    coarse_a: Vec<f32>,
    coarse_b: Vec<f32>,
    /// Side of the fine tile (full-resolution pixels); 0 when there is none.
    tile: usize,
    fine: Vec<f32>,
    /// Standard deviation of the fine component relative to the coarse one.
    fine_gain: f32,
}

impl PowerLawTexture {
    /// The largest coarse grid side.
    const MAX_GRID: usize = 512;
    /// The side of the fine tile.
    const TILE: usize = 256;

    /// A texture for a `width` x `height` image with spectral exponent `beta`.
    pub fn new(width: u32, height: u32, beta: f32, rng: &mut Rng) -> Self {
        let (w, h) = (width.max(1) as usize, height.max(1) as usize);
        let long = w.max(h);
        let step = (long as f32 / Self::MAX_GRID as f32).max(1.0).ceil();
        let nx = ((w as f32 / step).ceil() as usize).next_power_of_two();
        let ny = ((h as f32 / step).ceil() as usize).next_power_of_two();
        let (coarse_a, coarse_b) = power_law_pair(nx, ny, beta, 0.0, f32::INFINITY, rng);
        if step <= 1.0 {
            return Self {
                step,
                nx,
                ny,
                coarse_a,
                coarse_b,
                tile: 0,
                fine: Vec::new(),
                fine_gain: 0.0,
            };
        }
        // The fine tile carries the frequencies above the coarse grid's Nyquist limit:
        // coarse Nyquist = 0.5 cycles per coarse cell = 0.5 / step cycles per pixel.
        let t = Self::TILE;
        let nyq_cycles_per_tile = 0.5 / step * t as f32;
        let (fine, _) = power_law_pair(t, t, beta, nyq_cycles_per_tile, f32::INFINITY, rng);
        // Relative power of the two bands for P(f) ~ f^-beta in 2-D: integral of
        // f^(1-beta) df; for beta > 2 the band above f_c holds (f_c/f_min)^(2-beta) of it.
        // One cycle per coarse grid (the spectrum's knee, f0) in cycles per tile.
        let coarse_f_min = t as f32 / (nx.max(ny) as f32 * step);
        let ratio = (nyq_cycles_per_tile / coarse_f_min).powf(2.0 - beta.max(2.05));
        let fine_gain = ratio.sqrt().clamp(0.0, 1.0);
        Self {
            step,
            nx,
            ny,
            coarse_a,
            coarse_b,
            tile: t,
            fine,
            fine_gain,
        }
    }

    #[inline]
    fn coarse(&self, field: &[f32], x: f32, y: f32) -> f32 {
        // The grid is periodic, so any coordinate is valid (wrapped only when needed: the
        // remainder is slow).
        let (nxf, nyf) = (self.nx as f32, self.ny as f32);
        let mut gx = x / self.step;
        if !(0.0..nxf).contains(&gx) {
            gx = gx.rem_euclid(nxf);
        }
        let mut gy = y / self.step;
        if !(0.0..nyf).contains(&gy) {
            gy = gy.rem_euclid(nyf);
        }
        let x0 = (gx.floor() as usize).min(self.nx - 1);
        let y0 = (gy.floor() as usize).min(self.ny - 1);
        let x1 = (x0 + 1) % self.nx;
        let y1 = (y0 + 1) % self.ny;
        let fx = gx - gx.floor();
        let fy = gy - gy.floor();
        let a = field[y0 * self.nx + x0];
        let b = field[y0 * self.nx + x1];
        let c = field[y1 * self.nx + x0];
        let d = field[y1 * self.nx + x1];
        (a * (1.0 - fx) + b * fx) * (1.0 - fy) + (c * (1.0 - fx) + d * fx) * fy
    }

    /// Texture `a` at pixel `(x, y)` (about zero mean, unit variance).
    #[inline]
    pub fn a(&self, x: f32, y: f32) -> f32 {
        let c = self.coarse(&self.coarse_a, x, y);
        if self.tile == 0 {
            return c;
        }
        // Tiles are powers of two: wrap the integer pixel position with a mask.
        let tx = (x.floor() as i64 as usize) & (self.tile - 1);
        let ty = (y.floor() as i64 as usize) & (self.tile - 1);
        c + self.fine_gain * self.fine[ty * self.tile + tx]
    }

    /// Texture `b` at pixel `(x, y)`, independent of `a` (no fine band).
    #[inline]
    pub fn b(&self, x: f32, y: f32) -> f32 {
        self.coarse(&self.coarse_b, x, y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_round_trip_and_known_transform() {
        // The inverse transform of a single bin k is exp(2 pi i k n / N).
        let n = 16;
        let mut re = vec![0f32; n];
        let mut im = vec![0f32; n];
        re[3] = 1.0;
        fft_in_place(&mut re, &mut im, &twiddles(n, true));
        for t in 0..n {
            let a = std::f32::consts::TAU * 3.0 * t as f32 / n as f32;
            assert!((re[t] - a.cos()).abs() < 1e-5 && (im[t] - a.sin()).abs() < 1e-5);
        }
        // Forward then inverse gives n times the input.
        let orig: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).sin()).collect();
        let mut re = orig.clone();
        let mut im = vec![0f32; n];
        fft_in_place(&mut re, &mut im, &twiddles(n, false));
        fft_in_place(&mut re, &mut im, &twiddles(n, true));
        for (a, b) in re.iter().zip(&orig) {
            assert!((a / n as f32 - b).abs() < 1e-5);
        }
    }

    /// The radially averaged power spectrum of the field falls with the requested slope.
    #[test]
    fn spectrum_follows_the_power_law() {
        let n = 128;
        let mut rng = Rng::new(4);
        let beta = 3.0;
        let (field, _) = power_law_pair(n, n, beta, 0.0, f32::INFINITY, &mut rng);
        let mut re = field.clone();
        let mut im = vec![0f32; n * n];
        // Forward 2-D FFT through the inverse routine on the conjugate (same magnitudes).
        ifft2(&mut re, &mut im, n, n);
        let mut sums = [0f64; 2];
        let mut counts = [0usize; 2];
        for ky in 0..n {
            for kx in 0..n {
                let f = (freq(kx, n).powi(2) + freq(ky, n).powi(2)).sqrt();
                let band = if (4.0..6.0).contains(&f) {
                    0
                } else if (16.0..24.0).contains(&f) {
                    1
                } else {
                    continue;
                };
                let p = (re[ky * n + kx] as f64).powi(2) + (im[ky * n + kx] as f64).powi(2);
                sums[band] += p;
                counts[band] += 1;
            }
        }
        let p_lo = sums[0] / counts[0] as f64;
        let p_hi = sums[1] / counts[1] as f64;
        // Mean frequencies about 5 and 20: expected ratio (20/5)^3 = 64 (f0 = 1 lowers it a bit).
        let slope = (p_lo / p_hi).ln() / (20.0f64 / 5.0).ln();
        assert!((slope - beta as f64).abs() < 0.4, "slope {slope}");
    }

    #[test]
    fn texture_is_standardised_and_seeded() {
        let t1 = PowerLawTexture::new(300, 500, 3.0, &mut Rng::new(1));
        let t2 = PowerLawTexture::new(300, 500, 3.0, &mut Rng::new(1));
        let mut s = 0.0f64;
        let mut s2 = 0.0f64;
        for y in 0..500 {
            for x in 0..300 {
                let v = t1.a(x as f32, y as f32);
                assert_eq!(v, t2.a(x as f32, y as f32));
                s += v as f64;
                s2 += (v as f64).powi(2);
            }
        }
        let n = 150_000.0;
        let sd = (s2 / n - (s / n).powi(2)).sqrt();
        assert!(sd > 0.3 && sd < 2.0, "{sd}");
        // A large image uses a coarse grid plus the fine tile.
        let big = PowerLawTexture::new(3000, 5000, 3.0, &mut Rng::new(2));
        assert!(big.tile > 0 && big.fine_gain > 0.0 && big.fine_gain < 1.0);
    }
}
