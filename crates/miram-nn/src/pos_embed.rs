//! Fixed 2-D sine-cosine position tables, as MAE's `get_2d_sincos_pos_embed`
//! (mirrors `util/pos_embed.py` of facebookresearch/mae and `sincos_2d` of the reference).
//!
//! The meshgrid puts the column coordinate first, so the first half of every vector encodes
//! the column and the second half the row; row 0 belongs to the cls token and is all zeros.
//! Values are computed in `f64` and rounded once to `f32`, as the reference does.

use candle_core::{Device, Tensor};

use crate::{Error, Result};

fn sincos_1d(dim: usize, pos: f64, out: &mut Vec<f64>) {
    let half = dim / 2;
    let mut sins = Vec::with_capacity(half);
    let mut coss = Vec::with_capacity(half);
    for i in 0..half {
        let omega = 1.0 / 10000f64.powf(i as f64 / (dim as f64 / 2.0));
        let a = pos * omega;
        sins.push(a.sin());
        coss.push(a.cos());
    }
    out.extend(sins);
    out.extend(coss);
}

/// The table as a flat row-major `Vec` of `(cls + grid_h * grid_w) * dim` values.
///
/// `dim` must be a multiple of 4 (two halves, each of sines and cosines).
pub fn sincos_2d_values(
    dim: usize,
    grid_h: usize,
    grid_w: usize,
    cls_token: bool,
) -> Result<Vec<f32>> {
    if dim % 4 != 0 || dim == 0 {
        return Err(Error::NotDivisible {
            what: "sin-cos table width",
            value: dim,
            by: 4,
            reason: "2-D sin-cos table",
        });
    }
    let mut out = Vec::with_capacity((grid_h * grid_w + 1) * dim);
    if cls_token {
        out.extend(std::iter::repeat_n(0.0, dim));
    }
    let mut row = Vec::with_capacity(dim);
    for i in 0..grid_h {
        for j in 0..grid_w {
            row.clear();
            sincos_1d(dim / 2, j as f64, &mut row); // the column first, as MAE's meshgrid
            sincos_1d(dim / 2, i as f64, &mut row);
            out.extend(row.iter().copied());
        }
    }
    Ok(out.into_iter().map(|v| v as f32).collect())
}

/// The table as a tensor.
///
/// # Shapes
/// - returns `[1, cls + grid_h * grid_w, dim]`
pub fn sincos_2d(
    dim: usize,
    grid_h: usize,
    grid_w: usize,
    cls_token: bool,
    device: &Device,
) -> Result<Tensor> {
    let v = sincos_2d_values(dim, grid_h, grid_w, cls_token)?;
    let n = grid_h * grid_w + usize::from(cls_token);
    Ok(Tensor::from_vec(v, (1, n, dim), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cls_row_is_zero_and_first_half_encodes_the_column() -> Result<()> {
        let v = sincos_2d_values(8, 2, 3, true)?;
        assert_eq!(v.len(), 7 * 8);
        assert!(v[..8].iter().all(|&x| x == 0.0));
        // Token (row 0, column 1): first half is sincos(col=1), second half sincos(row=0).
        let t = &v[2 * 8..3 * 8];
        assert!((t[0] - 1f32.sin()).abs() < 1e-7);
        assert!((t[2] - 1f32.cos()).abs() < 1e-7);
        assert_eq!(t[4], 0.0); // sin(0)
        assert_eq!(t[6], 1.0); // cos(0)
        Ok(())
    }

    #[test]
    fn rejects_widths_that_are_not_multiples_of_four() {
        assert!(sincos_2d_values(6, 2, 2, true).is_err());
    }
}
