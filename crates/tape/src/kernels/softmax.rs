//! Numerically stable softmax, log-softmax and logsumexp over the last axis of a `rows×cols`
//! row-major matrix.
//!
//! Every row is shifted by its maximum before exponentiating, so inputs like ±1000 neither
//! overflow nor underflow to a 0/0. When the maximum is infinite the shift is skipped, which
//! makes logsumexp exact at the extremes (all `-inf` ⇒ `-inf`, any `+inf` ⇒ `+inf`).
//!
//! `exp` and `ln` are the vectorised ones of `vmath` (same bits at every SIMD level), so the
//! per-element exponentials run 4–16 lanes at a time instead of one libm call each.

use super::reduce::{max_all, sum_all};
use super::vmath::{exp, ln};

/// The shift subtracted from a row before exponentiating.
#[inline(always)]
fn shift(row: &[f32]) -> f32 {
    let m = max_all(row);
    // Subtracting an infinite maximum would turn inf - inf into NaN for every element.
    if m.is_finite() {
        m
    } else {
        0.0
    }
}

/// `Σ exp(row - m)` with 8 independent partial sums (fixed order, deterministic).
#[inline(always)]
fn sum_exp(row: &[f32], m: f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += exp(v - m);
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &v in tail {
        s += exp(v - m);
    }
    s
}

/// `ln Σ exp(row)` of one row, as the pair `(m, ln Σ exp(row - m))`.
#[inline(always)]
fn lse_parts(row: &[f32]) -> (f32, f32) {
    let m = shift(row);
    (m, ln(sum_exp(row, m)))
}

/// Rows narrower than this are done a block of rows at a time: one exponential pass over the
/// whole block runs full vectors across row boundaries, where a row of 10 classes alone would
/// leave most lanes idle and pay its tail one value at a time. The values are those of the
/// row-by-row loop, bit for bit (same shift, same exponentials, same summation order).
const NARROW: usize = 32;
/// Rows per block on the narrow path (their shifts and exponentials sit on the stack).
const BLOCK: usize = 64;

/// `e[r, j] = x[r, j] - m[r]` for a block of rows, `m[r]` being the row's [`shift`], then one
/// exponential pass over all of `e`.
#[inline(always)]
fn block_exp(x: &[f32], cols: usize, m: &mut [f32; BLOCK], e: &mut [f32]) {
    for ((er, row), mr) in e
        .chunks_exact_mut(cols)
        .zip(x.chunks_exact(cols))
        .zip(m.iter_mut())
    {
        *mr = shift(row);
        for (o, &v) in er.iter_mut().zip(row) {
            *o = v - *mr;
        }
    }
    e.iter_mut().for_each(|v| *v = exp(*v));
}

