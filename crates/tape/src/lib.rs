//! tape: tensors, kernels, symbolic expression graphs, reverse-mode gradients, compiled functions.
pub mod kernels;
