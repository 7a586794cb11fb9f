//! Elementwise kernels: [`Unary`] and [`Binary`] maps (with broadcasting through [`Layout`]),
//! [`select`], [`clip`] and [`scale_inplace`].

use super::broadcast::{broadcast_to, for_each_row, last_step, row_len, Layout};
use super::vmath::{self, sigmoid};
use super::{numel, Idx};

/// A one-argument elementwise function; see [`unary_scalar`] for the exact definitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unary {
    /// `-x`
    Neg,
    /// `eˣ` (vectorised, within 1 ulp: see `kernels/vmath.rs`).
    Exp,
    /// Natural logarithm (vectorised, within 1 ulp).
    Log,
    /// Square root.
    Sqrt,
    /// `|x|`
    Abs,
    /// -1, 0 or 1 (NaN stays NaN).
    Sign,
    /// `1 / (1 + e⁻ˣ)`, saturating to exactly 0 / 1 for large |x| (vectorised, within 2.5 ulp).
    Sigmoid,
    /// Hyperbolic tangent (vectorised, within 1.5 ulp).
    Tanh,
    /// `max(x, 0)` (NaN stays NaN).
    Relu,
    /// `ln(1 + eˣ)`, evaluated as `max(x, 0) + ln(1 + e^-|x|)` so it never overflows.
    Softplus,
    /// `x²`
    Square,
    /// `1 / x`
    Recip,
    /// `x / (1 + |x|)`: a sigmoid-shaped squashing into (−1, 1) with polynomial tails.
    Softsign,
}

impl Unary {
    /// Every unary op, for tests and tools that go through all of them.
    pub const ALL: [Unary; 13] = [
        Unary::Neg,
        Unary::Exp,
        Unary::Log,
        Unary::Sqrt,
        Unary::Abs,
        Unary::Sign,
        Unary::Sigmoid,
        Unary::Tanh,
        Unary::Relu,
        Unary::Softplus,
        Unary::Square,
        Unary::Recip,
        Unary::Softsign,
    ];
}

#[inline(always)]
fn sign(x: f32) -> f32 {
    // Falling through to `x` keeps ±0 → ±0 and NaN → NaN.
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
}

#[inline(always)]
fn relu(x: f32) -> f32 {
    // Written so that NaN propagates (f32::max would silently turn NaN into 0).
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

#[inline(always)]
fn softplus(x: f32) -> f32 {
    relu(x) + (-x.abs()).exp().ln_1p()
}

/// Expands `$body` once per [`Unary`] variant with `$f` bound to that variant's closure, so the
/// `match` happens once per call and each arm gets its own monomorphised, vectorisable loop.
macro_rules! with_unary {
    ($op:expr, |$f:ident| $body:expr) => {
        match $op {
            Unary::Neg => {
                let $f = |x: f32| -x;
                $body
            }
            Unary::Exp => {
                let $f = vmath::exp;
                $body
            }
            Unary::Log => {
                let $f = vmath::ln;
                $body
            }
            Unary::Sqrt => {
                let $f = |x: f32| x.sqrt();
                $body
            }
            Unary::Abs => {
                let $f = |x: f32| x.abs();
                $body
            }
            Unary::Sign => {
                let $f = sign;
                $body
            }
            Unary::Sigmoid => {
                let $f = sigmoid;
                $body
            }
            Unary::Tanh => {
                let $f = vmath::tanh;
                $body
            }
            Unary::Relu => {
                let $f = relu;
                $body
            }
            Unary::Softplus => {
                let $f = softplus;
                $body
            }
            Unary::Square => {
                let $f = |x: f32| x * x;
                $body
            }
            Unary::Recip => {
                let $f = |x: f32| 1.0 / x;
                $body
            }
            Unary::Softsign => {
                let $f = |x: f32| x / (1.0 + x.abs());
                $body
            }
        }
    };
}

/// The reference definition of every [`Unary`] op on one value.
pub fn unary_scalar(op: Unary, x: f32) -> f32 {
    with_unary!(op, |f| f(x))
}

#[inline(always)]
fn map<F: Fn(f32) -> f32>(x: &[f32], out: &mut [f32], f: F) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f(v);
    }
}

#[inline(always)]
fn map_inplace<F: Fn(f32) -> f32>(x: &mut [f32], f: F) {
    for v in x.iter_mut() {
        *v = f(*v);
    }
}

crate::multiversion! {
    /// `out[i] = op(x[i])`; `x` and `out` have the same length.
    pub fn unary / unary_at(op: Unary, x: &[f32], out: &mut [f32]) {
        debug_assert_eq!(x.len(), out.len());
        with_unary!(op, |f| map(x, out, f))
    }
}

crate::multiversion! {
    /// `x[i] = op(x[i])`.
    pub fn unary_inplace / unary_inplace_at(op: Unary, x: &mut [f32]) {
        with_unary!(op, |f| map_inplace(x, f))
    }
}

/// A two-argument elementwise function; see [`binary_scalar`] for the exact definitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binary {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
    /// `a.powf(b)`
    Pow,
    /// `a.max(b)` (a NaN operand yields the other one).
    Maximum,
    /// `a.min(b)` (a NaN operand yields the other one).
    Minimum,
    /// `a > b` as 1.0 / 0.0.
    Gt,
    /// `a >= b` as 1.0 / 0.0.
    Ge,
    /// `a < b` as 1.0 / 0.0.
    Lt,
    /// `a <= b` as 1.0 / 0.0.
    Le,
    /// `a == b` as 1.0 / 0.0.
    Eq,
    /// `a != b` as 1.0 / 0.0 (so NaN != NaN gives 1.0).
    Ne,
}

