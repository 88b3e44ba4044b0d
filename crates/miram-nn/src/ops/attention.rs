//! Softmax attention over packed `qkv` (timm's layout: `[N, n, 3 * h * dh]` with q, k and v
//! side by side, heads inside each): one graph node instead of a dozen (split, scale, two
//! matrix products, softmax, merge) and their gradient bookkeeping. The backward pass
//! recomputes each head's attention matrix from q and k (as flash attention does) instead of
//! keeping it alive between the passes.
//!
//! On the CPU for `f32` the op runs the slice kernels [`attention_core`] and
//! [`attention_core_backward`] (one rayon task per sample and head, products through
//! [`super::gemm`]), which the fused attention branch of [`super::block`] shares; on other
//! devices the composed, differentiable form is used. Tests check both against each other,
//! forward and backward.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{matmul, timed_region, MatMut, MatRef, Par};
use super::{cpu_fast_path, slice, softmax_backward_row, softmax_last_dim, softmax_row};

/// Softmax attention of packed `qkv`, heads merged back.
///
/// # Shapes
/// - `qkv`: `[N, n, 3 * c]` (q, k, v blocks of width `c = heads * head_dim`)
/// - returns `[N, n, c]`
pub fn attention_packed(qkv: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    if cpu_fast_path(&[qkv]) {
        qkv.contiguous()?.apply_op1(PackedAttention { heads })
    } else {
        attention_packed_composed(qkv, heads)
    }
}

/// `[N, n, 3c]` -> three `[N * h, n, dh]` contiguous tensors.
fn split_qkv(qkv: &Tensor, heads: usize) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let (b, n, c3) = qkv.dims3()?;
    let c = c3 / 3;
    let dh = c / heads;
    let x = qkv
        .reshape((b, n, 3, heads, dh))?
        .permute((2, 0, 3, 1, 4))?; // [3, b, h, n, dh]
    let get = |i: usize| -> candle_core::Result<Tensor> {
        x.get(i)?.contiguous()?.reshape((b * heads, n, dh))
    };
    Ok((get(0)?, get(1)?, get(2)?))
}

/// `[N * h, n, dh]` -> `[N, n, h * dh]`.
fn merge(x: &Tensor, b: usize, heads: usize) -> candle_core::Result<Tensor> {
    let (_, n, dh) = x.dims3()?;
    x.reshape((b, heads, n, dh))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, n, heads * dh))
}

/// The composed, differentiable form (any device and dtype); the reference of the fused op.
pub fn attention_packed_composed(qkv: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let b = qkv.dim(0)?;
    let (q, k, v) = split_qkv(qkv, heads)?;
    let dh = q.dim(2)?;
    let q = (q * (dh as f64).powf(-0.5))?;
    let p = softmax_last_dim(&q.matmul(&k.t()?)?)?; // [b h, n, n]
    merge(&p.matmul(&v)?, b, heads)
}

struct PackedAttention {
    heads: usize,
}

/// `(N, n, head_dim)` of a packed `[N, n, 3 c]` layout of `heads` heads.
fn packed_dims(l: &Layout, heads: usize) -> candle_core::Result<(usize, usize, usize)> {
    let (b, n, c3) = l.shape().dims3()?;
    if heads == 0 || c3 % (3 * heads) != 0 {
        candle_core::bail!("attention: qkv width {c3} for {heads} heads");
    }
    Ok((b, n, c3 / (3 * heads)))
}

impl CustomOp1 for PackedAttention {
    fn name(&self) -> &'static str {
        "miram-attention-packed"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, n, dh) = packed_dims(l, self.heads)?;
        let qkv = slice(s, l, "attention qkv")?;
        let mut out = vec![0f32; b * n * self.heads * dh];
        attention_core(qkv, b, n, self.heads, dh, &mut out)?;
        Ok((CpuStorage::F32(out), Shape::from((b, n, self.heads * dh))))
    }

    fn bwd(
        &self,
        qkv: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let bwd = PackedAttentionBwd { heads: self.heads };
        Ok(Some(qkv.apply_op2_no_bwd(&grad.contiguous()?, &bwd)?))
    }
}

/// The gradient of [`PackedAttention`] with respect to `qkv`, from the output's gradient.
struct PackedAttentionBwd {
    heads: usize,
}

impl CustomOp2 for PackedAttentionBwd {
    fn name(&self) -> &'static str {
        "miram-attention-packed-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, n, dh) = packed_dims(l1, self.heads)?;
        let qkv = slice(s1, l1, "attention_bwd qkv")?;
        let g = slice(s2, l2, "attention_bwd grad")?;
        let mut d_qkv = vec![0f32; qkv.len()];
        attention_core_backward(qkv, g, b, n, self.heads, dh, &mut d_qkv)?;
        Ok((CpuStorage::F32(d_qkv), l1.shape().clone()))
    }
}

