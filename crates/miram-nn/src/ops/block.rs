//! The two residual branches of a pre-norm transformer block as fused ops with analytic
//! backward passes (the llm.c way): the attention branch `x + drop * proj(attn(qkv(LN(x))))`
//! for softmax attention, and the MLP branch `x + drop * fc2(gelu(fc1(LN(x))))` for every
//! block. On the CPU for `f32` each branch is three graph nodes whose forward keeps only
//! what its backward needs (the normalised input and its row statistics, `qkv` or the MLP's
//! hidden layer before and after the GELU, the attention output, and the attention
//! probabilities up to [`KEEP_PROBS_BYTES`](super::attention::KEEP_PROBS_BYTES), above which
//! they are recomputed per head in the backward pass). All matrix products go through
//! [`super::gemm`]. A branch is two ops, `LN + input projection` and `attention (or GELU) +
//! output projection + drop path`, then candle's residual add: that way each op takes the
//! weight matrices as stored (a custom op has at most three inputs; packing six parameters
//! into one would copy every weight each step, and split its gradient back with two more
//! passes); only the three small vectors of the first op are packed. Every other device or dtype runs the
//! composed, differentiable forms ([`attention_branch_composed`], [`mlp_branch_composed`]),
//! which the tests hold the fused ops to, forward and every gradient.
//!
//! Drop path: a branch takes the per-sample mask `[N, 1, 1]` (0 or `1 / keep`) of
//! [`crate::DropPathMasks`]; the masks carry no gradient.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::attention::{attention_core, attention_core_backward, AttnDims};
use super::linear::LinearDims;
use super::{
    attention_packed, cpu_fast_path, gelu, gelu_backward_in_place, gelu_values, layer_norm, linear,
    ln_backward, ln_forward, slice, LnGrads, RowStats,
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
}

fn scaled(branch: Tensor, drop: Option<&Tensor>) -> candle_core::Result<Tensor> {
    match drop {
        Some(m) => branch.broadcast_mul(&m.to_dtype(branch.dtype())?),
        None => Ok(branch),
    }
}

