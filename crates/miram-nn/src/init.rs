//! Seeded initialisers that need more than a distribution: Performer's orthogonal Gaussian
//! random features (mirrors `gaussian_orthogonal_random_matrix` of performer-pytorch).

use miram_rand::Rng;

/// Orthonormal columns of a `n x n` Gaussian matrix (modified Gram-Schmidt in `f64`), returned
/// row-major as the transpose `Q^T` (rows orthonormal).
fn orthogonal_block(n: usize, rng: &mut Rng) -> Vec<f64> {
    // cols[j] is column j of the Gaussian matrix.
    let mut cols: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..n).map(|_| rng.normal_f64()).collect())
        .collect();
    for j in 0..n {
        for i in 0..j {
            let (done, rest) = cols.split_at_mut(j);
            let qi = &done[i];
            let dot: f64 = qi.iter().zip(rest[0].iter()).map(|(a, b)| a * b).sum();
            for (v, q) in rest[0].iter_mut().zip(qi) {
                *v -= dot * q;
            }
        }
        let norm = cols[j]
            .iter()
            .map(|v| v * v)
            .sum::<f64>()
            .sqrt()
            .max(1e-300);
        for v in cols[j].iter_mut() {
            *v /= norm;
        }
    }
    // Q^T row-major: row j is column j of Q.
    cols.into_iter().flatten().collect()
}

/// Performer's projection matrix `[rows, cols]`: stacked blocks of orthogonal rows, each row
/// scaled by the norm of an independent Gaussian vector of length `cols`.
pub fn gaussian_orthogonal(rows: usize, cols: usize, rng: &mut Rng) -> Vec<f32> {
    let mut m: Vec<f64> = Vec::with_capacity(rows * cols);
    let full = rows.checked_div(cols).unwrap_or(0);
    for _ in 0..full {
        m.extend(orthogonal_block(cols, rng));
    }
    let rem = rows - full * cols;
    if rem > 0 {
        let b = orthogonal_block(cols, rng);
        m.extend_from_slice(&b[..rem * cols]);
    }
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let norm = (0..cols)
            .map(|_| rng.normal_f64().powi(2))
            .sum::<f64>()
            .sqrt();
        out.extend(
            m[r * cols..(r + 1) * cols]
                .iter()
                .map(|v| (v * norm) as f32),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_orthogonal() {
        let mut rng = Rng::new(1);
        let b = orthogonal_block(6, &mut rng);
        for i in 0..6 {
            for j in 0..6 {
                let d: f64 = (0..6).map(|k| b[i * 6 + k] * b[j * 6 + k]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((d - want).abs() < 1e-10);
            }
        }
    }

    #[test]
    fn rows_within_a_block_are_orthogonal_after_scaling() {
        let mut rng = Rng::new(2);
        let m = gaussian_orthogonal(10, 4, &mut rng);
        assert_eq!(m.len(), 40);
        for i in 0..4 {
            for j in 0..4 {
                if i != j {
                    let d: f32 = (0..4).map(|k| m[i * 4 + k] * m[j * 4 + k]).sum();
                    assert!(d.abs() < 1e-4);
                }
            }
        }
    }
}