impl Binary {
    /// Every binary op, for tests and tools that go through all of them.
    pub const ALL: [Binary; 13] = [
        Binary::Add,
        Binary::Sub,
        Binary::Mul,
        Binary::Div,
        Binary::Pow,
        Binary::Maximum,
        Binary::Minimum,
        Binary::Gt,
        Binary::Ge,
        Binary::Lt,
        Binary::Le,
        Binary::Eq,
        Binary::Ne,
    ];
}

#[inline(always)]
fn b2f(c: bool) -> f32 {
    if c {
        1.0
    } else {
        0.0
    }
}

/// Same idea as `with_unary!`, for [`Binary`].
macro_rules! with_binary {
    ($op:expr, |$f:ident| $body:expr) => {
        match $op {
            Binary::Add => {
                let $f = |a: f32, b: f32| a + b;
                $body
            }
            Binary::Sub => {
                let $f = |a: f32, b: f32| a - b;
                $body
            }
            Binary::Mul => {
                let $f = |a: f32, b: f32| a * b;
                $body
            }
            Binary::Div => {
                let $f = |a: f32, b: f32| a / b;
                $body
            }
            Binary::Pow => {
                let $f = |a: f32, b: f32| a.powf(b);
                $body
            }
            Binary::Maximum => {
                let $f = |a: f32, b: f32| a.max(b);
                $body
            }
            Binary::Minimum => {
                let $f = |a: f32, b: f32| a.min(b);
                $body
            }
            Binary::Gt => {
                let $f = |a: f32, b: f32| b2f(a > b);
                $body
            }
            Binary::Ge => {
                let $f = |a: f32, b: f32| b2f(a >= b);
                $body
            }
            Binary::Lt => {
                let $f = |a: f32, b: f32| b2f(a < b);
                $body
            }
            Binary::Le => {
                let $f = |a: f32, b: f32| b2f(a <= b);
                $body
            }
            Binary::Eq => {
                let $f = |a: f32, b: f32| b2f(a == b);
                $body
            }
            Binary::Ne => {
                let $f = |a: f32, b: f32| b2f(a != b);
                $body
            }
        }
    };
}

/// The reference definition of every [`Binary`] op on one pair of values.
pub fn binary_scalar(op: Binary, a: f32, b: f32) -> f32 {
    with_binary!(op, |f| f(a, b))
}

/// `out[i] = f(x[i], y read through ly at i)`, where `x` and `out` are in output order.
#[inline(always)]
fn zip_full<F: Fn(f32, f32) -> f32>(
    to: &[usize],
    x: &[f32],
    y: &[f32],
    ly: &Layout,
    out: &mut [f32],
    f: F,
) {
    let n = out.len();
    debug_assert_eq!(n, numel(to));
    let x = &x[..n];
    if n == 0 {
        return;
    }
    match ly {
        Layout::Full => {
            for ((o, &a), &b) in out.iter_mut().zip(x).zip(&y[..n]) {
                *o = f(a, b);
            }
        }
        Layout::Scalar => {
            let b = y[0];
            map(x, out, |a| f(a, b));
        }
        Layout::Row { period } => {
            let y = &y[..*period];
            for (oc, xc) in out.chunks_exact_mut(*period).zip(x.chunks_exact(*period)) {
                for ((o, &a), &b) in oc.iter_mut().zip(xc).zip(y) {
                    *o = f(a, b);
                }
            }
        }
        Layout::Col { inner } => {
            for ((oc, xc), &b) in out
                .chunks_exact_mut(*inner)
                .zip(x.chunks_exact(*inner))
                .zip(y)
            {
                map(xc, oc, |a| f(a, b));
            }
        }
        Layout::Strided(st) => {
            let len = row_len(to);
            let step = last_step(st);
            for_each_row(to, [st], |o, [yb]| {
                let oc = &mut out[o..o + len];
                let xc = &x[o..o + len];
                match step {
                    0 => {
                        let b = y[yb];
                        map(xc, oc, |a| f(a, b));
                    }
                    1 => {
                        for ((o, &a), &b) in oc.iter_mut().zip(xc).zip(&y[yb..yb + len]) {
                            *o = f(a, b);
                        }
                    }
                    _ => {
                        for (j, (o, &a)) in oc.iter_mut().zip(xc).enumerate() {
                            *o = f(a, y[yb + j * step]);
                        }
                    }
                }
            });
        }
    }
}

/// `x[i] = f(x[i], y read through ly at i)`, where `x` is in output order.
#[inline(always)]
fn zip_assign<F: Fn(f32, f32) -> f32>(to: &[usize], x: &mut [f32], y: &[f32], ly: &Layout, f: F) {
    let n = x.len();
    debug_assert_eq!(n, numel(to));
    if n == 0 {
        return;
    }
    match ly {
        Layout::Full => {
            for (a, &b) in x.iter_mut().zip(&y[..n]) {
                *a = f(*a, b);
            }
        }
        Layout::Scalar => {
            let b = y[0];
            map_inplace(x, |a| f(a, b));
        }
        Layout::Row { period } => {
            let y = &y[..*period];
            for xc in x.chunks_exact_mut(*period) {
                for (a, &b) in xc.iter_mut().zip(y) {
                    *a = f(*a, b);
                }
            }
        }
        Layout::Col { inner } => {
            for (xc, &b) in x.chunks_exact_mut(*inner).zip(y) {
                map_inplace(xc, |a| f(a, b));
            }
        }
        Layout::Strided(st) => {
            let len = row_len(to);
            let step = last_step(st);
            for_each_row(to, [st], |o, [yb]| {
                let xc = &mut x[o..o + len];
                match step {
                    0 => {
                        let b = y[yb];
                        map_inplace(xc, |a| f(a, b));
                    }
                    1 => {
                        for (a, &b) in xc.iter_mut().zip(&y[yb..yb + len]) {
                            *a = f(*a, b);
                        }
                    }
                    _ => {
                        for (j, a) in xc.iter_mut().enumerate() {
                            *a = f(*a, y[yb + j * step]);
                        }
                    }
                }
            });
        }
    }
}

