//! The two residual branches of a pre-norm transformer block, each as one op with an analytic
//! backward pass (the llm.c way): the attention branch `x + drop * proj(attn(qkv(LN(x))))`
//! for softmax attention, and the MLP branch `x + drop * fc2(gelu(fc1(LN(x))))` for every
//! block. On the CPU for `f32` each branch is a single graph node whose forward keeps only
//! what its backward needs (the normalised input and its row statistics, `qkv` or the MLP's
//! hidden layer before and after the GELU, the attention output); the attention matrix is
//! recomputed per head in the backward pass instead of kept. All matrix products go through
//! [`super::gemm`]; the six parameters of a branch travel as one packed vector, so the
//! backward pass returns their gradients in one buffer. Every other device or dtype runs the
//! composed, differentiable forms ([`attention_branch_composed`], [`mlp_branch_composed`]),
//! which the tests hold the fused ops to, forward and every gradient.
//!
//! Drop path: a branch takes the per-sample mask `[N, 1, 1]` (0 or `1 / keep`) of
//! [`crate::DropPathMasks`]; the masks carry no gradient.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{matmul, timed_region, MatMut, MatRef, Par};
use super::{
    attention_packed, cpu_fast_path, gelu, gelu_slope, gelu_value, layer_norm, linear, ln_backward,
    ln_forward, slice, softmax_backward_row, softmax_row,
};

/// The parameters of one residual branch: the pre-norm LayerNorm, the input projection
/// (`qkv` `[3 d, d]` for attention, `fc1` `[hidden, d]` for the MLP) and the output
/// projection (`proj` `[d, d]`, `fc2` `[d, hidden]`), each with its bias.
#[derive(Debug, Clone, Copy)]
pub struct BranchParams<'a> {
    /// LayerNorm weight `[d]`.
    pub norm_weight: &'a Tensor,
    /// LayerNorm bias `[d]`.
    pub norm_bias: &'a Tensor,
    /// Input projection weight `[inner, d]`.
    pub in_weight: &'a Tensor,
    /// Input projection bias `[inner]`.
    pub in_bias: &'a Tensor,
    /// Output projection weight `[d, width]` (`width` is `d` for attention, the hidden width
    /// for the MLP).
    pub out_weight: &'a Tensor,
    /// Output projection bias `[d]`.
    pub out_bias: &'a Tensor,
}

impl BranchParams<'_> {
    fn all(&self) -> [&Tensor; 6] {
        [
            self.norm_weight,
            self.norm_bias,
            self.in_weight,
            self.in_bias,
            self.out_weight,
            self.out_bias,
        ]
    }

    /// The six parameters flattened into one vector (differentiable: the gradient of the
    /// vector flows back to each parameter).
    fn packed(&self) -> candle_core::Result<Tensor> {
        let flat = self
            .all()
            .iter()
            .map(|t| t.flatten_all())
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::cat(&flat, 0)
    }
}

fn scaled(branch: Tensor, drop: Option<&Tensor>) -> candle_core::Result<Tensor> {
    match drop {
        Some(m) => branch.broadcast_mul(&m.to_dtype(branch.dtype())?),
        None => Ok(branch),
    }
}

/// `x + drop * proj(softmax_attention(qkv(LN(x))))`, LayerNorm epsilon `eps`.
///
/// # Shapes
/// - `x`: `[N, n, d]`; drop mask `[N, 1, 1]`; returns `[N, n, d]`
pub fn attention_branch(
    x: &Tensor,
    p: &BranchParams<'_>,
    heads: usize,
    eps: f64,
    drop: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let mut all = vec![x];
    all.extend(p.all());
    if cpu_fast_path(&all) {
        let op = BranchOp::new(Kind::Attention { heads }, x, p, eps, drop)?;
        x.contiguous()?.apply_op2(&p.packed()?, op)
    } else {
        attention_branch_composed(x, p, heads, eps, drop)
    }
}

/// The composed form of [`attention_branch`] (any device and dtype).
pub fn attention_branch_composed(
    x: &Tensor,
    p: &BranchParams<'_>,
    heads: usize,
    eps: f64,
    drop: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let h = layer_norm(x, p.norm_weight, p.norm_bias, eps)?;
    let qkv = composed_linear(&h, p.in_weight, p.in_bias)?;
    let a = composed_linear(&attention_packed(&qkv, heads)?, p.out_weight, p.out_bias)?;
    x + scaled(a, drop)?
}

