//! Tensor comparisons for tests (feature `candle`).

use candle_core::{DType, Tensor};

/// Every value of `t`, converted to `f32`, in row-major order.
///
/// # Panics
/// When candle cannot convert the tensor.
pub fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .unwrap_or_else(|e| panic!("cannot read a tensor of shape {:?}: {e}", t.dims()))
}

/// The largest absolute difference of two tensors of the same shape.
///
/// # Panics
/// When the shapes cannot be subtracted (candle's error names them).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_dtype(DType::F32))
        .and_then(|d| d.to_scalar::<f32>())
        .unwrap_or_else(|e| panic!("cannot compare {:?} with {:?}: {e}", a.dims(), b.dims()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn differences_by_hand() {
        let a = Tensor::from_slice(&[1f32, -2.0, 3.5], 3, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{e}"));
        let b = Tensor::from_slice(&[1f32, 0.5, 3.0], 3, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(max_abs_diff(&a, &b), 2.5);
        let h = a.to_dtype(DType::F16).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f32s(&h), [1.0, -2.0, 3.5]);
    }
}
