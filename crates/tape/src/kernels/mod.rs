//! Plain numeric kernels over row-major contiguous `f32` slices, with no graph knowledge.
//!
//! Every kernel is a free function taking input slices and a caller-provided output slice.
//! Kernels never allocate (the runtime calls them thousands of times per second), only keep
//! small on-stack index counters, and assume the caller has already validated shapes: a
//! mismatch is a bug in the caller and is caught by `debug_assert!`s, not reported.
//!
//! * [`gemm()`]: general matrix multiply, our own packed BLIS-style SGEMM (AVX-512 / AVX2+FMA /
//!   portable micro-kernels chosen at run time) reading transposed operands through strides;
//!   its packing buffer is thread-local and reused, so calls do not allocate.
//! * [`mod@elementwise`]: [`Unary`] / [`Binary`] maps, [`select`], [`clip`], [`scale_inplace`].
//! * [`mod@broadcast`]: numpy broadcasting ([`broadcast_shape`], [`Layout`], [`broadcast_to`]
//!   and its adjoint [`sum_to`]).
//! * [`mod@reduce`]: axis reductions over an `(outer, len, inner)` view, argmax, transpose, row copies.
//! * [`mod@softmax`]: numerically stable softmax / log-softmax / logsumexp over the last axis.
//! * [`mod@labels`]: integer class labels stored as `f32` (validation, pick, scatter, one-hot).
//! * `vmath`: `exp`, `ln`, `tanh` and the sigmoid in plain vectorisable arithmetic, used by the
//!   unary and softmax kernels instead of libm's one-element-per-call functions.
//!
//! The elementwise, broadcast, reduction and softmax kernels are compiled for AVX-512, AVX2 and
//! the baseline and pick the widest the CPU has at run time ([`simd_level`]), with bit-identical
//! results on every level (see `multiversion!`).

pub mod broadcast;
pub mod elementwise;
pub mod gemm;
mod gemm_kernels;
pub mod labels;
pub mod reduce;
mod simd;
pub mod softmax;
mod vmath;

pub use broadcast::*;
pub use elementwise::*;
pub use gemm::*;
pub use labels::*;
pub use reduce::*;
pub use simd::{simd_level, supported_simd_levels, SimdLevel};
pub use softmax::*;

/// A tensor shape (or a list of per-axis strides); rank ≤ 4 stays on the stack.
pub type Shape = smallvec::SmallVec<[usize; 4]>;

/// Per-axis index scratch used inside kernels; a larger inline capacity than [`Shape`] so that
/// kernels stay allocation-free up to rank 8.
pub(crate) type Idx = smallvec::SmallVec<[usize; 8]>;

/// Number of elements of a shape (1 for rank 0).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Which reduction a reduce kernel performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    /// Sum of the elements.
    Sum,
    /// Arithmetic mean.
    Mean,
    /// Largest element (its gradient goes to the first maximum).
    Max,
}

/// Softmax-family kernels over the last axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SoftmaxKind {
    /// `exp(x - logsumexp(x))`.
    Softmax,
    /// `x - logsumexp(x)`.
    LogSoftmax,
    /// `log(sum(exp(x)))`, dropping the last axis.
    LogSumExp,
}

// Text pieces the kernel calls' `describe` methods share (plan dumps, one instruction a line).

/// ` (layout)` for a broadcast operand, nothing for one read element by element.
pub(crate) fn describe_layout(l: &Layout) -> String {
    match l {
        Layout::Full => String::new(),
        Layout::Scalar => " (scalar)".into(),
        Layout::Row { period } => format!(" (row of {period})"),
        Layout::Col { inner } => format!(" (column, each ×{inner})"),
        Layout::Strided(strides) => format!(" (strides {:?})", strides.as_slice()),
    }
}

/// `[2×3]`.
pub(crate) fn describe_dims(shape: &[usize]) -> String {
    let d: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", d.join("×"))
}

pub(crate) fn describe_in_place(inplace: bool) -> &'static str {
    if inplace {
        " in place"
    } else {
        ""
    }
}