crate::multiversion! {
    /// `out = op(a, b)` with each operand read through its [`Layout`] into the output shape
    /// `out_shape` (`out.len() == numel(out_shape)`).
    pub fn binary / binary_at(
        op: Binary,
        out_shape: &[usize],
        a: &[f32],
        la: &Layout,
        b: &[f32],
        lb: &Layout,
        out: &mut [f32],
    ) {
        with_binary!(op, |f| {
            if *la == Layout::Full {
                zip_full(out_shape, a, b, lb, out, f)
            } else if *lb == Layout::Full {
                zip_full(out_shape, b, a, la, out, |y, x| f(x, y))
            } else {
                // Neither operand is in output order: materialise `a` in `out` first, which costs
                // one extra pass but keeps a single, specialised two-operand loop per layout.
                broadcast_to(a, la, out_shape, out);
                zip_assign(out_shape, out, b, lb, f)
            }
        })
    }
}

crate::multiversion! {
    /// Same as [`binary`], with the result written over `a` (requires `*la == Layout::Full`, i.e. `a`
    /// already has the output shape).
    pub fn binary_inplace_lhs / binary_inplace_lhs_at(op: Binary, out_shape: &[usize], a: &mut [f32], b: &[f32], lb: &Layout) {
        with_binary!(op, |f| zip_assign(out_shape, a, b, lb, f))
    }
}

crate::multiversion! {
    /// Same as [`binary`], with the result written over `b` (requires `*lb == Layout::Full`), still
    /// computing `op(a, b)`.
    pub fn binary_inplace_rhs / binary_inplace_rhs_at(op: Binary, out_shape: &[usize], a: &[f32], la: &Layout, b: &mut [f32]) {
        with_binary!(op, |f| zip_assign(out_shape, b, a, la, |y, x| f(x, y)))
    }
}

crate::multiversion! {
    /// `out = if cond != 0 { a } else { b }`, all three read through layouts into `out_shape`.
    ///
    /// A NaN condition counts as true (it is not equal to 0).
    #[allow(clippy::too_many_arguments)] // three operands, each with its layout, plus shape and output
    pub fn select / select_at(
        out_shape: &[usize],
        c: &[f32],
        lc: &Layout,
        a: &[f32],
        la: &Layout,
        b: &[f32],
        lb: &Layout,
        out: &mut [f32],
    ) {
        let n = out.len();
        debug_assert_eq!(n, numel(out_shape));
        if n == 0 {
            return;
        }
        #[inline(always)]
        fn pick(c: f32, a: f32, b: f32) -> f32 {
            if c != 0.0 {
                a
            } else {
                b
            }
        }
        if *lc == Layout::Full && *la == Layout::Full && *lb == Layout::Full {
            for (((o, &c), &a), &b) in out.iter_mut().zip(&c[..n]).zip(&a[..n]).zip(&b[..n]) {
                *o = pick(c, a, b);
            }
            return;
        }
        // Select is rarely hot with mixed layouts, so everything else goes through the general
        // strided row walk.
        let rank = out_shape.len();
        let (mut sc, mut sa, mut sb) = (
            Idx::from_elem(0, rank),
            Idx::from_elem(0, rank),
            Idx::from_elem(0, rank),
        );
        lc.write_strides(out_shape, &mut sc);
        la.write_strides(out_shape, &mut sa);
        lb.write_strides(out_shape, &mut sb);
        let (kc, ka, kb) = (last_step(&sc), last_step(&sa), last_step(&sb));
        let len = row_len(out_shape);
        for_each_row(out_shape, [&sc, &sa, &sb], |o, [cb, ab, bb]| {
            for (j, v) in out[o..o + len].iter_mut().enumerate() {
                *v = pick(c[cb + j * kc], a[ab + j * ka], b[bb + j * kb]);
            }
        });
    }
}

#[inline(always)]
fn clamp(v: f32, lo: f32, hi: f32) -> f32 {
    // Not f32::clamp: that panics when lo > hi or either bound is NaN, and kernels must not panic.
    let v = if v < lo { lo } else { v };
    if v > hi {
        hi
    } else {
        v
    }
}

crate::multiversion! {
    /// `out = clamp(x, lo, hi)`; NaN inputs stay NaN.
    pub fn clip / clip_at(x: &[f32], lo: f32, hi: f32, out: &mut [f32]) {
        debug_assert_eq!(x.len(), out.len());
        map(x, out, |v| clamp(v, lo, hi));
    }
}

crate::multiversion! {
    /// `x = clamp(x, lo, hi)` in place; NaN inputs stay NaN.
    pub fn clip_inplace / clip_inplace_at(x: &mut [f32], lo: f32, hi: f32) {
        map_inplace(x, |v| clamp(v, lo, hi));
    }
}

crate::multiversion! {
    /// `x *= alpha`.
    pub fn scale_inplace / scale_inplace_at(x: &mut [f32], alpha: f32) {
        map_inplace(x, |v| v * alpha);
    }
}

