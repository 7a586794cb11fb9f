//! An opt-in wall-time profile of compiled functions, per kind of instruction (in the spirit of
//! Theano's `config.profile`): how much of a training step goes to the GEMMs, the elementwise
//! kernels, the reductions and so on, summed over every call of every [`Function`] in the
//! process.
//!
//! Off by default. When off, each instruction costs one relaxed atomic load and a branch; when
//! on, two clock reads and two relaxed atomic additions. Instructions run inside a `scan`'s
//! loop are counted as one `scan` entry, not itemized.
//!
//! ```
//! use tape::{profile, Expr, Function, Tensor};
//! let x = Expr::input("x", 2);
//! let mut f = Function::compile(&[x.clone()], &[x.matmul(&x).sum()])?;
//! profile::reset();
//! profile::set_enabled(true);
//! f.run(&[Tensor::ones(&[4, 4]).view()])?;
//! profile::set_enabled(false);
//! let entries = profile::take();
//! assert!(entries.iter().any(|e| e.kind == "gemm" && e.calls >= 1));
//! # Ok::<(), tape::Error>(())
//! ```
//!
//! [`Function`]: crate::Function

use crate::instr::Call;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The kinds reported, one per instruction variant.
const KINDS: [&str; 26] = [
    "gemm",
    "unary",
    "binary",
    "axpy",
    "relu_grad",
    "select",
    "clip",
    "copy",
    "transpose",
    "reduce",
    "max_mask",
    "broadcast",
    "sum_to",
    "softmax",
    "argmax",
    "concat",
    "slice",
    "slice_grad",
    "pick",
    "scatter",
    "xent_grad",
    "one_hot",
    "dropout",
    "noise",
    "custom",
    "scan",
];

static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; KINDS.len()] = [const { AtomicU64::new(0) }; KINDS.len()];
static CALLS: [AtomicU64; KINDS.len()] = [const { AtomicU64::new(0) }; KINDS.len()];

/// One kind of instruction's totals since the last [`take`] or [`reset`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The kind: `gemm`, `unary` (elementwise with one operand), `binary`, `reduce`, ...
    pub kind: &'static str,
    /// How many instructions of this kind ran.
    pub calls: u64,
    /// Their summed wall time (GEMMs split across threads count once, by the caller's clock).
    pub time: Duration,
}

/// Turns profiling on or off for every compiled function of the process.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether profiling is on.
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Sets every total back to zero.
pub fn reset() {
    for (n, c) in NANOS.iter().zip(&CALLS) {
        n.store(0, Ordering::Relaxed);
        c.store(0, Ordering::Relaxed);
    }
}

/// The totals of the kinds that ran, longest first, and resets them.
pub fn take() -> Vec<Entry> {
    let mut entries: Vec<Entry> = KINDS
        .iter()
        .zip(NANOS.iter().zip(&CALLS))
        .map(|(&kind, (n, c))| Entry {
            kind,
            calls: c.swap(0, Ordering::Relaxed),
            time: Duration::from_nanos(n.swap(0, Ordering::Relaxed)),
        })
        .filter(|e| e.calls > 0)
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.time));
    entries
}

/// Runs `f`, the execution of `call`, adding its wall time to the call's kind when profiling
/// is on.
#[inline]
pub(crate) fn timed<R>(call: &Call, f: impl FnOnce() -> R) -> R {
    if !ENABLED.load(Ordering::Relaxed) {
        return f();
    }
    let start = Instant::now();
    let r = f();
    let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let k = kind(call);
    NANOS[k].fetch_add(nanos, Ordering::Relaxed);
    CALLS[k].fetch_add(1, Ordering::Relaxed);
    r
}

/// The index in [`KINDS`] of an instruction.
fn kind(call: &Call) -> usize {
    match call {
        // Packing a scan's loop-invariant operand ahead is part of its products' work.
        Call::Gemm(_) | Call::PackB(_) => 0,
        Call::Unary(_) => 1,
        Call::Binary(_) => 2,
        Call::Axpy(_) => 3,
        Call::ReluGrad(_) => 4,
        Call::Select(_) => 5,
        Call::Clip(_) => 6,
        Call::Copy(_) => 7,
        Call::Transpose(_) => 8,
        Call::Reduce(_) => 9,
        Call::MaxMask(_) => 10,
        Call::Broadcast(_) => 11,
        Call::SumTo(_) => 12,
        Call::Softmax(_) => 13,
        Call::Argmax(_) => 14,
        Call::Concat(_) => 15,
        Call::Slice(_) => 16,
        Call::SliceGrad(_) => 17,
        Call::Pick(_) => 18,
        Call::Scatter(_) => 19,
        Call::XentGrad(_) => 20,
        Call::OneHot(_) => 21,
        Call::Dropout(_) => 22,
        Call::Noise(_) => 23,
        Call::Custom(_) => 24,
        Call::Scan(_) => 25,
    }
}
