//! Shared test support: proptest strategies for shapes and tensors, deterministic random
//! tensors, and the one tolerance rule the workspace's tests compare floats with.
//!
//! Dev-only. The module exists under `cfg(test)` (tape's own unit tests, as `crate::testing`)
//! and behind the `testing` cargo feature, which also turns on the optional `proptest`
//! dependency; `optim`, `nets` and the root package enable that feature under
//! `[dev-dependencies]` only, so a release build of the library or the binary never compiles
//! this module nor proptest.
//!
//! The strategies keep the exact generation structure the tests used when each had its own
//! copy, so a recorded `proptest-regressions` seed still replays the case it recorded.
//!
//! # Tolerance
//!
//! [`close`] accepts `got` for `want` when `|got − want| ≤ rtol·|want| + atol`, computed in
//! `f64`: `rtol` bounds the error relative to the reference, `atol` is the floor that lets
//! values near zero (where any relative bound is too tight) pass. Non-finite references are
//! matched exactly: a NaN wants a NaN, an infinity (or an `f64` beyond the `f32` range, which
//! must overflow) wants the same infinity.

use std::ops::Range;
use std::ops::RangeInclusive;

use proptest::collection::SizeRange;
use proptest::prelude::*;

use crate::rng::Rng;
use crate::tensor::Tensor;

/// The largest rank the shape strategies draw: the kernels' inline shape capacity.
pub const MAX_RANK: usize = 4;

// ---------------------------------------------------------------------------------------------
// Plan dumps

/// How many of these lines of a plan dump (`Function::debug_plan`) compute op `name`. Each line
/// ends with `   # %k op`, the graph node it computes; an op printed with an argument
/// (`axpy(-0.1)`, `matmul(Bᵀ)`) counts under the name before the parenthesis.
///
/// ```
/// let plan = "buf0 <- exp arg:x [4]   # %1 exp\nbuf0 <- gemm 2x4x3 (buf0, param:w)   # %3 matmul(Bᵀ)";
/// assert_eq!(tape::testing::count_ops(plan.lines(), "exp"), 1);
/// assert_eq!(tape::testing::count_ops(plan.lines(), "matmul"), 1);
/// assert_eq!(tape::testing::count_ops(plan.lines(), "mat"), 0);
/// ```
pub fn count_ops<'a>(lines: impl IntoIterator<Item = &'a str>, name: &str) -> usize {
    lines
        .into_iter()
        .filter_map(|l| l.rsplit_once("   # %"))
        .filter(|(_, node)| {
            node.split_once(' ')
                .is_some_and(|(_, op)| op.split('(').next() == Some(name))
        })
        .count()
}

// ---------------------------------------------------------------------------------------------
// Tolerance

/// Whether `got` (an `f32` result) is within `rtol·|want| + atol` of the reference `want`; see
/// the [module docs](self#tolerance) for non-finite references.
pub fn close(got: f32, want: f64, rtol: f64, atol: f64) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    if want.is_infinite() || want.abs() > f32::MAX as f64 {
        return got as f64 == want || (got.is_infinite() && got.signum() as f64 == want.signum());
    }
    (got as f64 - want).abs() <= rtol * want.abs() + atol
}

/// Asserts [`close`] element by element (and equal lengths), naming `what`, the first element
/// out of tolerance and the whole of `got` when it fails.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f64], rtol: f64, atol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            close(g, w, rtol, atol),
            "{what}[{i}]: got {g}, expected {w} (rtol {rtol}, atol {atol})\n  all: {got:?}"
        );
    }
}

/// Asserts that two tensors have the same shape and [`close`] values, `want` the reference.
#[track_caller]
pub fn assert_close_tensor(got: &Tensor, want: &Tensor, rtol: f64, atol: f64, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let want: Vec<f64> = want.data().iter().map(|&v| v as f64).collect();
    assert_close(got.data(), &want, rtol, atol, what);
}

