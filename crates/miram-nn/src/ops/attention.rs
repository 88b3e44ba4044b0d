//! Softmax attention over packed `qkv` (timm's layout: `[N, n, 3 * h * dh]` with q, k and v
//! side by side, heads inside each): one graph node instead of a dozen (split, scale, two
//! matrix products, softmax, merge) and their gradient bookkeeping. The backward pass of this
//! op recomputes each head's attention matrix from q and k (as flash attention does) instead
//! of keeping it alive between the passes.
//!
//! On the CPU for `f32` the op runs the slice kernels [`attention_core`] and
//! [`attention_core_backward`] (one rayon task per sample and head, products through
//! [`super::gemm`]), which the fused attention branch of [`super::block`] shares (that branch
//! keeps the probabilities when they fit [`KEEP_PROBS_BYTES`]); on other
//! devices the composed, differentiable form is used. Tests check both against each other,
//! forward and backward.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{matmul, timed_region, MatMut, MatRef, Par};
use super::{cpu_fast_path, slice, softmax_backward_rows, softmax_last_dim, softmax_rows};

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

/// The sizes of a packed `[N, n, 3 c]` layout of `heads` heads.
fn packed_dims(l: &Layout, heads: usize) -> candle_core::Result<AttnDims> {
    let (bsz, n, c3) = l.shape().dims3()?;
    if heads == 0 || c3 % (3 * heads) != 0 {
        candle_core::bail!("attention: qkv width {c3} for {heads} heads");
    }
    Ok(AttnDims::new(bsz, n, heads, c3 / 3))
}

impl CustomOp1 for PackedAttention {
    fn name(&self) -> &'static str {
        "miram-attention-packed"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = packed_dims(l, self.heads)?;
        let qkv = slice(s, l, "attention qkv")?;
        let (b, n, c) = (dims.bsz, dims.n, dims.heads * dims.dh);
        let mut out = vec![0f32; b * n * c];
        attention_core(qkv, dims, &mut out, None)?;
        Ok((CpuStorage::F32(out), Shape::from((b, n, c))))
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
        let dims = packed_dims(l1, self.heads)?;
        let qkv = slice(s1, l1, "attention_bwd qkv")?;
        let g = slice(s2, l2, "attention_bwd grad")?;
        let mut d_qkv = vec![0f32; qkv.len()];
        attention_core_backward(qkv, g, dims, &mut d_qkv, None)?;
        Ok((CpuStorage::F32(d_qkv), l1.shape().clone()))
    }
}

/// The sizes of one packed attention: samples, tokens, heads and head width.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttnDims {
    /// Samples.
    pub(crate) bsz: usize,
    /// Tokens per sample.
    pub(crate) n: usize,
    /// Heads.
    pub(crate) heads: usize,
    /// Width of one head.
    pub(crate) dh: usize,
}

/// The most bytes of attention probabilities that one fused attention keeps from its forward
/// pass for its backward pass; above it the backward pass recomputes them per head (two
/// matrices per worker thread at any length). Keeping saves the backward pass a product and
/// a softmax per head. 64 MiB keeps them in every preset's steps up to batch 27: the largest
/// per sample is the `paper` presets' 2x softmax decoder (197 tokens, 16 heads: 2.4 MiB);
/// `tiny`'s at batch 8 takes 5 MiB per block, `micro`'s (257 tokens) at batch 32 32 MiB. A
/// one-sample 785-token, 16-head decoder still fits (38 MiB); 3137 tokens do not.
pub(crate) const KEEP_PROBS_BYTES: usize = 64 << 20;

impl AttnDims {
    /// The sizes of attention over `[bsz, n, width]` activations in `heads` heads (`heads`
    /// divides `width`; the callers check it).
    pub(crate) fn new(bsz: usize, n: usize, heads: usize, width: usize) -> Self {
        Self {
            bsz,
            n,
            heads,
            dh: width / heads.max(1),
        }
    }

    /// Values of the attention probabilities of all samples and heads.
    pub(crate) fn probs_len(&self) -> usize {
        self.bsz * self.heads * self.n * self.n
    }

    /// Whether the forward pass keeps the probabilities ([`KEEP_PROBS_BYTES`]).
    pub(crate) fn keeps_probs(&self) -> bool {
        self.probs_len() * size_of::<f32>() <= KEEP_PROBS_BYTES
    }

    /// An error unless `len` is [`Self::probs_len`] (a kept-probability buffer for `what`).
    fn check_probs(&self, len: usize, what: &str) -> candle_core::Result<()> {
        if len != self.probs_len() {
            candle_core::bail!("{what}: {len} kept probabilities for {self:?}");
        }
        Ok(())
    }
}