crate::multiversion! {
    /// out = a + alpha·b over same-length slices (one pass instead of a scale and an add).
    pub fn axpy / axpy_at(a: &[f32], alpha: f32, b: &[f32], out: &mut [f32]) {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = x + alpha * y;
        }
    }
}

crate::multiversion! {
    /// a += alpha·b.
    pub fn axpy_inplace_lhs / axpy_inplace_lhs_at(a: &mut [f32], alpha: f32, b: &[f32]) {
        for (x, &y) in a.iter_mut().zip(b) {
            *x += alpha * y;
        }
    }
}

crate::multiversion! {
    /// b = a + alpha·b.
    pub fn axpy_inplace_rhs / axpy_inplace_rhs_at(a: &[f32], alpha: f32, b: &mut [f32]) {
        for (y, &x) in b.iter_mut().zip(a) {
            *y = x + alpha * *y;
        }
    }
}

#[cfg(test)]
// The references index with plain loops on purpose: they must be obviously correct.
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::kernels::broadcast::tests::naive_index;
    use crate::kernels::broadcast_shape;
    use crate::testing::{broadcast_shapes, close, wave};
    use proptest::prelude::*;

    const UNARY: [Unary; 13] = Unary::ALL;

    #[test]
    fn passes_split_across_threads_give_each_element_its_own_value() {
        // 40 rows of 263 (not a multiple of the SIMD width): past the split size, so with two
        // threads each half runs on its own thread; a row operand restarts at whole rows.
        let (rows, cols) = (40, 263);
        let n = rows * cols;
        let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let row: Vec<f32> = (0..cols).map(|j| (j as f32 * 0.11).cos()).collect();
        let shape: crate::kernels::Shape = [rows, cols].into_iter().collect();
        let get = |s: &usize| -> &[f32] {
            if *s == 0 {
                &a
            } else {
                &row
            }
        };
        for inplace in [None, Some(Side::Lhs)] {
            let call = BinaryCall {
                op: Binary::Mul,
                shape: shape.clone(),
                a: 0usize,
                la: Layout::Full,
                b: 1,
                lb: Layout::Row { period: cols },
                inplace,
            };
            let mut out = if inplace.is_some() {
                a.clone()
            } else {
                vec![0.0; n]
            };
            call.run(get, &mut out);
            for i in 0..n {
                assert_eq!(out[i], a[i] * row[i % cols], "element {i}, {inplace:?}");
            }
        }
        let call = UnaryCall {
            op: Unary::Sigmoid,
            x: 0usize,
            n,
            inplace: false,
        };
        let mut out = vec![0.0; n];
        call.run(get, &mut out);
        for i in 0..n {
            assert_eq!(out[i], unary_scalar(Unary::Sigmoid, a[i]), "sigmoid {i}");
        }
    }

    const BINARY: [Binary; 13] = Binary::ALL;

    /// Textbook definitions in f64.
    fn naive_unary(op: Unary, x: f64) -> f64 {
        match op {
            Unary::Neg => -x,
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Sqrt => x.sqrt(),
            Unary::Abs => x.abs(),
            Unary::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    x
                }
            }
            Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Unary::Tanh => x.tanh(),
            Unary::Relu => {
                if x.is_nan() {
                    x
                } else {
                    x.max(0.0)
                }
            }
            Unary::Softplus => {
                if x > 30.0 {
                    x + (-x).exp()
                } else {
                    x.exp().ln_1p()
                }
            }
            Unary::Square => x * x,
            Unary::Recip => 1.0 / x,
            Unary::Softsign => x / (1.0 + x.abs()),
        }
    }

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    fn val() -> impl Strategy<Value = f32> {
        prop_oneof![
            -10.0f32..10.0,
            -200.0f32..200.0,
            Just(0.0f32),
            Just(-0.0f32),
            Just(1.0f32),
            Just(f32::NAN),
            Just(f32::INFINITY),
            Just(f32::NEG_INFINITY),
        ]
    }

    /// The vectorised transcendentals give the scalar definition's bits in every lane at every
    /// SIMD level (the loop bodies are the scalar code; a contraction to FMA or a reordering in one
    /// copy would show here), over a dense grid with the special values mixed in.
    #[test]
    fn transcendentals_match_scalar_at_every_level() {
        let mut x: Vec<f32> = (0..20_011)
            .map(|i| (i as f32 - 10_000.0) * 0.0113)
            .collect();
        x.extend([
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            1.0e-40,
            f32::MAX,
        ]);
        x.extend([
            88.72283,
            88.8,
            -103.3,
            -87.4,
            f32::MIN_POSITIVE,
            0.549,
            0.55,
            -0.551,
        ]);
        for op in [Unary::Exp, Unary::Log, Unary::Sigmoid, Unary::Tanh] {
            let want: Vec<f32> = x.iter().map(|&v| unary_scalar(op, v)).collect();
            for level in crate::kernels::supported_simd_levels() {
                let mut out = vec![0.0; x.len()];
                unary_at(level, op, &x, &mut out);
                for i in 0..x.len() {
                    assert!(
                        same(out[i], want[i]),
                        "{op:?}({}) at {level:?}: {} vs {}",
                        x[i],
                        out[i],
                        want[i]
                    );
                }
            }
        }
    }

    #[test]
    fn axpy_variants_agree() {
        let a = [1.0, 2.0, 3.0];
        let b = [0.5, -1.0, 4.0];
        let mut out = [0.0; 3];
        axpy(&a, -2.0, &b, &mut out);
        assert_eq!(out, [0.0, 4.0, -5.0]);
        let mut l = a;
        axpy_inplace_lhs(&mut l, -2.0, &b);
        let mut r = b;
        axpy_inplace_rhs(&a, -2.0, &mut r);
        assert_eq!((l, r), (out, out));
    }

    proptest! {
        #[test]
        fn unary_scalar_matches_f64(op in 0..UNARY.len(), x in val()) {
            let op = UNARY[op];
            let got = unary_scalar(op, x);
            let want = naive_unary(op, x as f64);
            prop_assert!(close(got, want, 2e-6, 1e-37), "{:?}({}) = {} want {}", op, x, got, want);
        }

        #[test]
        fn unary_slices_match_scalar(op in 0..UNARY.len(), x in prop::collection::vec(val(), 0..40)) {
            let op = UNARY[op];
            let mut out = vec![0.0; x.len()];
            unary(op, &x, &mut out);
            let mut inplace = x.clone();
            unary_inplace(op, &mut inplace);
            for i in 0..x.len() {
                let want = unary_scalar(op, x[i]);
                prop_assert!(same(out[i], want));
                prop_assert!(same(inplace[i], want));
            }
        }

        #[test]
        fn binary_scalar_matches_naive(op in 0..BINARY.len(), a in val(), b in val()) {
            let op = BINARY[op];
            let t = |c: bool| if c { 1.0 } else { 0.0 };
            let want = match op {
                Binary::Add => a + b,
                Binary::Sub => a - b,
                Binary::Mul => a * b,
                Binary::Div => a / b,
                Binary::Pow => a.powf(b),
                Binary::Maximum => a.max(b),
                Binary::Minimum => a.min(b),
                Binary::Gt => t(a > b),
                Binary::Ge => t(a >= b),
                Binary::Lt => t(a < b),
                Binary::Le => t(a <= b),
                Binary::Eq => t(a == b),
                Binary::Ne => t(a != b),
            };
            prop_assert!(same(binary_scalar(op, a, b), want));
        }

        #[test]
        fn binary_broadcast_matches_naive(op in 0..BINARY.len(), (_to, sa, sb) in broadcast_shapes()) {
            let op = BINARY[op];
            let to = broadcast_shape(&sa, &sb).unwrap();
            let n = numel(&to);
            let a = wave(numel(&sa));
            // Offset so comparisons see both equal and unequal pairs.
            let b: Vec<f32> = wave(numel(&sb) + 1)[1..].iter().map(|v| v.round()).collect();
            let a: Vec<f32> = a.iter().map(|v| v.round()).collect();
            let la = Layout::new(&sa, &to).unwrap();
            let lb = Layout::new(&sb, &to).unwrap();
            let want: Vec<f32> = (0..n)
                .map(|i| binary_scalar(op, a[naive_index(&sa, &to, i)], b[naive_index(&sb, &to, i)]))
                .collect();
            let strided = |l: &Layout| Layout::Strided(l.strides(&to));
            for (la, lb) in [(la.clone(), lb.clone()), (strided(&la), strided(&lb))] {
                let mut out = vec![f32::NAN; n];
                binary(op, &to, &a, &la, &b, &lb, &mut out);
                for i in 0..n {
                    prop_assert!(same(out[i], want[i]), "{:?} {:?} {:?} i={}", op, la, lb, i);
                }
            }
            // In-place variants need the written operand to already have the output shape.
            let a_full: Vec<f32> = (0..n).map(|i| a[naive_index(&sa, &to, i)]).collect();
            let b_full: Vec<f32> = (0..n).map(|i| b[naive_index(&sb, &to, i)]).collect();
            for lb in [lb.clone(), strided(&lb)] {
                let mut x = a_full.clone();
                binary_inplace_lhs(op, &to, &mut x, &b, &lb);
                for i in 0..n {
                    prop_assert!(same(x[i], want[i]));
                }
            }
            for la in [la.clone(), strided(&la)] {
                let mut y = b_full.clone();
                binary_inplace_rhs(op, &to, &a, &la, &mut y);
                for i in 0..n {
                    prop_assert!(same(y[i], want[i]));
                }
            }
            let mut out = vec![f32::NAN; n];
            binary(op, &to, &a_full, &Layout::Full, &b, &lb, &mut out);
            binary(op, &to, &a, &la, &b_full, &Layout::Full, &mut out);
            for i in 0..n {
                prop_assert!(same(out[i], want[i]));
            }
        }

        #[test]
        fn select_matches_naive((to, sc, sa) in broadcast_shapes(), sb_keep in prop::collection::vec(any::<bool>(), 4)) {
            let sb: Vec<usize> = to.iter().zip(&sb_keep).map(|(&d, &k)| if k { d } else { 1 }).collect();
            let n = numel(&to);
            let c: Vec<f32> = (0..numel(&sc)).map(|i| [0.0, 1.0, -2.0, 0.0, f32::NAN][i % 5]).collect();
            let a = wave(numel(&sa));
            let b: Vec<f32> = wave(numel(&sb)).iter().map(|v| -v).collect();
            let (lc, la, lb) = (
                Layout::new(&sc, &to).unwrap(),
                Layout::new(&sa, &to).unwrap(),
                Layout::new(&sb, &to).unwrap(),
            );
            let want: Vec<f32> = (0..n)
                .map(|i| {
                    if c[naive_index(&sc, &to, i)] != 0.0 {
                        a[naive_index(&sa, &to, i)]
                    } else {
                        b[naive_index(&sb, &to, i)]
                    }
                })
                .collect();
            let mut out = vec![f32::NAN; n];
            select(&to, &c, &lc, &a, &la, &b, &lb, &mut out);
            prop_assert_eq!(&out, &want);
            let cf: Vec<f32> = (0..n).map(|i| c[naive_index(&sc, &to, i)]).collect();
            let af: Vec<f32> = (0..n).map(|i| a[naive_index(&sa, &to, i)]).collect();
            let bf: Vec<f32> = (0..n).map(|i| b[naive_index(&sb, &to, i)]).collect();
            let mut out = vec![f32::NAN; n];
            select(&to, &cf, &Layout::Full, &af, &Layout::Full, &bf, &Layout::Full, &mut out);
            prop_assert_eq!(&out, &want);
        }

        #[test]
        fn clip_and_scale_match_naive(x in prop::collection::vec(val(), 0..40), lo in -5.0f32..0.0, hi in 0.0f32..5.0, alpha in -3.0f32..3.0) {
            let mut out = vec![0.0; x.len()];
            clip(&x, lo, hi, &mut out);
            let mut inplace = x.clone();
            clip_inplace(&mut inplace, lo, hi);
            let mut scaled = x.clone();
            scale_inplace(&mut scaled, alpha);
            for i in 0..x.len() {
                let want = if x[i].is_nan() { x[i] } else { x[i].max(lo).min(hi) };
                prop_assert!(same(out[i], want));
                prop_assert!(same(inplace[i], want));
                prop_assert!(same(scaled[i], x[i] * alpha));
            }
        }
    }

    #[test]
    fn special_values() {
        assert_eq!(unary_scalar(Unary::Sign, 0.0), 0.0);
        assert_eq!(unary_scalar(Unary::Sign, -3.0), -1.0);
        assert_eq!(unary_scalar(Unary::Sigmoid, 1000.0), 1.0);
        assert_eq!(unary_scalar(Unary::Sigmoid, -1000.0), 0.0);
        assert_eq!(unary_scalar(Unary::Sigmoid, 0.0), 0.5);
        assert_eq!(unary_scalar(Unary::Softplus, 1000.0), 1000.0);
        assert_eq!(unary_scalar(Unary::Softplus, -1000.0), 0.0);
        assert!((unary_scalar(Unary::Softplus, 0.0) - 2f32.ln()).abs() < 1e-7);
        assert_eq!(unary_scalar(Unary::Relu, -2.0), 0.0);
        assert!(unary_scalar(Unary::Relu, f32::NAN).is_nan());
        assert_eq!(binary_scalar(Binary::Ne, f32::NAN, f32::NAN), 1.0);
        let mut x = [1.0, -7.0, 9.0, f32::NAN];
        clip_inplace(&mut x, 2.0, 1.0);
        assert_eq!(&x[..3], &[1.0, 1.0, 1.0]);
    }

    #[test]
    fn rank0_and_empty() {
        let mut out = [0.0];
        binary(
            Binary::Sub,
            &[],
            &[5.0],
            &Layout::Full,
            &[2.0],
            &Layout::Scalar,
            &mut out,
        );
        assert_eq!(out, [3.0]);
        let mut out: [f32; 0] = [];
        binary(
            Binary::Add,
            &[0, 3],
            &[],
            &Layout::Full,
            &[1.0, 2.0, 3.0],
            &Layout::Row { period: 3 },
            &mut out,
        );
        select(
            &[0],
            &[],
            &Layout::Full,
            &[],
            &Layout::Full,
            &[1.0],
            &Layout::Scalar,
            &mut out,
        );
    }
}