// ---------------------------------------------------------------------------------------------
// Deterministic tensors

/// A tensor of standard normal values drawn from a fresh [`Rng`] seeded with `seed`.
pub fn normal(shape: &[usize], seed: u64) -> Tensor {
    let mut t = Tensor::zeros(shape);
    Rng::new(seed).fill_normal(t.data_mut(), 0.0, 1.0);
    t
}

/// A tensor of normal values with mean 0 and deviation `std`, drawn next from `rng` (so several
/// tensors drawn in turn from one generator are all different).
pub fn normal_from(rng: &mut Rng, shape: &[usize], std: f32) -> Tensor {
    let mut t = Tensor::zeros(shape);
    rng.fill_normal(t.data_mut(), 0.0, std);
    t
}

/// A `rows × cols` weight matrix with Glorot's deviation `sqrt(2 / (rows + cols))`, drawn next
/// from `rng` as [`normal_from`] does.
pub fn glorot(rng: &mut Rng, rows: usize, cols: usize) -> Tensor {
    normal_from(rng, &[rows, cols], (2.0 / (rows + cols) as f32).sqrt())
}

/// Irregular fixed values in [-1, 1], `sin((i + 1)·0.7 + salt)` at flat index `i`: weights
/// under which every element of an output counts differently, with no random generator.
pub fn weights(shape: &[usize], salt: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| ((i as f32 + 1.0) * 0.7 + salt).sin())
        .collect();
    Tensor::new(shape, data).expect("one value per element")
}

/// `len` fixed values `sin(i·0.37)·3 + 0.25` in about [-2.75, 3.25], distinct for small `i`:
/// kernel inputs where a misplaced index shows.
pub fn wave(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (i as f32 * 0.37).sin() * 3.0 + 0.25)
        .collect()
}

/// `n` class labels `(7·i + 3) mod classes` as a vector, with no random generator: unsorted,
/// and every class appears once `n ≥ classes` (for `classes` not a multiple of 7). `classes`
/// must be positive.
pub fn labels(n: usize, classes: usize) -> Tensor {
    Tensor::vector(
        &(0..n)
            .map(|i| ((i * 7 + 3) % classes) as f32)
            .collect::<Vec<_>>(),
    )
}

// ---------------------------------------------------------------------------------------------
// Shape strategies

/// Shapes of rank `0..=MAX_RANK` with each dim drawn from `dims` (include 0 and 1 where the code
/// under test accepts empty and stretched axes).
pub fn shape(dims: RangeInclusive<usize>) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(dims, 0..=MAX_RANK)
}

/// A shape that broadcasts to `to`: a random right-aligned suffix of it with random dims set
/// to 1.
pub fn broadcasting_to(to: Vec<usize>) -> impl Strategy<Value = Vec<usize>> {
    let r = to.len();
    (0..=r, prop::collection::vec(any::<bool>(), r)).prop_map(move |(keep, ones)| {
        (r - keep..r)
            .map(|d| if ones[d] { 1 } else { to[d] })
            .collect()
    })
}

