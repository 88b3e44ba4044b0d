//! The device audit of a training step: every tensor that a step hands the model (the
//! batch's images, high-resolution targets and labels), every trained parameter, and every
//! tensor of the loss's autograd graph (the masking noise, the masks, the drop-path masks,
//! the targets and every activation in between) must live on the run's device.
//!
//! The loop runs it on the first optimiser step of every run and resume (it reads tensor
//! metadata only: no copy, no synchronisation). On a GPU a tensor left on the CPU would
//! otherwise be a candle error deep inside an op, or a silent host round trip; here it is
//! an error naming the tensor. The [`DeviceOf`] trait is the seam that a test mocks (a
//! machine without a GPU has only one device).

use candle_core::{DeviceLocation, Tensor};

use crate::{Error, Result};

/// Where a tensor lives.
pub trait DeviceOf: Send + Sync {
    /// The location of `t`.
    fn device_of(&self, t: &Tensor) -> DeviceLocation;
}

/// The tensor's own device: what runs use.
#[derive(Debug, Clone, Copy, Default)]
pub struct TensorDevice;

impl DeviceOf for TensorDevice {
    fn device_of(&self, t: &Tensor) -> DeviceLocation {
        t.device().location()
    }
}

/// Checks tensors against the run's device, counting what it checked.
pub(crate) struct Audit<'a> {
    of: &'a dyn DeviceOf,
    expected: DeviceLocation,
    checked: usize,
}

impl<'a> Audit<'a> {
    /// An audit against `expected`.
    pub(crate) fn new(of: &'a dyn DeviceOf, expected: DeviceLocation) -> Self {
        Self {
            of,
            expected,
            checked: 0,
        }
    }

    /// `t` (named `what` in the error) is on the run's device.
    pub(crate) fn tensor(&mut self, what: &str, t: &Tensor) -> Result<()> {
        self.checked += 1;
        let found = self.of.device_of(t);
        if found == self.expected {
            Ok(())
        } else {
            Err(Error::WrongDevice {
                what: what.to_string(),
                shape: t.dims().to_vec(),
                expected: format!("{:?}", self.expected),
                found: format!("{found:?}"),
            })
        }
    }

    /// Every tensor of `loss`'s autograd graph (`what` names the graph in the error).
    pub(crate) fn graph(&mut self, what: &str, loss: &Tensor) -> Result<()> {
        self.tensor(what, loss)?;
        for (i, node) in loss.sorted_nodes().into_iter().enumerate() {
            self.tensor(&format!("{what}, autograd node {i}"), node)?;
        }
        Ok(())
    }

    /// How many tensors were checked.
    #[cfg(test)]
    pub(crate) fn checked(&self) -> usize {
        self.checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Places tensors of one shape on another (pretended) device.
    struct Elsewhere(Vec<usize>);

    impl DeviceOf for Elsewhere {
        fn device_of(&self, t: &Tensor) -> DeviceLocation {
            if t.dims() == self.0.as_slice() {
                DeviceLocation::Cuda { gpu_id: 7 }
            } else {
                t.device().location()
            }
        }
    }

    #[test]
    fn a_graph_node_elsewhere_is_named() -> Result<()> {
        let w = Var::from_slice(&[1f32, 2.0, 3.0], 3, &Device::Cpu)?;
        let x = Tensor::ones((2, 3), candle_core::DType::F32, &Device::Cpu)?;
        let loss = x.broadcast_mul(w.as_tensor())?.sum_all()?;
        let mut ok = Audit::new(&TensorDevice, DeviceLocation::Cpu);
        ok.graph("loss", &loss)?;
        assert!(ok.checked() >= 3, "{}", ok.checked()); // the loss, the product, the weight
        let elsewhere = Elsewhere(vec![2, 3]);
        let mut audit = Audit::new(&elsewhere, DeviceLocation::Cpu);
        let err = audit.graph("loss", &loss).unwrap_err().to_string();
        assert!(
            err.contains("autograd node") && err.contains("[2, 3]"),
            "{err}"
        );
        assert!(err.contains("Cuda { gpu_id: 7 }"), "{err}");
        Ok(())
    }
}
