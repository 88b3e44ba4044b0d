//! Linear and LayerNorm layers with MAE's initialisation (xavier-uniform weights, zero
//! biases; LayerNorm weight 1, bias 0), named as PyTorch names them (`weight`, `bias`).

use candle_core::Tensor;

use crate::ops;
use crate::vb::{Init, VarBuilder};
use crate::Result;

/// `y = x W^T + b` (PyTorch `nn.Linear`).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// A linear layer with a bias; `weight` is `[out_dim, in_dim]`.
    pub fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.param(&[out_dim, in_dim], "weight", Init::XavierUniform)?;
        let bias = Some(vb.param(&[out_dim], "bias", Init::Const(0.0))?);
        Ok(Self { weight, bias })
    }

    /// A linear layer without a bias.
    pub fn no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.param(&[out_dim, in_dim], "weight", Init::XavierUniform)?;
        Ok(Self { weight, bias: None })
    }

    /// A layer from given tensors (`weight` `[out, in]`, `bias` `[out]`).
    pub fn from_weights(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// The weight, `[out_dim, in_dim]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, `[out_dim]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Applies the layer to the last dimension.
    ///
    /// # Shapes
    /// - `x`: `[..., in_dim]`, returns `[..., out_dim]`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(ops::linear(x, &self.weight, self.bias.as_ref())?)
    }
}

/// LayerNorm over the last dimension (eps 1e-6 in every MIRAM block), differentiable.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// A LayerNorm of width `dim`.
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.param(&[dim], "weight", Init::Const(1.0))?;
        let bias = vb.param(&[dim], "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias, eps })
    }

    /// The weight, `[dim]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, `[dim]`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// The epsilon added to the variance.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// Normalises the last dimension.
    ///
    /// # Shapes
    /// - `x`: `[..., dim]`, returns `[..., dim]`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(ops::layer_norm(x, &self.weight, &self.bias, self.eps)?)
    }
}