/// Softmax attention of packed `qkv` (`[N n, 3 d]`, q, k, v side by side, heads inside each)
/// into `out` (`[N n, d]`, heads merged), one rayon task per (sample, head). With `keep`
/// (`[N h, n, n]`, [`AttnDims::probs_len`] values) each head's probabilities are written there
/// for [`attention_core_backward`].
pub(crate) fn attention_core(
    qkv: &[f32],
    dims: AttnDims,
    out: &mut [f32],
    keep: Option<&mut [f32]>,
) -> candle_core::Result<()> {
    let AttnDims { bsz, n, heads, dh } = dims;
    let d = heads * dh;
    let scale = (dh as f64).powf(-0.5) as f32;
    let mut per_head = vec![0f32; bsz * heads * n * dh];
    let head = |scores: &mut [f32], task: usize, o: &mut [f32]| -> candle_core::Result<()> {
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
        softmax_rows(scores, n);
        matmul(
            MatMut::rows(o, n, dh)?,
            MatRef::rows(scores, n, n)?,
            v,
            1.0,
            false,
            Par::Seq,
        )
    };
    let (per_task, per_probs) = ((n * dh).max(1), (n * n).max(1));
    timed_region(|| match keep {
        Some(probs) => {
            dims.check_probs(probs.len(), "attention")?;
            per_head
                .par_chunks_mut(per_task)
                .zip(probs.par_chunks_mut(per_probs))
                .enumerate()
                .try_for_each(|(task, (o, scores))| head(scores, task, o))
        }
        None => per_head
            .par_chunks_mut(per_task)
            .enumerate()
            .try_for_each_init(
                || vec![0f32; n * n],
                |scores, (task, o)| head(scores, task, o),
            ),
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
/// its output `d_out` (`[N n, d]`); the attention probabilities are `kept` ones of the
/// forward pass, or else recomputed per head.
pub(crate) fn attention_core_backward(
    qkv: &[f32],
    d_out: &[f32],
    dims: AttnDims,
    d_qkv: &mut [f32],
    kept: Option<&[f32]>,
) -> candle_core::Result<()> {
    let AttnDims { bsz, n, heads, dh } = dims;
    let d = heads * dh;
    let scale = (dh as f64).powf(-0.5) as f32;
    if let Some(p) = kept {
        dims.check_probs(p.len(), "attention_bwd")?;
    }
    // Per (sample, head): [dq; dk; dv], each [n, dh].
    let mut per_head = vec![0f32; bsz * heads * 3 * n * dh];
    timed_region(|| {
        per_head
            .par_chunks_mut((3 * n * dh).max(1))
            .enumerate()
            .try_for_each_init(
                || (Vec::new(), vec![0f32; n * n]),
                |(scratch, dprobs), (task, o)| -> candle_core::Result<()> {
                    let (bi, hi) = (task / heads, task % heads);
                    let rows = &qkv[bi * n * 3 * d..(bi + 1) * n * 3 * d];
                    let q = MatRef::cols_of(rows, n, 3 * d, hi * dh, dh)?;
                    let k = MatRef::cols_of(rows, n, 3 * d, d + hi * dh, dh)?;
                    let v = MatRef::cols_of(rows, n, 3 * d, 2 * d + hi * dh, dh)?;
                    let go =
                        MatRef::cols_of(&d_out[bi * n * d..(bi + 1) * n * d], n, d, hi * dh, dh)?;
                    let probs: &[f32] = match kept {
                        Some(all) => &all[task * n * n..(task + 1) * n * n],
                        None => {
                            scratch.resize(n * n, 0.0);
                            matmul(
                                MatMut::rows(scratch, n, n)?,
                                q,
                                k.t(),
                                scale,
                                false,
                                Par::Seq,
                            )?;
                            softmax_rows(scratch, n);
                            scratch
                        }
                    };
                    let (dq, rest) = o.split_at_mut(n * dh);
                    let (dk, dv) = rest.split_at_mut(n * dh);
                    let p = MatRef::rows(probs, n, n)?;
                    // dv = P^T dO ; dP = dO v^T ; dS = P * (dP - rowsum(dP * P)).
                    matmul(MatMut::rows(dv, n, dh)?, p.t(), go, 1.0, false, Par::Seq)?;
                    matmul(MatMut::rows(dprobs, n, n)?, go, v.t(), 1.0, false, Par::Seq)?;
                    softmax_backward_rows(probs, dprobs, n);
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

    /// The backward pass from kept probabilities gives the same bits as the one that
    /// recomputes them (the same products and softmax, in the same order), at odd sizes.
    #[test]
    fn kept_probabilities_give_the_recomputed_gradients() -> candle_core::Result<()> {
        let mut r = miram_rand::Rng::new(5);
        let dims = AttnDims::new(3, 37, 2, 10);
        let d = dims.heads * dims.dh;
        let rows = dims.bsz * dims.n;
        let qkv = r.normal_vec(rows * 3 * d, 0.0, 1.0);
        let d_out = r.normal_vec(rows * d, 0.0, 1.0);
        let (mut out_kept, mut out) = (vec![0f32; rows * d], vec![0f32; rows * d]);
        let mut probs = vec![0f32; dims.probs_len()];
        attention_core(&qkv, dims, &mut out_kept, Some(&mut probs))?;
        attention_core(&qkv, dims, &mut out, None)?;
        assert_eq!(out_kept, out);
        for row in probs.chunks(dims.n) {
            let s: f32 = row.iter().sum();
            assert!((s - 1.0).abs() < 1e-5, "{s}");
        }
        let (mut g_kept, mut g) = (vec![0f32; rows * 3 * d], vec![0f32; rows * 3 * d]);
        attention_core_backward(&qkv, &d_out, dims, &mut g_kept, Some(&probs))?;
        attention_core_backward(&qkv, &d_out, dims, &mut g, None)?;
        assert_eq!(g_kept, g);
        assert!(g.iter().any(|&v| v != 0.0));
        // Kept probabilities of the wrong size are refused.
        assert!(attention_core_backward(&qkv, &d_out, dims, &mut g, Some(&probs[1..])).is_err());
        Ok(())
    }
}