/// `x + drop * fc2(gelu(fc1(LN(x))))`, LayerNorm epsilon `eps`.
///
/// # Shapes
/// - `x`: `[N, n, d]`; drop mask `[N, 1, 1]`; returns `[N, n, d]`
pub fn mlp_branch(
    x: &Tensor,
    p: &BranchParams<'_>,
    eps: f64,
    drop: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let mut all = vec![x];
    all.extend(p.all());
    if cpu_fast_path(&all) {
        let op = BranchOp::new(Kind::Mlp, x, p, eps, drop)?;
        x.contiguous()?.apply_op2(&p.packed()?, op)
    } else {
        mlp_branch_composed(x, p, eps, drop)
    }
}

/// The composed form of [`mlp_branch`] (any device and dtype).
pub fn mlp_branch_composed(
    x: &Tensor,
    p: &BranchParams<'_>,
    eps: f64,
    drop: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let h = layer_norm(x, p.norm_weight, p.norm_bias, eps)?;
    let m = composed_linear(
        &gelu(&composed_linear(&h, p.in_weight, p.in_bias)?)?,
        p.out_weight,
        p.out_bias,
    )?;
    x + scaled(m, drop)?
}

/// `x W^T + b` over the last dimension of a `[N, n, din]` tensor.
fn composed_linear(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let (bsz, n, din) = x.dims3()?;
    let y = linear(&x.contiguous()?.reshape((bsz * n, din))?, w, b)?;
    y.reshape((bsz, n, w.dim(0)?))
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Attention { heads: usize },
    Mlp,
}

/// Sizes of a branch: `d` channels, `inner` outputs of the input projection, `width` inputs
/// of the output projection; offsets of the six parameters in the packed vector.
#[derive(Debug, Clone, Copy)]
struct Dims {
    d: usize,
    inner: usize,
    width: usize,
}

impl Dims {
    fn offsets(&self) -> [usize; 7] {
        let Self { d, inner, width } = *self;
        let mut o = [0; 7];
        let sizes = [d, d, inner * d, inner, d * width, d];
        for i in 0..6 {
            o[i + 1] = o[i] + sizes[i];
        }
        o
    }

    fn total(&self) -> usize {
        self.offsets()[6]
    }
}

/// What the forward pass keeps for the backward pass.
struct Saved {
    mean: Vec<f32>,
    rstd: Vec<f32>,
    /// `LN(x)`, `[rows, d]`.
    normed: Vec<f32>,
    /// `qkv` `[rows, 3 d]` or the MLP's hidden layer before the GELU `[rows, hidden]`.
    inner: Vec<f32>,
    /// The attention output `[rows, d]` or the hidden layer after the GELU.
    act: Vec<f32>,
}

struct BranchOp {
    kind: Kind,
    dims: Dims,
    eps: f64,
    /// Per-sample drop-path factors, `None` without drop path.
    mask: Option<Vec<f32>>,
    saved: Mutex<Option<Arc<Saved>>>,
}

impl BranchOp {
    fn new(
        kind: Kind,
        x: &Tensor,
        p: &BranchParams<'_>,
        eps: f64,
        drop: Option<&Tensor>,
    ) -> candle_core::Result<Self> {
        let (bsz, _, d) = x.dims3()?;
        let (inner, din) = p.in_weight.dims2()?;
        let (dout, width) = p.out_weight.dims2()?;
        if din != d || dout != d {
            candle_core::bail!(
                "block branch: input projection [{inner}, {din}] and output projection [{dout}, {width}] for width {d}"
            );
        }
        if let Kind::Attention { heads } = kind {
            if heads == 0 || d % heads != 0 || inner != 3 * d || width != d {
                candle_core::bail!(
                    "attention branch: width {d}, {heads} heads, qkv of {inner}, proj input {width}"
                );
            }
        } else if width != inner {
            candle_core::bail!("mlp branch: fc1 gives {inner} features, fc2 takes {width}");
        }
        let mask = match drop {
            Some(m) => {
                let v = m
                    .flatten_all()?
                    .to_dtype(candle_core::DType::F32)?
                    .to_vec1::<f32>()?;
                if v.len() != bsz {
                    candle_core::bail!("drop-path mask of {} for a batch of {bsz}", v.len());
                }
                Some(v)
            }
            None => None,
        };
        Ok(Self {
            kind,
            dims: Dims { d, inner, width },
            eps,
            mask,
            saved: Mutex::new(None),
        })
    }
}