// Kernel calls: one planned instruction's kernel, with its operands (`S`, whatever the caller
// uses to find a slice) and sizes resolved; `run` reads the operands through `get` and writes
// `out`, `describe` renders it for plan dumps.

/// Which operand an in-place binary kernel overwrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Lhs,
    Rhs,
}

/// `out = op(x)` over `n` values; in place, `out` holds `x`.
#[derive(Clone, Debug)]
pub(crate) struct UnaryCall<S> {
    pub(crate) op: Unary,
    pub(crate) x: S,
    pub(crate) n: usize,
    pub(crate) inplace: bool,
}

impl<S> UnaryCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        let (n, op) = (self.n, self.op);
        let out = &mut out[..n];
        let Some(mid) = split_point(n, &[]) else {
            return if self.inplace {
                unary_inplace(op, out)
            } else {
                unary(op, &get(&self.x)[..n], out)
            };
        };
        let (o0, o1) = out.split_at_mut(mid);
        if self.inplace {
            let mut parts = [o0, o1];
            super::gemm_kernels::for_each_part(&mut parts, &|o: &mut &mut [f32]| {
                unary_inplace(op, o)
            });
        } else {
            let (x0, x1) = get(&self.x)[..n].split_at(mid);
            let mut parts = [(x0, o0), (x1, o1)];
            super::gemm_kernels::for_each_part(&mut parts, &|p: &mut (&[f32], &mut [f32])| {
                unary(op, p.0, p.1)
            });
        }
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "{} {} [{}]{}",
            format!("{:?}", self.op).to_lowercase(),
            name(&self.x),
            self.n,
            super::describe_in_place(self.inplace)
        )
    }
}