/// Softmax attention of packed `qkv` (`[N n, 3 d]`, q, k, v side by side, heads inside each)
/// into `out` (`[N n, d]`, heads merged), one rayon task per (sample, head).
pub(crate) fn attention_core(
    qkv: &[f32],
    bsz: usize,
    n: usize,
    heads: usize,
    dh: usize,
    out: &mut [f32],
) -> candle_core::Result<()> {
    let d = heads * dh;
    let scale = (dh as f64).powf(-0.5) as f32;
    let mut per_head = vec![0f32; bsz * heads * n * dh];
    timed_region(|| {
        per_head
            .par_chunks_mut(n * dh)
            .enumerate()
            .try_for_each_init(
                || vec![0f32; n * n],
                |scores, (task, o)| -> candle_core::Result<()> {
                    let (bi, hi) = (task / heads, task % heads);
                    let rows = &qkv[bi * n * 3 * d..(bi + 1) * n * 3 * d];
                    let q = MatRef::cols_of(rows, n, 3 * d, hi * dh, dh)?;
                    let k = MatRef::cols_of(rows, n, 3 * d, d + hi * dh, dh)?;
                    let v = MatRef::cols_of(rows, n, 3 * d, 2 * d + hi * dh, dh)?;
                    matmul(
                        MatMut::rows(scores, n, n)?,
                        q,
                        k.t(),
                        scale,
                        false,
                        Par::Seq,
                    )?;
                    for row in scores.chunks_mut(n) {
                        softmax_row(row);
                    }
                    matmul(
                        MatMut::rows(o, n, dh)?,
                        MatRef::rows(scores, n, n)?,
                        v,
                        1.0,
                        false,
                        Par::Seq,
                    )
                },
            )
    })?;
    // Merge the heads: out[b, i, h dh + j] = per_head[b, h, i, j].
    out.par_chunks_mut(d).enumerate().for_each(|(r, orow)| {
        let (bi, i) = (r / n, r % n);
        for hi in 0..heads {
            let src = &per_head[((bi * heads + hi) * n + i) * dh..][..dh];
            orow[hi * dh..(hi + 1) * dh].copy_from_slice(src);
        }
    });
    Ok(())
}

/// The gradient of [`attention_core`] with respect to the packed `qkv`, from the gradient of
/// its output `d_out` (`[N n, d]`); the attention matrix is recomputed per head.
pub(crate) fn attention_core_backward(
    qkv: &[f32],
    d_out: &[f32],
    bsz: usize,
    n: usize,
    heads: usize,
    dh: usize,
    d_qkv: &mut [f32],
) -> candle_core::Result<()> {
    let d = heads * dh;
    let scale = (dh as f64).powf(-0.5) as f32;
    // Per (sample, head): [dq; dk; dv], each [n, dh].
    let mut per_head = vec![0f32; bsz * heads * 3 * n * dh];
    timed_region(|| {
        per_head
            .par_chunks_mut(3 * n * dh)
            .enumerate()
            .try_for_each_init(
                || (vec![0f32; n * n], vec![0f32; n * n]),
                |(probs, dprobs), (task, o)| -> candle_core::Result<()> {
                    let (bi, hi) = (task / heads, task % heads);
                    let rows = &qkv[bi * n * 3 * d..(bi + 1) * n * 3 * d];
                    let q = MatRef::cols_of(rows, n, 3 * d, hi * dh, dh)?;
                    let k = MatRef::cols_of(rows, n, 3 * d, d + hi * dh, dh)?;
                    let v = MatRef::cols_of(rows, n, 3 * d, 2 * d + hi * dh, dh)?;
                    let go =
                        MatRef::cols_of(&d_out[bi * n * d..(bi + 1) * n * d], n, d, hi * dh, dh)?;
                    matmul(MatMut::rows(probs, n, n)?, q, k.t(), scale, false, Par::Seq)?;
                    for row in probs.chunks_mut(n) {
                        softmax_row(row);
                    }
                    let (dq, rest) = o.split_at_mut(n * dh);
                    let (dk, dv) = rest.split_at_mut(n * dh);
                    let p = MatRef::rows(probs, n, n)?;
                    // dv = P^T dO ; dP = dO v^T ; dS = P * (dP - rowsum(dP * P)).
                    matmul(MatMut::rows(dv, n, dh)?, p.t(), go, 1.0, false, Par::Seq)?;
                    matmul(MatMut::rows(dprobs, n, n)?, go, v.t(), 1.0, false, Par::Seq)?;
                    for (pr, gr) in probs.chunks(n).zip(dprobs.chunks_mut(n)) {
                        softmax_backward_row(pr, gr);
                    }
                    let ds = MatRef::rows(dprobs, n, n)?;
                    // S = scale q k^T: dq = scale dS k ; dk = scale dS^T q.
                    matmul(MatMut::rows(dq, n, dh)?, ds, k, scale, false, Par::Seq)?;
                    matmul(MatMut::rows(dk, n, dh)?, ds.t(), q, scale, false, Par::Seq)
                },
            )
    })?;
    // Scatter into the packed layout: d_qkv[b, i, part d + h dh + j].
    d_qkv
        .par_chunks_mut(3 * d)
        .enumerate()
        .for_each(|(r, orow)| {
            let (bi, i) = (r / n, r % n);
            for hi in 0..heads {
                for part in 0..3 {
                    let src = &per_head[(((bi * heads + hi) * 3 + part) * n + i) * dh..][..dh];
                    let at = part * d + hi * dh;
                    orow[at..at + dh].copy_from_slice(src);
                }
            }
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn fused_equals_composed_forward_and_backward() -> candle_core::Result<()> {
        let mut r = miram_rand::Rng::new(3);
        let (b, n, h, dh) = (2, 7, 3, 4);
        let qkv = Var::from_tensor(&Tensor::from_vec(
            r.normal_vec(b * n * 3 * h * dh, 0.0, 1.0),
            (b, n, 3 * h * dh),
            &Device::Cpu,
        )?)?;
        let up = Tensor::from_vec(
            r.normal_vec(b * n * h * dh, 0.0, 1.0),
            (b, n, h * dh),
            &Device::Cpu,
        )?;
        let y1 = attention_packed(&qkv, h)?;
        let y2 = attention_packed_composed(&qkv, h)?;
        let d = (&y1 - &y2)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(d < 1e-6, "{d}");
        let g1 = (y1 * &up)?.sum_all()?.backward()?;
        let g2 = (y2 * &up)?.sum_all()?.backward()?;
        let a = g1.get(&qkv).expect("grad");
        let c = g2.get(&qkv).expect("grad");
        let d = (a - c)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(d < 1e-5, "{d}");
        Ok(())
    }
}