fn split6<'a>(p: &'a [f32], dims: &Dims) -> [&'a [f32]; 6] {
    let o = dims.offsets();
    std::array::from_fn(|i| &p[o[i]..o[i + 1]])
}

impl CustomOp2 for BranchOp {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Attention { .. } => "miram-attention-branch",
            Kind::Mlp => "miram-mlp-branch",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (bsz, n, d) = l1.shape().dims3()?;
        let x = slice(s1, l1, "block branch x")?;
        let p = slice(s2, l2, "block branch parameters")?;
        let Dims { inner, width, .. } = self.dims;
        if p.len() != self.dims.total() {
            candle_core::bail!(
                "block branch: {} packed parameters, expected {}",
                p.len(),
                self.dims.total()
            );
        }
        let [nw, nb, w1, b1, w2, b2] = split6(p, &self.dims);
        let rows = bsz * n;
        let mut mean = vec![0f32; rows];
        let mut rstd = vec![0f32; rows];
        let mut normed = vec![0f32; rows * d];
        ln_forward(x, nw, nb, d, self.eps, &mut normed, &mut mean, &mut rstd)?;
        let mut hidden = vec![0f32; rows * inner];
        linear::forward(&normed, w1, Some(b1), rows, d, inner, &mut hidden)?;
        let mut act = vec![0f32; rows * width];
        match self.kind {
            Kind::Attention { heads } => {
                attention_core(&hidden, bsz, n, heads, d / heads, &mut act)?
            }
            Kind::Mlp => act
                .par_chunks_mut(ELEM_CHUNK)
                .zip(hidden.par_chunks(ELEM_CHUNK))
                .for_each(|(a, h)| {
                    for (av, &hv) in a.iter_mut().zip(h) {
                        *av = gelu_value(hv);
                    }
                }),
        }
        let mut out = vec![0f32; rows * d];
        linear::forward(&act, w2, Some(b2), rows, width, d, &mut out)?;
        let mask = self.mask.as_deref();
        out.par_chunks_mut(n * d)
            .zip(x.par_chunks(n * d))
            .enumerate()
            .for_each(|(bi, (o, xi))| {
                let m = mask.map_or(1.0, |m| m[bi]);
                for (ov, &xv) in o.iter_mut().zip(xi) {
                    *ov = xv + m * *ov;
                }
            });
        let saved = Saved {
            mean,
            rstd,
            normed,
            inner: hidden,
            act,
        };
        if let Ok(mut s) = self.saved.lock() {
            *s = Some(Arc::new(saved));
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        p: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = match self.saved.lock() {
            Ok(s) => s.clone(),
            Err(_) => None,
        };
        let Some(saved) = saved else {
            candle_core::bail!(
                "{}: backward without a forward pass on the CPU",
                self.name()
            );
        };
        let bwd = BranchBwdOp {
            kind: self.kind,
            dims: self.dims,
            mask: self.mask.clone(),
            saved,
        };
        let all = grad.contiguous()?.apply_op3_no_bwd(x, p, &bwd)?;
        let nx = x.elem_count();
        let dx = all.narrow(0, 0, nx)?.reshape(x.shape())?;
        let dp = all.narrow(0, nx, p.elem_count())?;
        Ok((Some(dx), Some(dp)))
    }
}

/// Elements handled by one rayon task of the element-wise loops.
const ELEM_CHUNK: usize = 16 * 1024;

/// `[dx; d params]` in one buffer, from the upstream gradient, the input and the packed
/// parameters.
struct BranchBwdOp {
    kind: Kind,
    dims: Dims,
    mask: Option<Vec<f32>>,
    saved: Arc<Saved>,
}