/// Elementwise passes over at least this many values run in two halves on two threads when
/// a second one is allowed: such a pass takes several microseconds, and a polling helper takes
/// its half within one (an LSTM 128→256's gate passes at batch 32 are 8192 values, its
/// pre-activations 32768).
const SPLIT_MIN: usize = 1 << 13;

/// Where to split a pass over `n` values read through `layouts` in two, if it is worth it and
/// allowed: halfway, rounded to whole SIMD vectors and to whole rows of a `Row` operand (whose
/// index restarts at 0 in each half); `None` for the other broadcasts, whose index depends on
/// the position in the whole shape.
fn split_point(n: usize, layouts: &[&Layout]) -> Option<usize> {
    if n < SPLIT_MIN || super::gemm_kernels::gemm_threads() < 2 {
        return None;
    }
    let mut unit = 16;
    for l in layouts {
        match l {
            Layout::Full | Layout::Scalar => {}
            Layout::Row { period } if *period > 0 => unit = unit.max(*period),
            _ => return None,
        }
    }
    // Rows are usually multiples of 16 already; otherwise halves at whole rows still work.
    let mid = (n / 2).div_ceil(unit) * unit;
    (mid > 0 && mid < n).then_some(mid)
}

fn describe_side(side: Option<Side>) -> String {
    side.map(|s| format!(" in place over {}", format!("{s:?}").to_lowercase()))
        .unwrap_or_default()
}

