//! Fused softmax attention over packed `qkv` (timm's layout: `[N, n, 3 * h * dh]` with q, k
//! and v side by side, heads inside each): one graph node instead of a dozen (split, scale,
//! two matrix products, softmax, merge) and their gradient bookkeeping. The backward pass
//! recomputes the attention matrix from q and k (as flash attention does) instead of keeping
//! it alive between the passes.
//!
//! On the CPU for `f32` the op runs the same candle matrix products on detached tensors; on
//! other devices the composed, differentiable form is used. Tests check both against each
//! other, forward and backward.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

use super::{cpu_fast_path, slice, softmax_backward, softmax_last_dim};

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

impl CustomOp1 for PackedAttention {
    fn name(&self) -> &'static str {
        "miram-attention-packed"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, n, c3) = l.shape().dims3()?;
        let data = slice(s, l, "attention qkv")?;
        let qkv = Tensor::from_slice(data, (b, n, c3), &candle_core::Device::Cpu)?;
        let out = attention_packed_composed(&qkv, self.heads)?; // no graph: detached input
        let v = out.flatten_all()?.to_vec1::<f32>()?;
        Ok((CpuStorage::F32(v), Shape::from((b, n, c3 / 3))))
    }

    fn bwd(
        &self,
        qkv: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let qkv = qkv.detach();
        let (b, n, c3) = qkv.dims3()?;
        let h = self.heads;
        let (q, k, v) = split_qkv(&qkv, h)?;
        let dh = q.dim(2)?;
        let scale = (dh as f64).powf(-0.5);
        let qs = (&q * scale)?;
        let p = softmax_last_dim(&qs.matmul(&k.t()?)?)?.detach(); // [b h, n, n]
                                                                  // dO per head.
        let go = grad
            .detach()
            .reshape((b, n, h, dh))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * h, n, dh))?;
        let dv = p.t()?.matmul(&go)?; // [b h, n, dh]
        let dp = go.matmul(&v.t()?)?; // [b h, n, n]
        let ds = softmax_backward(&p, &dp)?; // p * (dp - rowsum(dp * p))
        let dq = (ds.matmul(&k)? * scale)?;
        let dk = ds.t()?.matmul(&qs)?;
        // Back to the packed layout [b, n, 3, h, dh].
        let pack = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, h, n, dh))?.transpose(1, 2)
        }; // [b, n, h, dh]
        let d = Tensor::stack(&[pack(dq)?, pack(dk)?, pack(dv)?], 2)?; // [b, n, 3, h, dh]
        Ok(Some(d.reshape((b, n, c3))?.to_dtype(DType::F32)?))
    }
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