impl CustomOp3 for BranchBwdOp {
    fn name(&self) -> &'static str {
        "miram-block-branch-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = slice(s1, l1, "block branch grad")?;
        let x = slice(s2, l2, "block branch x")?;
        let p = slice(s3, l3, "block branch parameters")?;
        let (bsz, n, d) = l2.shape().dims3()?;
        let Dims { inner, width, .. } = self.dims;
        let rows = bsz * n;
        let s = &*self.saved;
        let [nw, _, w1, _, w2, _] = split6(p, &self.dims);
        let mut out = vec![0f32; rows * d + self.dims.total()];
        let (dx, dp) = out.split_at_mut(rows * d);
        let o = self.dims.offsets();
        let (dnw, rest) = dp.split_at_mut(o[1]);
        let (dnb, rest) = rest.split_at_mut(o[2] - o[1]);
        let (dw1, rest) = rest.split_at_mut(o[3] - o[2]);
        let (db1, rest) = rest.split_at_mut(o[4] - o[3]);
        let (dw2, db2) = rest.split_at_mut(o[5] - o[4]);
        // The residual passes the gradient through; the branch sees it scaled by the mask.
        dx.copy_from_slice(g);
        let masked;
        let dy: &[f32] = match &self.mask {
            Some(m) => {
                let mut v = g.to_vec();
                v.par_chunks_mut(n * d).enumerate().for_each(|(bi, c)| {
                    for e in c.iter_mut() {
                        *e *= m[bi];
                    }
                });
                masked = v;
                &masked
            }
            None => g,
        };
        let mut d_act = vec![0f32; rows * width];
        linear::backward(
            &s.act,
            w2,
            dy,
            rows,
            width,
            d,
            Some((&mut d_act, false)),
            dw2,
            Some(db2),
        )?;
        let d_inner = match self.kind {
            Kind::Attention { heads } => {
                let mut d_qkv = vec![0f32; rows * inner];
                attention_core_backward(&s.inner, &d_act, bsz, n, heads, d / heads, &mut d_qkv)?;
                d_qkv
            }
            Kind::Mlp => {
                d_act
                    .par_chunks_mut(ELEM_CHUNK)
                    .zip(s.inner.par_chunks(ELEM_CHUNK))
                    .for_each(|(da, h)| {
                        for (dv, &hv) in da.iter_mut().zip(h) {
                            *dv *= gelu_slope(hv);
                        }
                    });
                d_act
            }
        };
        let mut d_normed = vec![0f32; rows * d];
        linear::backward(
            &s.normed,
            w1,
            &d_inner,
            rows,
            d,
            inner,
            Some((&mut d_normed, false)),
            dw1,
            Some(db1),
        )?;
        ln_backward(x, &s.mean, &s.rstd, nw, &d_normed, d, dx, true, dnw, dnb)?;
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

/// Softmax attention of packed `qkv` (`[N n, 3 d]`, q, k, v side by side, heads inside each)
/// into `out` (`[N n, d]`, heads merged), one rayon task per (sample, head).
fn attention_core(
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
fn attention_core_backward(
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
    use candle_core::{DType, Device, Var};

    fn rand(shape: &[usize], seed: u64, std: f64) -> candle_core::Result<Var> {
        let mut r = miram_rand::Rng::new(seed);
        let n = shape.iter().product();
        Var::from_tensor(&Tensor::from_vec(
            r.normal_vec(n, 0.0, std as f32),
            shape,
            &Device::Cpu,
        )?)
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> candle_core::Result<f64> {
        let a = a.to_dtype(DType::F64)?;
        let b = b.to_dtype(DType::F64)?;
        let d = (&a - &b)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f64>()?;
        let s = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
        Ok(d / s.max(1e-12))
    }

    /// Fused f32 against composed f64 (candle's own ops: no fused path runs in f64), forward
    /// and the gradient of the input and of each of the six parameters, with and without a
    /// drop-path mask that drops one sample.
    fn check(
        attention: bool,
        bsz: usize,
        n: usize,
        d: usize,
        heads: usize,
        hidden: usize,
    ) -> candle_core::Result<()> {
        let inner = if attention { 3 * d } else { hidden };
        let width = if attention { d } else { hidden };
        let x = rand(&[bsz, n, d], 1, 1.0)?;
        let ps = [
            rand(&[d], 2, 0.3)?,
            rand(&[d], 3, 0.3)?,
            rand(&[inner, d], 4, 0.3)?,
            rand(&[inner], 5, 0.3)?,
            rand(&[d, width], 6, 0.3)?,
            rand(&[d], 7, 0.3)?,
        ];
        let up = rand(&[bsz, n, d], 8, 1.0)?;
        let mask: Vec<f32> = (0..bsz).map(|i| if i == 1 { 0.0 } else { 1.25 }).collect();
        let mask = Tensor::from_vec(mask, (bsz, 1, 1), &Device::Cpu)?;
        for drop in [None, Some(&mask)] {
            let run = |x: &Var, ps: &[Var], fused: bool| -> candle_core::Result<(Tensor, candle_core::backprop::GradStore)> {
                let w1 = (ps[0].as_tensor() + 1.0)?;
                let p = BranchParams {
                    norm_weight: &w1,
                    norm_bias: &ps[1],
                    in_weight: &ps[2],
                    in_bias: &ps[3],
                    out_weight: &ps[4],
                    out_bias: &ps[5],
                };
                let dt = x.dtype();
                let drop = drop.map(|m| m.to_dtype(dt)).transpose()?;
                let y = match (attention, fused) {
                    (true, true) => attention_branch(x, &p, heads, 1e-6, drop.as_ref())?,
                    (true, false) => attention_branch_composed(x, &p, heads, 1e-6, drop.as_ref())?,
                    (false, true) => mlp_branch(x, &p, 1e-6, drop.as_ref())?,
                    (false, false) => mlp_branch_composed(x, &p, 1e-6, drop.as_ref())?,
                };
                let g = (&y * up.to_dtype(dt)?)?.sum_all()?.backward()?;
                Ok((y, g))
            };
            let (y, g) = run(&x, &ps, true)?;
            let x64 = Var::from_tensor(&x.to_dtype(DType::F64)?)?;
            let ps64 = ps
                .iter()
                .map(|p| Var::from_tensor(&p.to_dtype(DType::F64)?))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let (y64, g64) = run(&x64, &ps64, false)?;
            let what = format!(
                "attention {attention}, {bsz}x{n}x{d}, drop {}",
                drop.is_some()
            );
            assert!(max_rel(&y, &y64)? < 1e-5, "{what}: forward");
            let pairs = std::iter::once((&x, &x64)).chain(ps.iter().zip(&ps64));
            for (i, (v, v64)) in pairs.enumerate() {
                let a = g.get(v).expect("gradient");
                let r = g64.get(v64).expect("gradient");
                let e = max_rel(a, r)?;
                assert!(e < 2e-4, "{what}: gradient {i} off by {e}");
            }
        }
        Ok(())
    }

    #[test]
    fn fused_attention_branch_equals_composed_f64() -> candle_core::Result<()> {
        check(true, 3, 7, 12, 3, 0)?;
        check(true, 2, 13, 8, 1, 0)?;
        check(true, 1, 33, 20, 4, 0)
    }

    #[test]
    fn fused_mlp_branch_equals_composed_f64() -> candle_core::Result<()> {
        check(false, 3, 7, 12, 0, 37)?;
        check(false, 1, 1, 5, 0, 3)?;
        check(false, 2, 65, 16, 0, 64)
    }

    #[test]
    fn mismatched_parameters_are_refused() -> candle_core::Result<()> {
        let x = rand(&[2, 3, 8], 1, 1.0)?;
        let w = rand(&[8], 2, 1.0)?;
        let fc1 = rand(&[16, 8], 3, 1.0)?;
        let b1 = rand(&[16], 4, 1.0)?;
        let fc2 = rand(&[8, 15], 5, 1.0)?;
        let p = BranchParams {
            norm_weight: &w,
            norm_bias: &w,
            in_weight: &fc1,
            in_bias: &b1,
            out_weight: &fc2,
            out_bias: &w,
        };
        assert!(mlp_branch(&x, &p, 1e-6, None).is_err());
        assert!(attention_branch(&x, &p, 3, 1e-6, None).is_err());
        Ok(())
    }
}
