//! Differentiable row gathers along the token dimension: `out[n, k] = x[n, ids[n, k]]`.
//!
//! The CPU kernel copies rows in parallel and has an analytic backward (the rows of the
//! gradient added back into zeros at their indices); the generic path is `index_select` over
//! the flattened batch, whose backward (`index_add`) is correct on every device.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::{Error, Result};

fn check(x: &Tensor, ids: &Tensor) -> Result<(usize, usize, usize, usize)> {
    let (n, l, d) = x.dims3()?;
    let (ni, k) = ids.dims2()?;
    if ni != n {
        return Err(Error::CountMismatch {
            what: "gather: rows of indices (one per batch image)",
            expected: n,
            got: ni,
        });
    }
    Ok((n, l, d, k))
}

/// Gathers tokens; chooses the fused CPU kernel for `f32` on the CPU (unless
/// [`miram_nn::ops::set_fused_cpu_kernels`] turned it off).
///
/// # Shapes
/// - `x`: `[N, L, D]`, `ids`: `[N, K]` (`u32`, values `< L`), returns `[N, K, D]`
pub fn gather_tokens(x: &Tensor, ids: &Tensor) -> Result<Tensor> {
    check(x, ids)?;
    if miram_nn::ops::fused_cpu_kernels()
        && x.device().is_cpu()
        && x.dtype() == DType::F32
        && ids.dtype() == DType::U32
    {
        Ok(x.contiguous()?.apply_op2(&ids.contiguous()?, GatherRows)?)
    } else {
        gather_tokens_generic(x, ids)
    }
}

/// The generic gather: `index_select` on `[N * L, D]` with indices `n * L + ids[n, k]`.
pub fn gather_tokens_generic(x: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (n, l, d, k) = check(x, ids)?;
    let offsets = Tensor::arange(0u32, n as u32, x.device())?
        .affine(l as f64, 0.0)?
        .reshape((n, 1))?; // [n, 1]
    let flat_ids = ids
        .to_dtype(DType::U32)?
        .broadcast_add(&offsets)?
        .flatten_all()?; // [n k]
    let rows = x.reshape((n * l, d))?.index_select(&flat_ids, 0)?; // [n k, d]
    Ok(rows.reshape((n, k, d))?)
}

fn slices<'a>(
    s1: &'a CpuStorage,
    l1: &Layout,
    s2: &'a CpuStorage,
    l2: &Layout,
) -> candle_core::Result<(&'a [f32], &'a [u32])> {
    let (a0, a1) = l1
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("gather: x not contiguous".into()))?;
    let (b0, b1) = l2
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("gather: ids not contiguous".into()))?;
    Ok((
        &s1.as_slice::<f32>()?[a0..a1],
        &s2.as_slice::<u32>()?[b0..b1],
    ))
}

struct GatherRows;

impl CustomOp2 for GatherRows {
    fn name(&self) -> &'static str {
        "miram-gather-rows"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, ids) = slices(s1, l1, s2, l2)?;
        let (n, l, d) = l1.shape().dims3()?;
        let k = l2.dims()[1];
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= l) {
            candle_core::bail!("gather: index {bad} out of range for {l} tokens");
        }
        let mut out = vec![0f32; n * k * d];
        out.par_chunks_mut((k * d).max(1))
            .enumerate()
            .for_each(|(b, o)| {
                let xb = &x[b * l * d..(b + 1) * l * d];
                for (j, orow) in o.chunks_mut(d.max(1)).enumerate() {
                    let i = ids[b * k + j] as usize;
                    orow.copy_from_slice(&xb[i * d..(i + 1) * d]);
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((n, k, d))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        ids: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let l = x.dim(1)?;
        let dx = grad
            .contiguous()?
            .apply_op2_no_bwd(ids, &ScatterRowsAdd { l })?;
        Ok((Some(dx), None))
    }
}

/// `out[n, ids[n, k]] += grad[n, k]` into zeros `[N, L, D]`.
struct ScatterRowsAdd {
    l: usize,
}

impl CustomOp2 for ScatterRowsAdd {
    fn name(&self) -> &'static str {
        "miram-scatter-rows-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (g, ids) = slices(s1, l1, s2, l2)?;
        let (n, k, d) = l1.shape().dims3()?;
        let l = self.l;
        let mut out = vec![0f32; n * l * d];
        out.par_chunks_mut((l * d).max(1))
            .enumerate()
            .for_each(|(b, o)| {
                let gb = &g[b * k * d..(b + 1) * k * d];
                for j in 0..k {
                    let i = ids[b * k + j] as usize;
                    for (ov, gv) in o[i * d..(i + 1) * d]
                        .iter_mut()
                        .zip(&gb[j * d..(j + 1) * d])
                    {
                        *ov += gv;
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((n, l, d))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use miram_rand::Rng;

    #[test]
    fn fused_and_generic_agree_forward_and_backward() -> Result<()> {
        let mut rng = Rng::new(1);
        let (n, l, d, k) = (3, 7, 5, 9); // k > l: repeated indices accumulate in backward
        let x = Var::from_tensor(&Tensor::from_vec(
            rng.normal_vec(n * l * d, 0.0, 1.0),
            (n, l, d),
            &Device::Cpu,
        )?)?;
        let ids: Vec<u32> = (0..n * k).map(|_| rng.below(l as u64) as u32).collect();
        let ids = Tensor::from_vec(ids, (n, k), &Device::Cpu)?;
        let up = Tensor::from_vec(rng.normal_vec(n * k * d, 0.0, 1.0), (n, k, d), &Device::Cpu)?;
        let a = gather_tokens(&x, &ids)?;
        let b = gather_tokens_generic(&x, &ids)?;
        assert_eq!(a.to_vec3::<f32>()?, b.to_vec3::<f32>()?);
        let ga = (a * &up)?.sum_all()?.backward()?;
        let gb = (b * &up)?.sum_all()?.backward()?;
        let da = ga.get(&x).expect("grad").to_vec3::<f32>()?;
        let db = gb.get(&x).expect("grad").to_vec3::<f32>()?;
        for (ra, rb) in da
            .iter()
            .flatten()
            .flatten()
            .zip(db.iter().flatten().flatten())
        {
            assert!((ra - rb).abs() < 1e-5);
        }
        Ok(())
    }

    #[test]
    fn out_of_range_index_is_an_error() -> Result<()> {
        let x = Tensor::zeros((1, 3, 2), DType::F32, &Device::Cpu)?;
        let ids = Tensor::from_vec(vec![3u32], (1, 1), &Device::Cpu)?;
        assert!(gather_tokens(&x, &ids).is_err());
        Ok(())
    }
}