/// The fused form of a branch: `x + mix(norm_proj(x))`, two ops that take the weight
/// matrices as they are stored (no copy); the three vectors of the first op travel as one
/// small packed vector.
fn fused_branch(
    kind: Kind,
    x: &Tensor,
    p: &BranchParams<'_>,
    eps: f64,
    drop: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
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
    for (t, n, what) in [
        (p.norm_weight, d, "LayerNorm weight"),
        (p.norm_bias, d, "LayerNorm bias"),
        (p.in_bias, inner, "input projection bias"),
        (p.out_bias, d, "output projection bias"),
    ] {
        if t.dims() != [n] {
            candle_core::bail!("block branch: {what} {:?}, expected [{n}]", t.dims());
        }
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
    let vectors = Tensor::cat(&[p.norm_weight, p.norm_bias, p.in_bias], 0)?;
    let hidden = x.contiguous()?.apply_op3(
        &p.in_weight.contiguous()?,
        &vectors,
        NormProjOp {
            eps,
            saved: Mutex::new(None),
        },
    )?;
    let y = hidden.apply_op3(
        &p.out_weight.contiguous()?,
        &p.out_bias.contiguous()?,
        MixProjOp {
            kind,
            mask,
            saved: Mutex::new(None),
        },
    )?;
    x + y
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
        fused_branch(Kind::Attention { heads }, x, p, eps, drop)
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
    let qkv = linear(&h, p.in_weight, Some(p.in_bias))?;
    let a = linear(
        &attention_packed(&qkv, heads)?,
        p.out_weight,
        Some(p.out_bias),
    )?;
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
        fused_branch(Kind::Mlp, x, p, eps, drop)
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
    let hidden = gelu(&linear(&h, p.in_weight, Some(p.in_bias))?)?;
    let m = linear(&hidden, p.out_weight, Some(p.out_bias))?;
    x + scaled(m, drop)?
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Attention { heads: usize },
    Mlp,
}

/// Elements handled by one rayon task of the element-wise loops.
const ELEM_CHUNK: usize = 16 * 1024;

/// Multiplies each sample's `per_sample` values by its factor (drop path).
fn scale_samples(values: &mut [f32], per_sample: usize, factors: &[f32]) {
    values
        .par_chunks_mut(per_sample.max(1))
        .zip(factors.par_iter())
        .for_each(|(c, &f)| {
            for v in c.iter_mut() {
                *v *= f;
            }
        });
}

fn take_saved<T>(m: &Mutex<Option<Arc<T>>>, what: &str) -> candle_core::Result<Arc<T>> {
    match m.lock().ok().and_then(|s| s.clone()) {
        Some(s) => Ok(s),
        None => candle_core::bail!("{what}: backward without a forward pass on the CPU"),
    }
}

fn keep<T>(m: &Mutex<Option<Arc<T>>>, value: T) {
    if let Ok(mut s) = m.lock() {
        *s = Some(Arc::new(value));
    }
}

/// What the first op keeps: the row statistics and `LN(x)` `[rows, d]`.
struct NormSaved {
    stats: RowStats,
    normed: Vec<f32>,
}

/// `LN(x) W_in^T + b_in` with `vectors = [ln weight; ln bias; b_in]`.
struct NormProjOp {
    eps: f64,
    saved: Mutex<Option<Arc<NormSaved>>>,
}

impl CustomOp3 for NormProjOp {
    fn name(&self) -> &'static str {
        "miram-norm-proj"
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
        let (bsz, n, d) = l1.shape().dims3()?;
        let (inner, _) = l2.shape().dims2()?;
        let x = slice(s1, l1, "norm_proj x")?;
        let w = slice(s2, l2, "norm_proj weight")?;
        let v = slice(s3, l3, "norm_proj vectors")?;
        if v.len() != 2 * d + inner {
            candle_core::bail!("norm_proj: {} vector values for width {d}", v.len());
        }
        let (nw, rest) = v.split_at(d);
        let (nb, b_in) = rest.split_at(d);
        let rows = bsz * n;
        let mut stats = RowStats::zeros(rows);
        let mut normed = vec![0f32; rows * d];
        ln_forward(x, nw, nb, d, self.eps, &mut normed, &mut stats)?;
        let dims = LinearDims {
            rows,
            din: d,
            dout: inner,
        };
        let hidden = linear::forward(&normed, w, Some(b_in), dims)?;
        keep(&self.saved, NormSaved { stats, normed });
        Ok((CpuStorage::F32(hidden), Shape::from((bsz, n, inner))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let saved = take_saved(&self.saved, self.name())?;
        let d = x.dim(2)?;
        // The LayerNorm weight (the first `d` values of the small vector) travels in the op.
        let norm_weight = v.narrow(0, 0, d)?.to_vec1::<f32>()?;
        let bwd = NormProjBwdOp {
            saved,
            norm_weight,
            vectors: v.elem_count(),
        };
        let all = grad.contiguous()?.apply_op3_no_bwd(x, w, &bwd)?;
        let (nx, nw) = (x.elem_count(), w.elem_count());
        let dx = all.narrow(0, 0, nx)?.reshape(x.shape())?;
        let dw = all.narrow(0, nx, nw)?.reshape(w.shape())?;
        let dv = all.narrow(0, nx + nw, v.elem_count())?;
        Ok((Some(dx), Some(dw), Some(dv)))
    }
}

/// `[dx; dW_in; d vectors]` from the gradient of the projection.
struct NormProjBwdOp {
    saved: Arc<NormSaved>,
    norm_weight: Vec<f32>,
    vectors: usize,
}

impl CustomOp3 for NormProjBwdOp {
    fn name(&self) -> &'static str {
        "miram-norm-proj-bwd"
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
        let g = slice(s1, l1, "norm_proj_bwd grad")?;
        let x = slice(s2, l2, "norm_proj_bwd x")?;
        let w = slice(s3, l3, "norm_proj_bwd weight")?;
        let (inner, d) = l3.shape().dims2()?;
        let rows = x.len() / d.max(1);
        let nw = &self.norm_weight;
        let s = &*self.saved;
        let mut out = vec![0f32; rows * d + inner * d + self.vectors];
        let (dx, rest) = out.split_at_mut(rows * d);
        let (dw, dv) = rest.split_at_mut(inner * d);
        let (dnw, rest) = dv.split_at_mut(d);
        let (dnb, db_in) = rest.split_at_mut(d);
        let mut d_normed = vec![0f32; rows * d];
        let dims = LinearDims {
            rows,
            din: d,
            dout: inner,
        };
        linear::backward(
            &s.normed,
            w,
            g,
            dims,
            Some((&mut d_normed, false)),
            dw,
            Some(db_in),
        )?;
        let grads = LnGrads {
            dx,
            accumulate: false,
            dw: dnw,
            db: dnb,
        };
        ln_backward(x, &s.stats, nw, &d_normed, d, grads)?;
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

/// What the second op keeps: the attention output or the GELU output, `[rows, width]`, and
/// the attention probabilities `[N h, n, n]` when they fit
/// [`KEEP_PROBS_BYTES`](super::attention::KEEP_PROBS_BYTES).
struct MixSaved {
    act: Vec<f32>,
    probs: Option<Vec<f32>>,
}

/// `drop * (core(hidden) W_out^T + b_out)`, where `core` is softmax attention of the packed
/// `qkv` or the GELU.
struct MixProjOp {
    kind: Kind,
    /// Per-sample drop-path factors, `None` without drop path.
    mask: Option<Vec<f32>>,
    saved: Mutex<Option<Arc<MixSaved>>>,
}

impl CustomOp3 for MixProjOp {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Attention { .. } => "miram-attention-proj",
            Kind::Mlp => "miram-gelu-proj",
        }
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
        let (bsz, n, inner) = l1.shape().dims3()?;
        let (d, width) = l2.shape().dims2()?;
        let hidden = slice(s1, l1, "mix_proj hidden")?;
        let w = slice(s2, l2, "mix_proj weight")?;
        let b = slice(s3, l3, "mix_proj bias")?;
        let rows = bsz * n;
        let mut act = vec![0f32; rows * width];
        let probs = match self.kind {
            Kind::Attention { heads } => {
                let dims = AttnDims::new(bsz, n, heads, d);
                let mut kept = dims.keeps_probs().then(|| vec![0f32; dims.probs_len()]);
                attention_core(hidden, dims, &mut act, kept.as_deref_mut())?;
                kept
            }
            Kind::Mlp => {
                if width != inner {
                    candle_core::bail!("mlp branch: fc1 gives {inner} features, fc2 takes {width}");
                }
                act.par_chunks_mut(ELEM_CHUNK)
                    .zip(hidden.par_chunks(ELEM_CHUNK))
                    .for_each(|(a, h)| gelu_values(a, h));
                None
            }
        };
        let dims = LinearDims {
            rows,
            din: width,
            dout: d,
        };
        let mut out = linear::forward(&act, w, Some(b), dims)?;
        if let Some(m) = &self.mask {
            scale_samples(&mut out, n * d, m);
        }
        keep(&self.saved, MixSaved { act, probs });
        Ok((CpuStorage::F32(out), Shape::from((bsz, n, d))))
    }

    fn bwd(
        &self,
        hidden: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let saved = take_saved(&self.saved, self.name())?;
        let bwd = MixProjBwdOp {
            kind: self.kind,
            mask: self.mask.clone(),
            saved,
        };
        let all = grad.contiguous()?.apply_op3_no_bwd(hidden, w, &bwd)?;
        let (nh, nw) = (hidden.elem_count(), w.elem_count());
        let dh = all.narrow(0, 0, nh)?.reshape(hidden.shape())?;
        let dw = all.narrow(0, nh, nw)?.reshape(w.shape())?;
        let db = all.narrow(0, nh + nw, b.elem_count())?;
        Ok((Some(dh), Some(dw), Some(db)))
    }
}

/// `[d hidden; dW_out; db_out]` from the gradient of the branch output.
struct MixProjBwdOp {
    kind: Kind,
    mask: Option<Vec<f32>>,
    saved: Arc<MixSaved>,
}

impl CustomOp3 for MixProjBwdOp {
    fn name(&self) -> &'static str {
        "miram-mix-proj-bwd"
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
        let g = slice(s1, l1, "mix_proj_bwd grad")?;
        let hidden = slice(s2, l2, "mix_proj_bwd hidden")?;
        let w = slice(s3, l3, "mix_proj_bwd weight")?;
        let (bsz, n, inner) = l2.shape().dims3()?;
        let (d, width) = l3.shape().dims2()?;
        let rows = bsz * n;
        let masked;
        let dy: &[f32] = match &self.mask {
            Some(m) => {
                let mut v = g.to_vec();
                scale_samples(&mut v, n * d, m);
                masked = v;
                &masked
            }
            None => g,
        };
        let mut out = vec![0f32; rows * inner + d * width + d];
        let (d_hidden, rest) = out.split_at_mut(rows * inner);
        let (dw, db) = rest.split_at_mut(d * width);
        // The gradient of the core's output: for the GELU it is written where the gradient of
        // the hidden layer goes and scaled there in place; attention needs it apart.
        let mut d_attention = match self.kind {
            Kind::Attention { .. } => vec![0f32; rows * width],
            Kind::Mlp => Vec::new(),
        };
        let d_act: &mut [f32] = match self.kind {
            Kind::Attention { .. } => &mut d_attention,
            Kind::Mlp => &mut *d_hidden,
        };
        let act = &self.saved.act;
        let dims = LinearDims {
            rows,
            din: width,
            dout: d,
        };
        linear::backward(act, w, dy, dims, Some((d_act, false)), dw, Some(db))?;
        match self.kind {
            Kind::Attention { heads } => {
                let dims = AttnDims::new(bsz, n, heads, d);
                let kept = self.saved.probs.as_deref();
                attention_core_backward(hidden, &d_attention, dims, d_hidden, kept)?;
            }
            Kind::Mlp => {
                d_hidden
                    .par_chunks_mut(ELEM_CHUNK)
                    .zip(hidden.par_chunks(ELEM_CHUNK))
                    .for_each(|(dh, h)| gelu_backward_in_place(dh, h));
            }
        }
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    use crate::ops::test_util::{max_rel, normal};

    fn rand(shape: &[usize], seed: u64, std: f32) -> candle_core::Result<Var> {
        Var::from_tensor(&normal(shape, seed, std)?)
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