/// `(to, a, b)`: an output shape of rank `0..=MAX_RANK` with dims `1..=4`, and two operand shapes
/// that each broadcast to it (their own broadcast may be smaller than `to`).
pub fn broadcast_shapes() -> impl Strategy<Value = (Vec<usize>, Vec<usize>, Vec<usize>)> {
    shape(1..=4).prop_flat_map(|to| {
        (
            Just(to.clone()),
            broadcasting_to(to.clone()),
            broadcasting_to(to),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Value and tensor strategies

/// `len` values drawn uniformly from `range`.
pub fn values(range: Range<f32>, len: impl Into<SizeRange>) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(range, len)
}

/// `len` values whose magnitudes are drawn from `magnitudes` (keep it above zero) with random
/// signs: inputs kept off zero, where ops have kinks or poles.
pub fn off_zero(
    magnitudes: Range<f32>,
    len: impl Into<SizeRange>,
) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec((magnitudes, any::<bool>()), len)
        .prop_map(|v| v.into_iter().map(|(m, s)| if s { m } else { -m }).collect())
}

/// A matrix of 1 to 4 rows and columns with values drawn from `lo..hi`.
pub fn matrix(lo: f32, hi: f32) -> impl Strategy<Value = Tensor> {
    (1usize..5, 1usize..5).prop_flat_map(move |(r, c)| {
        prop::collection::vec(lo..hi, r * c)
            .prop_map(move |v| Tensor::new(&[r, c], v).expect("r·c values"))
    })
}

/// As [`matrix`] with magnitudes from `gap..hi` and random signs: at least `gap` away from zero.
pub fn matrix_off_zero(gap: f32, hi: f32) -> impl Strategy<Value = Tensor> {
    matrix(gap, hi).prop_flat_map(|t| {
        let n = t.len();
        prop::collection::vec(any::<bool>(), n).prop_map(move |signs| {
            let data = t
                .data()
                .iter()
                .zip(&signs)
                .map(|(&v, &s)| if s { v } else { -v })
                .collect();
            Tensor::new(t.shape(), data).expect("same shape")
        })
    })
}

/// Two matrices of one shape (as [`matrix`]), values from `lo..hi`.
pub fn same_shape_pair(lo: f32, hi: f32) -> impl Strategy<Value = (Tensor, Tensor)> {
    matrix(lo, hi).prop_flat_map(move |a| {
        let shape = a.shape().to_vec();
        let n = a.len();
        prop::collection::vec(lo..hi, n)
            .prop_map(move |v| (a.clone(), Tensor::new(&shape, v).expect("same shape")))
    })
}

/// Two tensors whose shapes broadcast together (drawn as by [`broadcast_shapes`]), values from
/// `lo..hi`.
pub fn broadcast_pair(lo: f32, hi: f32) -> impl Strategy<Value = (Tensor, Tensor)> {
    broadcast_shapes().prop_flat_map(move |(_, a, b)| {
        let (na, nb): (usize, usize) = (a.iter().product(), b.iter().product());
        (values(lo..hi, na), values(lo..hi, nb)).prop_map(move |(va, vb)| {
            (
                Tensor::new(&a, va).expect("one value per element"),
                Tensor::new(&b, vb).expect("one value per element"),
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::broadcast_shape;

    #[test]
    fn close_is_relative_plus_absolute() {
        // 1.0 against 1.01: an error of 0.01 = 1% of the reference.
        assert!(close(1.0, 1.01, 0.01, 0.0));
        assert!(!close(1.0, 1.01, 0.005, 0.0));
        assert!(close(1.0, 1.01, 0.005, 0.0051));
        // Near zero only atol helps.
        assert!(!close(1e-7, 0.0, 0.5, 0.0));
        assert!(close(1e-7, 0.0, 0.0, 1e-6));
    }

    #[test]
    fn non_finite_references_match_exactly() {
        assert!(close(f32::NAN, f64::NAN, 0.0, 0.0));
        assert!(!close(0.0, f64::NAN, 1.0, 1.0));
        assert!(!close(f32::NAN, 0.0, 1.0, 1.0));
        assert!(close(f32::INFINITY, f64::INFINITY, 0.0, 0.0));
        assert!(!close(f32::NEG_INFINITY, f64::INFINITY, 1.0, 1.0));
        assert!(!close(f32::MAX, f64::INFINITY, 1.0, 1.0));
        // Beyond the f32 range the f32 result must have overflowed.
        assert!(close(f32::NEG_INFINITY, -1e39, 0.0, 0.0));
        assert!(!close(-f32::MAX, -1e39, 1.0, 0.0));
    }

    #[test]
    fn normal_is_seeded_and_normal_from_continues_the_stream() {
        assert_eq!(normal(&[3, 2], 5), normal(&[3, 2], 5));
        assert_ne!(normal(&[3, 2], 5), normal(&[3, 2], 6));
        let mut rng = Rng::new(5);
        let first = normal_from(&mut rng, &[3, 2], 1.0);
        assert_eq!(first, normal(&[3, 2], 5));
        assert_ne!(normal_from(&mut rng, &[3, 2], 1.0), first);
        // Glorot's deviation for 6 + 2 = 8 fan: 0.5, so the draw is half of a standard one.
        let half: Vec<f32> = normal(&[6, 2], 9).data().iter().map(|v| v * 0.5).collect();
        assert_eq!(glorot(&mut Rng::new(9), 6, 2).data(), &half[..]);
    }

    #[test]
    fn labels_cycle_through_every_class() {
        assert_eq!(labels(6, 4).data(), &[3.0, 2.0, 1.0, 0.0, 3.0, 2.0]);
        assert_eq!(labels(0, 3).shape(), &[0]);
    }

    #[test]
    fn weights_and_wave_follow_their_formulas() {
        let w = weights(&[2, 2], 0.3);
        assert_eq!(w.shape(), &[2, 2]);
        assert_eq!(w.data()[3], (4.0f32 * 0.7 + 0.3).sin());
        assert_eq!(wave(3)[2], (2.0f32 * 0.37).sin() * 3.0 + 0.25);
    }

    proptest! {
        #[test]
        fn drawn_shapes_broadcast_as_promised((to, a, b) in broadcast_shapes()) {
            prop_assert!(to.len() <= MAX_RANK);
            prop_assert_eq!(broadcast_shape(&a, &to).map(|s| s.to_vec()), Some(to.clone()));
            prop_assert_eq!(broadcast_shape(&b, &to).map(|s| s.to_vec()), Some(to.clone()));
        }

        #[test]
        fn drawn_tensors_keep_their_ranges(
            m in matrix_off_zero(0.5, 2.0),
            (p, q) in same_shape_pair(-1.0, 1.0),
            (a, b) in broadcast_pair(-1.0, 1.0),
            v in off_zero(0.2..2.0, 0..10),
        ) {
            prop_assert!(m.data().iter().all(|x| (0.5..2.0).contains(&x.abs())));
            prop_assert_eq!(p.shape(), q.shape());
            prop_assert!(p.data().iter().chain(q.data()).all(|x| (-1.0..1.0).contains(x)));
            prop_assert!(broadcast_shape(a.shape(), b.shape()).is_some());
            prop_assert!(v.iter().all(|x| (0.2..2.0).contains(&x.abs())));
        }
    }
}

/// A global allocator for tests that bound memory: it counts the bytes live on each thread and
/// their peak. A test binary installs it with
/// `#[global_allocator] static GLOBAL: tape::testing::PeakAllocator = tape::testing::PeakAllocator;`
/// and measures a call between [`start_peak`] and [`peak_since`].
pub struct PeakAllocator;

thread_local! {
    static LIVE: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
    static PEAK: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

fn grow(bytes: isize) {
    // `try_with`: the thread-locals may already be gone while a thread shuts down.
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + bytes);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; only counters change.
unsafe impl std::alloc::GlobalAlloc for PeakAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        grow(layout.size() as isize);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        grow(-(layout.size() as isize));
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        grow(new_size as isize - layout.size() as isize);
        // SAFETY: as above.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

/// Starts measuring this thread's peak from the bytes live now; returns that baseline.
pub fn start_peak() -> isize {
    let base = LIVE.with(std::cell::Cell::get);
    PEAK.with(|p| p.set(base));
    base
}

/// The most bytes live at once on this thread since [`start_peak`] returned `base`, above it.
pub fn peak_since(base: isize) -> usize {
    (PEAK.with(std::cell::Cell::get) - base).max(0) as usize
}
