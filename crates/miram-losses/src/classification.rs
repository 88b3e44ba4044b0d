//! Classification losses of fine-tuning, as PyTorch defines them.

use candle_core::{DType, Tensor, D};

use crate::{Error, Result};

/// Cross-entropy with optional class weights, PyTorch's `F.cross_entropy(logits, y, weight)`:
/// `sum_i w[y_i] * nll_i / sum_i w[y_i]` (the plain mean without weights).
///
/// A label `>= K` is an error ([`Error::LabelOutOfRange`]) when the labels are on the CPU;
/// on other devices they are not read back (that would stall the device every step), and
/// the caller guarantees the range.
///
/// # Shapes
/// - `logits`: `[N, K]`, `labels`: `[N]` (`u32`), `weights`: `K` values; returns a scalar
pub fn cross_entropy(logits: &Tensor, labels: &Tensor, weights: Option<&[f32]>) -> Result<Tensor> {
    let (n, k) = logits.dims2()?;
    if labels.dims() != [n] {
        return Err(Error::shape_mismatch(
            "labels (one per sample)",
            &[n],
            labels.dims(),
        ));
    }
    let labels = labels.to_dtype(DType::U32)?;
    // Reading the labels back from a GPU would stop its queue in the middle of every step:
    // there the caller checks them on the host (the training loader's labels come from the
    // task's class list).
    if labels.device().is_cpu() {
        let max = labels.max(0)?.to_scalar::<u32>()? as usize;
        if max >= k {
            return Err(Error::LabelOutOfRange {
                label: max,
                classes: k,
            });
        }
    }
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?; // [n, k]
    let nll = logp.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?; // [n]
    match weights {
        None => Ok(nll.mean_all()?),
        Some(w) => {
            if w.len() != k {
                return Err(Error::CountMismatch {
                    what: "class weights (one per class)",
                    expected: k,
                    got: w.len(),
                });
            }
            let w = Tensor::from_slice(w, k, logits.device())?.to_dtype(logits.dtype())?;
            let wi = w.index_select(&labels, 0)?; // [n]
            Ok((nll * &wi)?.sum_all()?.div(&wi.sum_all()?)?)
        }
    }
}

/// Binary cross-entropy with logits, averaged over every element (PyTorch's
/// `F.binary_cross_entropy_with_logits`), in the stable form
/// `max(x, 0) - x y + log(1 + exp(-|x|))`.
///
/// # Shapes
/// - `logits`, `targets`: `[N, K]`; returns a scalar
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.dims() != targets.dims() {
        return Err(Error::shape_mismatch(
            "targets (the logits' shape)",
            logits.dims(),
            targets.dims(),
        ));
    }
    let y = targets.to_dtype(logits.dtype())?;
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let l = ((logits.relu()? - (logits * &y)?)? + softplus)?;
    Ok(l.mean_all()?)
}