/// `out = a op b` with broadcasting; in place, `out` holds the operand on `inplace`'s side.
#[derive(Clone, Debug)]
pub(crate) struct BinaryCall<S> {
    pub(crate) op: Binary,
    pub(crate) shape: super::Shape,
    pub(crate) a: S,
    pub(crate) la: Layout,
    pub(crate) b: S,
    pub(crate) lb: Layout,
    pub(crate) inplace: Option<Side>,
}

impl<S> BinaryCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        let (op, shape) = (self.op, &self.shape);
        let n = numel(shape);
        if let Some(mid) = split_point(n, &[&self.la, &self.lb]) {
            return self.run_split(get, &mut out[..n], mid);
        }
        match self.inplace {
            Some(Side::Lhs) => binary_inplace_lhs(op, shape, &mut out[..n], get(&self.b), &self.lb),
            Some(Side::Rhs) => binary_inplace_rhs(op, shape, get(&self.a), &self.la, &mut out[..n]),
            None => binary(
                op,
                shape,
                get(&self.a),
                &self.la,
                get(&self.b),
                &self.lb,
                &mut out[..n],
            ),
        }
    }

    /// [`Self::run`] in two halves `..mid` and `mid..`, on two threads: each element sees
    /// the arithmetic of the whole pass (layouts `Full`, `Scalar` or `Row` with `mid` a
    /// multiple of the row, see [`split_point`]).
    fn run_split<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32], mid: usize) {
        let op = self.op;
        let (la, lb) = (&self.la, &self.lb);
        let n = out.len();
        // A `Full` operand splits with the output; a scalar or row is read whole by both.
        let half = |x: &'a [f32], l: &Layout| -> (&'a [f32], &'a [f32]) {
            match l {
                Layout::Full => x[..n].split_at(mid),
                _ => (x, x),
            }
        };
        let (o0, o1) = out.split_at_mut(mid);
        match self.inplace {
            Some(Side::Lhs) => {
                let (b0, b1) = half(get(&self.b), lb);
                let mut parts = [(o0, b0), (o1, b1)];
                super::gemm_kernels::for_each_part(&mut parts, &|p: &mut (&mut [f32], &[f32])| {
                    binary_inplace_lhs(op, &[p.0.len()], p.0, p.1, lb)
                });
            }
            Some(Side::Rhs) => {
                let (a0, a1) = half(get(&self.a), la);
                let mut parts = [(a0, o0), (a1, o1)];
                super::gemm_kernels::for_each_part(&mut parts, &|p: &mut (&[f32], &mut [f32])| {
                    binary_inplace_rhs(op, &[p.1.len()], p.0, la, p.1)
                });
            }
            None => {
                let (a0, a1) = half(get(&self.a), la);
                let (b0, b1) = half(get(&self.b), lb);
                let mut parts = [(a0, b0, o0), (a1, b1, o1)];
                let f = |p: &mut (&[f32], &[f32], &mut [f32])| {
                    binary(op, &[p.2.len()], p.0, la, p.1, lb, p.2)
                };
                super::gemm_kernels::for_each_part(&mut parts, &f);
            }
        }
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "{} {}{}, {}{} {}{}",
            format!("{:?}", self.op).to_lowercase(),
            name(&self.a),
            super::describe_layout(&self.la),
            name(&self.b),
            super::describe_layout(&self.lb),
            super::describe_dims(&self.shape),
            describe_side(self.inplace)
        )
    }
}

/// `out = a + alpha·b` with broadcasting, in one pass when both have the output's shape.
#[derive(Clone, Debug)]
pub(crate) struct AxpyCall<S> {
    pub(crate) alpha: f32,
    pub(crate) shape: super::Shape,
    pub(crate) a: S,
    pub(crate) la: Layout,
    pub(crate) b: S,
    pub(crate) lb: Layout,
    pub(crate) inplace: Option<Side>,
}

impl<S> AxpyCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        let n = numel(&self.shape);
        let alpha = self.alpha;
        match self.inplace {
            // The plan only writes in place when both operands have the output's shape.
            Some(Side::Lhs) => axpy_inplace_lhs(&mut out[..n], alpha, &get(&self.b)[..n]),
            Some(Side::Rhs) => axpy_inplace_rhs(&get(&self.a)[..n], alpha, &mut out[..n]),
            None if self.la == Layout::Full && self.lb == Layout::Full => {
                axpy(&get(&self.a)[..n], alpha, &get(&self.b)[..n], &mut out[..n])
            }
            None => {
                // Broadcast operands: scale b into the output, then add a, in two passes.
                let (o, scale) = (&mut out[..n], [alpha]);
                binary(
                    Binary::Mul,
                    &self.shape,
                    get(&self.b),
                    &self.lb,
                    &scale,
                    &Layout::Scalar,
                    o,
                );
                binary_inplace_rhs(Binary::Add, &self.shape, get(&self.a), &self.la, o);
            }
        }
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "axpy {}{} + {}·{}{} {}{}",
            name(&self.a),
            super::describe_layout(&self.la),
            self.alpha,
            name(&self.b),
            super::describe_layout(&self.lb),
            super::describe_dims(&self.shape),
            describe_side(self.inplace)
        )
    }
}