/// Softmax of narrow rows (`0 < cols < NARROW`) in place: shift each row of a block, one
/// exponential pass over the block, then normalise each row.
#[inline(always)]
fn softmax_narrow(x: &mut [f32], cols: usize) {
    for xb in x.chunks_mut(BLOCK * cols) {
        for row in xb.chunks_exact_mut(cols) {
            let m = shift(row);
            row.iter_mut().for_each(|v| *v -= m);
        }
        xb.iter_mut().for_each(|v| *v = exp(*v));
        for row in xb.chunks_exact_mut(cols) {
            let inv = 1.0 / sum_all(row);
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

/// Log-softmax of narrow rows (`0 < cols < NARROW`) in place: `(x - m) - ln Σ exp(x - m)` as
/// [`lse_parts`] gives it, the exponentials of a block in a scratch block on the stack.
#[inline(always)]
fn log_softmax_narrow(x: &mut [f32], cols: usize) {
    let (mut m, mut e) = ([0.0f32; BLOCK], [0.0f32; BLOCK * NARROW]);
    for xb in x.chunks_mut(BLOCK * cols) {
        let e = &mut e[..xb.len()];
        block_exp(xb, cols, &mut m, e);
        for ((row, er), &mr) in xb.chunks_exact_mut(cols).zip(e.chunks_exact(cols)).zip(&m) {
            let ln_s = ln(sum_all(er));
            row.iter_mut().for_each(|v| *v = (*v - mr) - ln_s);
        }
    }
}

crate::multiversion! {
    /// Softmax of each row: `out[r, j] = exp(x[r, j]) / Σ_j exp(x[r, j])`. `cols == 0` leaves `out`
    /// (which is then empty) untouched.
    pub fn softmax / softmax_at(x: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
        debug_assert_eq!(x.len(), rows * cols);
        debug_assert_eq!(out.len(), rows * cols);
        if cols == 0 {
            return;
        }
        if cols < NARROW {
            out.copy_from_slice(x);
            return softmax_narrow(out, cols);
        }
        for (orow, row) in out.chunks_exact_mut(cols).zip(x.chunks_exact(cols)) {
            let m = shift(row);
            for (o, &v) in orow.iter_mut().zip(row) {
                *o = exp(v - m);
            }
            let inv = 1.0 / sum_all(orow);
            orow.iter_mut().for_each(|o| *o *= inv);
        }
    }
}

crate::multiversion! {
    /// [`softmax`] in place.
    pub fn softmax_inplace / softmax_inplace_at(x: &mut [f32], rows: usize, cols: usize) {
        debug_assert_eq!(x.len(), rows * cols);
        if cols == 0 {
            return;
        }
        if cols < NARROW {
            return softmax_narrow(x, cols);
        }
        for row in x.chunks_exact_mut(cols) {
            let m = shift(row);
            row.iter_mut().for_each(|v| *v = exp(*v - m));
            let inv = 1.0 / sum_all(row);
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

crate::multiversion! {
    /// Log-softmax of each row: `out[r, j] = x[r, j] - logsumexp(x[r, ..])`.
    pub fn log_softmax / log_softmax_at(x: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
        debug_assert_eq!(x.len(), rows * cols);
        debug_assert_eq!(out.len(), rows * cols);
        if cols == 0 {
            return;
        }
        if cols < NARROW {
            out.copy_from_slice(x);
            return log_softmax_narrow(out, cols);
        }
        for (orow, row) in out.chunks_exact_mut(cols).zip(x.chunks_exact(cols)) {
            // (x - m) - ln s rather than x - (m + ln s): x - m is exact for the entries near the
            // maximum, so the large values do not lose their low bits to the rounding of m + ln s.
            let (m, ln_s) = lse_parts(row);
            for (o, &v) in orow.iter_mut().zip(row) {
                *o = (v - m) - ln_s;
            }
        }
    }
}

crate::multiversion! {
    /// [`log_softmax`] in place.
    pub fn log_softmax_inplace / log_softmax_inplace_at(x: &mut [f32], rows: usize, cols: usize) {
        debug_assert_eq!(x.len(), rows * cols);
        if cols == 0 {
            return;
        }
        if cols < NARROW {
            return log_softmax_narrow(x, cols);
        }
        for row in x.chunks_exact_mut(cols) {
            let (m, ln_s) = lse_parts(row);
            row.iter_mut().for_each(|v| *v = (*v - m) - ln_s);
        }
    }
}

crate::multiversion! {
    /// `out[r] = ln Σ_j exp(x[r, j])`; `out.len() == rows`, and `cols == 0` gives `-inf`.
    pub fn logsumexp / logsumexp_at(x: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
        debug_assert_eq!(x.len(), rows * cols);
        debug_assert_eq!(out.len(), rows);
        if cols == 0 {
            out.fill(f32::NEG_INFINITY);
            return;
        }
        for (o, row) in out.iter_mut().zip(x.chunks_exact(cols)) {
            let (m, ln_s) = lse_parts(row);
            *o = m + ln_s;
        }
    }
}

#[cfg(test)]
// The references index with plain loops on purpose: they must be obviously correct.
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::testing::close;
    use proptest::prelude::*;

    fn naive_lse(row: &[f32]) -> f64 {
        let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        if !m.is_finite() {
            return m;
        }
        m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
    }

    fn matrix() -> impl Strategy<Value = (usize, usize, Vec<f32>)> {
        (0usize..=5, 0usize..=20).prop_flat_map(|(r, c)| {
            let v = prop_oneof![
                6 => -20.0f32..20.0,
                1 => Just(1000.0f32),
                1 => Just(-1000.0f32),
                1 => -1000.0f32..1000.0,
            ];
            (Just(r), Just(c), prop::collection::vec(v, r * c))
        })
    }

    proptest! {
        #[test]
        fn softmax_family_matches_f64((rows, cols, x) in matrix()) {
            let mut sm = vec![f32::NAN; x.len()];
            let mut lsm = sm.clone();
            let mut lse = vec![f32::NAN; rows];
            softmax(&x, rows, cols, &mut sm);
            log_softmax(&x, rows, cols, &mut lsm);
            logsumexp(&x, rows, cols, &mut lse);
            let mut sm_in = x.clone();
            softmax_inplace(&mut sm_in, rows, cols);
            let mut lsm_in = x.clone();
            log_softmax_inplace(&mut lsm_in, rows, cols);
            prop_assert_eq!(&sm_in, &sm);
            prop_assert_eq!(&lsm_in, &lsm);
            for r in 0..rows {
                let row = &x[r * cols..(r + 1) * cols];
                let want = naive_lse(row);
                if cols == 0 {
                    prop_assert_eq!(lse[r], f32::NEG_INFINITY);
                    continue;
                }
                prop_assert!(close(lse[r], want, 1e-5, 1e-5), "{} vs {}", lse[r], want);
                let mut total = 0.0f64;
                for j in 0..cols {
                    let k = r * cols + j;
                    let p = (row[j] as f64 - want).exp();
                    total += sm[k] as f64;
                    prop_assert!(sm[k].is_finite() && lsm[k].is_finite());
                    prop_assert!(close(sm[k], p, 1e-5, 1e-7), "{} vs {}", sm[k], p);
                    // log_softmax == ln(softmax) wherever softmax has not underflowed.
                    let lp = row[j] as f64 - want;
                    prop_assert!((lsm[k] as f64 - lp).abs() <= 1e-5 * (1.0 + want.abs() + lp.abs()));
                    if sm[k] > 1e-30 {
                        prop_assert!((lsm[k] - sm[k].ln()).abs() <= 1e-4 * (1.0 + lsm[k].abs()));
                    }
                }
                prop_assert!((total - 1.0).abs() <= 1e-5, "row sum {}", total);
            }
        }
    }

    /// The row-by-row loops the narrow path replaced, as they were.
    fn by_rows(x: &[f32], cols: usize) -> (Vec<f32>, Vec<f32>) {
        let (mut sm, mut lsm) = (x.to_vec(), x.to_vec());
        for (srow, (lrow, row)) in sm
            .chunks_exact_mut(cols)
            .zip(lsm.chunks_exact_mut(cols).zip(x.chunks_exact(cols)))
        {
            let m = shift(row);
            for (o, &v) in srow.iter_mut().zip(row) {
                *o = exp(v - m);
            }
            let inv = 1.0 / sum_all(srow);
            srow.iter_mut().for_each(|o| *o *= inv);
            let (m, ln_s) = lse_parts(row);
            for (o, &v) in lrow.iter_mut().zip(row) {
                *o = (v - m) - ln_s;
            }
        }
        (sm, lsm)
    }

    /// Narrow rows (one block, several, a partial last one) with ordinary and extreme values:
    /// every entry point gives the row-by-row bits.
    #[test]
    fn narrow_rows_give_the_bits_of_the_row_by_row_loop() {
        let mut rng = crate::Rng::new(5);
        let specials = [
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1000.0,
            -1000.0,
            0.0,
        ];
        for cols in [1usize, 2, 3, 7, 8, 9, 10, 16, 17, 31, 32, 33] {
            for rows in [1usize, 5, 64, 65, 130] {
                let mut x = vec![0.0f32; rows * cols];
                rng.fill_normal(&mut x, 0.0, 5.0);
                for (i, v) in x.iter_mut().enumerate() {
                    if i % 23 == 7 {
                        *v = specials[(i / 23) % specials.len()];
                    }
                }
                let (want_sm, want_lsm) = by_rows(&x, cols);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                let mut out = vec![f32::NAN; x.len()];
                softmax(&x, rows, cols, &mut out);
                assert_eq!(bits(&out), bits(&want_sm), "softmax {rows}×{cols}");
                let mut inplace = x.clone();
                softmax_inplace(&mut inplace, rows, cols);
                assert_eq!(
                    bits(&inplace),
                    bits(&want_sm),
                    "softmax in place {rows}×{cols}"
                );
                log_softmax(&x, rows, cols, &mut out);
                assert_eq!(bits(&out), bits(&want_lsm), "log_softmax {rows}×{cols}");
                let mut inplace = x.clone();
                log_softmax_inplace(&mut inplace, rows, cols);
                assert_eq!(
                    bits(&inplace),
                    bits(&want_lsm),
                    "log_softmax in place {rows}×{cols}"
                );
            }
        }
    }

    #[test]
    fn extreme_inputs_are_stable() {
        let x = [1000.0, -1000.0, 1000.0, 0.0];
        let mut sm = [0.0; 4];
        softmax(&x, 1, 4, &mut sm);
        assert_eq!(sm, [0.5, 0.0, 0.5, 0.0]);
        let mut lsm = [0.0; 4];
        log_softmax(&x, 1, 4, &mut lsm);
        assert!((lsm[0] + 2f32.ln()).abs() < 1e-6);
        assert_eq!(lsm[1], -2000.0 - 2f32.ln());
        assert_eq!(lsm[3], -1000.0 - 2f32.ln());
        let mut lse = [0.0; 2];
        logsumexp(
            &[-1000.0, -1000.0, f32::NEG_INFINITY, f32::NEG_INFINITY],
            2,
            2,
            &mut lse,
        );
        assert!((lse[0] - (-1000.0 + 2f32.ln())).abs() < 1e-3);
        assert_eq!(lse[1], f32::NEG_INFINITY);
        logsumexp(&[1.0, f32::INFINITY], 1, 2, &mut lse[..1]);
        assert_eq!(lse[0], f32::INFINITY);
        let mut empty: [f32; 0] = [];
        softmax(&[], 3, 0, &mut empty);
        logsumexp(&[], 2, 0, &mut lse);
        assert_eq!(lse, [f32::NEG_INFINITY; 2]);
    }
}

/// Softmax, log-softmax (in place or not) or logsumexp over the rows of a `rows×cols` matrix.
#[derive(Clone, Debug)]
pub(crate) struct SoftmaxCall<S> {
    pub(crate) kind: super::SoftmaxKind,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) x: S,
    pub(crate) inplace: bool,
}

impl<S> SoftmaxCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        use super::SoftmaxKind as K;
        let (rows, cols) = (self.rows, self.cols);
        let n = rows * cols;
        match (self.kind, self.inplace) {
            (K::Softmax, true) => softmax_inplace(&mut out[..n], rows, cols),
            (K::LogSoftmax, true) => log_softmax_inplace(&mut out[..n], rows, cols),
            (K::Softmax, false) => softmax(&get(&self.x)[..n], rows, cols, &mut out[..n]),
            (K::LogSoftmax, false) => log_softmax(&get(&self.x)[..n], rows, cols, &mut out[..n]),
            (K::LogSumExp, _) => logsumexp(&get(&self.x)[..n], rows, cols, &mut out[..rows]),
        }
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "{} {} [{}×{}]{}",
            match self.kind {
                super::SoftmaxKind::Softmax => "softmax",
                super::SoftmaxKind::LogSoftmax => "log_softmax",
                super::SoftmaxKind::LogSumExp => "logsumexp",
            },
            name(&self.x),
            self.rows,
            self.cols,
            super::describe_in_place(self.inplace)
        )
    }
}