/// `out = c ? a : b` with broadcasting of all three.
#[derive(Clone, Debug)]
pub(crate) struct SelectCall<S> {
    pub(crate) shape: super::Shape,
    pub(crate) c: S,
    pub(crate) lc: Layout,
    pub(crate) a: S,
    pub(crate) la: Layout,
    pub(crate) b: S,
    pub(crate) lb: Layout,
}

impl<S> SelectCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        let n = numel(&self.shape);
        select(
            &self.shape,
            get(&self.c),
            &self.lc,
            get(&self.a),
            &self.la,
            get(&self.b),
            &self.lb,
            &mut out[..n],
        );
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "select {}{} ? {}{} : {}{} {}",
            name(&self.c),
            super::describe_layout(&self.lc),
            name(&self.a),
            super::describe_layout(&self.la),
            name(&self.b),
            super::describe_layout(&self.lb),
            super::describe_dims(&self.shape)
        )
    }
}

/// `out = clamp(x, lo, hi)` over `n` values; in place, `out` holds `x`.
#[derive(Clone, Debug)]
pub(crate) struct ClipCall<S> {
    pub(crate) lo: f32,
    pub(crate) hi: f32,
    pub(crate) x: S,
    pub(crate) n: usize,
    pub(crate) inplace: bool,
}

impl<S> ClipCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        let n = self.n;
        if self.inplace {
            clip_inplace(&mut out[..n], self.lo, self.hi);
        } else {
            clip(&get(&self.x)[..n], self.lo, self.hi, &mut out[..n]);
        }
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "clip({}, {}) {} [{}]{}",
            self.lo,
            self.hi,
            name(&self.x),
            self.n,
            super::describe_in_place(self.inplace)
        )
    }
}

crate::multiversion! {
    /// The ReLU derivative applied to a gradient in one pass: `out[i] = g[i] · (x[i] > 0)`, as
    /// `g · 1` or `g · 0` so that every value (−0 for a negative `g`, NaN for an infinite one
    /// where `x ≤ 0`) is the one the multiply by the 0/1 mask gives.
    pub fn relu_grad / relu_grad_at(g: &[f32], x: &[f32], out: &mut [f32]) {
        debug_assert_eq!(g.len(), out.len());
        debug_assert_eq!(x.len(), out.len());
        for ((o, &gv), &xv) in out.iter_mut().zip(g).zip(x) {
            *o = gv * b2f(xv > 0.0);
        }
    }
}

crate::multiversion! {
    /// [`relu_grad`] with the result written over `g`.
    pub fn relu_grad_over_g / relu_grad_over_g_at(g: &mut [f32], x: &[f32]) {
        debug_assert_eq!(x.len(), g.len());
        for (gv, &xv) in g.iter_mut().zip(x) {
            *gv *= b2f(xv > 0.0);
        }
    }
}

crate::multiversion! {
    /// [`relu_grad`] with the result written over `x`.
    pub fn relu_grad_over_x / relu_grad_over_x_at(g: &[f32], x: &mut [f32]) {
        debug_assert_eq!(x.len(), g.len());
        for (xv, &gv) in x.iter_mut().zip(g) {
            *xv = gv * b2f(*xv > 0.0);
        }
    }
}

/// `g · (x > 0)` (see [`relu_grad`]), with numpy broadcasting of either operand.
#[derive(Clone, Debug)]
pub(crate) struct ReluGradCall<S> {
    pub(crate) shape: super::Shape,
    pub(crate) g: S,
    pub(crate) lg: Layout,
    pub(crate) x: S,
    pub(crate) lx: Layout,
    pub(crate) inplace: Option<Side>,
}

impl<S> ReluGradCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        let n = numel(&self.shape);
        match self.inplace {
            // The plan only writes in place when both operands have the output's shape.
            Some(Side::Lhs) => relu_grad_over_g(&mut out[..n], &get(&self.x)[..n]),
            Some(Side::Rhs) => relu_grad_over_x(&get(&self.g)[..n], &mut out[..n]),
            None if self.lg == Layout::Full && self.lx == Layout::Full => {
                relu_grad(&get(&self.g)[..n], &get(&self.x)[..n], &mut out[..n])
            }
            None => {
                // Broadcast operands: the mask into the output, then the product, as the two
                // unfused kernels compute them.
                let (o, zero) = (&mut out[..n], [0.0]);
                binary(
                    Binary::Gt,
                    &self.shape,
                    get(&self.x),
                    &self.lx,
                    &zero,
                    &Layout::Scalar,
                    o,
                );
                binary_inplace_rhs(Binary::Mul, &self.shape, get(&self.g), &self.lg, o);
            }
        }
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "relu_grad {} where {} > 0 {:?}{}",
            name(&self.g),
            name(&self.x),
            self.shape,
            match self.inplace {
                Some(Side::Lhs) => " (in place over g)",
                Some(Side::Rhs) => " (in place over x)",
                None => "",
            }
        )
    }
}
