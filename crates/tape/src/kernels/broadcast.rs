//! Numpy broadcasting: result shapes, [`Layout`] (how a small operand is read at each output
//! position), expansion ([`broadcast_to`]) and its adjoint reduction ([`sum_to`]).

use super::reduce::sum_all;
use super::{numel, Idx, Shape};

/// Broadcast result shape of two shapes, `None` if incompatible.
///
/// Shapes are aligned on the right and a dim of 1 stretches to the other dim (including to 0).
/// Ranks may differ; rank 0 (a scalar) broadcasts with anything.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Shape> {
    let rank = a.len().max(b.len());
    let mut out = Shape::from_elem(1, rank);
    for (d, o) in out.iter_mut().enumerate() {
        // Dims missing on the left behave as 1.
        let da = (d + a.len()).checked_sub(rank).map_or(1, |i| a[i]);
        let db = (d + b.len()).checked_sub(rank).map_or(1, |i| b[i]);
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

/// How an operand of shape `from` is read at each flat position `i` of an output of shape `to`.
///
/// The variants other than [`Layout::Strided`] are fast paths that kernels specialise on; every
/// layout can be converted to the general per-axis form with [`Layout::strides`].
#[derive(Clone, Debug, PartialEq)]
pub enum Layout {
    /// `from` has exactly `to`'s element order: index `i`.
    Full,
    /// One element (`from` has numel 1): index 0.
    Scalar,
    /// `from` (leading 1s dropped) equals a suffix of `to` with `period` elements: index `i % period`.
    Row {
        /// Number of elements of `from` (the product of the matching suffix of `to`).
        period: usize,
    },
    /// `from` (trailing 1s dropped) equals a prefix of `to`: index `i / inner`, where `inner` is
    /// the product of the remaining trailing dims of `to`.
    Col {
        /// Number of consecutive output elements that read the same element of `from`.
        inner: usize,
    },
    /// General case: one stride per axis of `to`, 0 on stretched axes.
    Strided(Shape),
}

impl Layout {
    /// Simplest layout reading `from` as `to`, or `None` if `from` does not broadcast to `to`
    /// (i.e. unless `broadcast_shape(from, to) == Some(to)`; in particular `from` may not have a
    /// higher rank than `to`).
    ///
    /// Preference order: `Full`, `Scalar`, `Row`, `Col`, `Strided`.
    pub fn new(from: &[usize], to: &[usize]) -> Option<Layout> {
        if from.len() > to.len() {
            return None;
        }
        let pad = to.len() - from.len();
        // `from` padded on the left with 1s to `to`'s rank.
        let f = |d: usize| if d < pad { 1 } else { from[d - pad] };
        let mut full = true;
        for (d, &t) in to.iter().enumerate() {
            let fd = f(d);
            if fd != t {
                if fd != 1 {
                    return None;
                }
                full = false;
            }
        }
        if full {
            return Some(Layout::Full);
        }
        let from_numel = numel(from);
        if from_numel == 1 {
            return Some(Layout::Scalar);
        }
        let rank = to.len();
        // Row: strip leading 1s of the padded `from`; the rest must equal the same-length suffix of `to`.
        let lead = (0..rank).find(|&d| f(d) != 1).unwrap_or(rank);
        if (lead..rank).all(|d| f(d) == to[d]) {
            return Some(Layout::Row { period: from_numel });
        }
        // Col: strip trailing 1s; the rest must equal the same-length prefix of `to`.
        let end = (0..rank).rev().find(|&d| f(d) != 1).map_or(0, |d| d + 1);
        if (0..end).all(|d| f(d) == to[d]) {
            return Some(Layout::Col {
                inner: numel(&to[end..]),
            });
        }
        let mut strides = Shape::from_elem(0, rank);
        let mut acc = 1;
        for d in (0..rank).rev() {
            let fd = f(d);
            // Size-1 axes of `from` (stretched or not) never advance the index.
            strides[d] = if fd == 1 { 0 } else { acc };
            acc *= fd;
        }
        Some(Layout::Strided(strides))
    }

    /// The per-axis strides (one per axis of `to`) equivalent to this layout, the general form
    /// that [`Layout::Strided`] stores directly.
    pub fn strides(&self, to: &[usize]) -> Shape {
        let mut s = Shape::from_elem(0, to.len());
        self.write_strides(to, &mut s);
        s
    }

    /// [`Layout::strides`] into a caller buffer of length `to.len()`, so kernels can keep the
    /// result in a larger on-stack buffer.
    pub fn write_strides(&self, to: &[usize], s: &mut [usize]) {
        let rank = to.len();
        debug_assert_eq!(s.len(), rank);
        match self {
            Layout::Full => {
                let mut acc = 1;
                for d in (0..rank).rev() {
                    s[d] = acc;
                    acc *= to[d];
                }
            }
            Layout::Scalar => s.fill(0),
            Layout::Row { period } => {
                // Axes inside the suffix covering `period` elements advance contiguously; the
                // prefix wraps around (stride 0).
                let mut acc = 1;
                for d in (0..rank).rev() {
                    s[d] = if acc < *period { acc } else { 0 };
                    acc *= to[d];
                }
            }
            Layout::Col { inner } => {
                // Axes inside the trailing block of `inner` elements are stretched (stride 0);
                // the prefix is contiguous over itself.
                let mut covered = 1;
                let mut acc = 1;
                for d in (0..rank).rev() {
                    if covered < *inner {
                        s[d] = 0;
                        covered *= to[d];
                    } else {
                        s[d] = acc;
                        acc *= to[d];
                    }
                }
            }
            Layout::Strided(st) => s.copy_from_slice(st),
        }
    }
}

/// Visits an output of shape `to` one last-axis row at a time: `visit(out_start, bases)` gets the
/// flat output offset of the row and, per operand, the offset of the row's first element under
/// that operand's `strides`. The row length is `to.last()` (1 for rank 0) and each operand steps
/// by its last stride (0 for rank 0) inside the row.
pub(crate) fn for_each_row<const N: usize>(
    to: &[usize],
    strides: [&[usize]; N],
    mut visit: impl FnMut(usize, [usize; N]),
) {
    let rank = to.len();
    if rank == 0 {
        visit(0, [0; N]);
        return;
    }
    debug_assert!(strides.iter().all(|s| s.len() == rank));
    let len = to[rank - 1];
    let total = numel(to);
    if total == 0 {
        return;
    }
    let mut counter = Idx::from_elem(0, rank - 1);
    let mut base = [0usize; N];
    for row in 0..total / len {
        visit(row * len, base);
        // Odometer over the leading axes, keeping the operand offsets incrementally.
        let mut d = rank - 1;
        while d > 0 {
            d -= 1;
            counter[d] += 1;
            for (b, s) in base.iter_mut().zip(&strides) {
                *b += s[d];
            }
            if counter[d] < to[d] {
                break;
            }
            counter[d] = 0;
            for (b, s) in base.iter_mut().zip(&strides) {
                *b -= s[d] * to[d];
            }
        }
    }
}

/// Last-axis length and per-operand step used with [`for_each_row`].
pub(crate) fn row_len(to: &[usize]) -> usize {
    to.last().copied().unwrap_or(1)
}

/// Step along the last axis for one operand's strides (0 for rank 0).
pub(crate) fn last_step(strides: &[usize]) -> usize {
    strides.last().copied().unwrap_or(0)
}

crate::multiversion! {
    /// out (shape `to`) = x read through `layout` (expands a broadcast operand).
    pub fn broadcast_to / broadcast_to_at(x: &[f32], layout: &Layout, to: &[usize], out: &mut [f32]) {
        debug_assert_eq!(out.len(), numel(to));
        if out.is_empty() {
            return;
        }
        match layout {
            Layout::Full => out.copy_from_slice(&x[..out.len()]),
            Layout::Scalar => out.fill(x[0]),
            Layout::Row { period } => {
                let row = &x[..*period];
                for chunk in out.chunks_exact_mut(*period) {
                    chunk.copy_from_slice(row);
                }
            }
            Layout::Col { inner } => {
                for (chunk, &v) in out.chunks_exact_mut(*inner).zip(x) {
                    chunk.fill(v);
                }
            }
            Layout::Strided(st) => {
                let len = row_len(to);
                let step = last_step(st);
                for_each_row(to, [st], |o, [xb]| {
                    let dst = &mut out[o..o + len];
                    match step {
                        0 => dst.fill(x[xb]),
                        1 => dst.copy_from_slice(&x[xb..xb + len]),
                        _ => {
                            for (j, v) in dst.iter_mut().enumerate() {
                                *v = x[xb + j * step];
                            }
                        }
                    }
                });
            }
        }
    }
}

crate::multiversion! {
    /// The adjoint of [`broadcast_to`]: `out` (the small shape, numel = `out.len()`) = sums of `g`
    /// (shape `to`) over every position that reads the same element. Overwrites `out`.
    ///
    /// Fast paths: `Row` (column sums accumulated row by row so the inner loop vectorises, e.g. a
    /// bias gradient), `Scalar` (total sum), `Col` (row sums). Summation order is fixed, so results
    /// are deterministic.
    pub fn sum_to / sum_to_at(g: &[f32], to: &[usize], layout: &Layout, out: &mut [f32]) {
        debug_assert_eq!(g.len(), numel(to));
        match layout {
            Layout::Full => out.copy_from_slice(&g[..out.len()]),
            Layout::Scalar => out[0] = sum_all(g),
            Layout::Row { period } => {
                out.fill(0.0);
                if g.is_empty() {
                    return;
                }
                let acc = &mut out[..*period];
                for chunk in g.chunks_exact(*period) {
                    for (o, &v) in acc.iter_mut().zip(chunk) {
                        *o += v;
                    }
                }
            }
            Layout::Col { inner } => {
                if g.is_empty() {
                    out.fill(0.0);
                    return;
                }
                for (o, chunk) in out.iter_mut().zip(g.chunks_exact(*inner)) {
                    *o = sum_all(chunk);
                }
            }
            Layout::Strided(st) => {
                out.fill(0.0);
                let len = row_len(to);
                let step = last_step(st);
                for_each_row(to, [st], |o, [xb]| {
                    let src = &g[o..o + len];
                    match step {
                        0 => out[xb] += sum_all(src),
                        1 => {
                            for (d, &v) in out[xb..xb + len].iter_mut().zip(src) {
                                *d += v;
                            }
                        }
                        _ => {
                            for (j, &v) in src.iter().enumerate() {
                                out[xb + j * step] += v;
                            }
                        }
                    }
                });
            }
        }
    }
}

#[cfg(test)]
// The references index with plain loops on purpose: they must be obviously correct.
#[allow(clippy::needless_range_loop)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::{broadcast_shapes, shape, wave};
    use proptest::prelude::*;

    /// Reference reading index: unravel `i` in `to`, then ravel in the padded `from` with
    /// stretched axes pinned to 0.
    pub(crate) fn naive_index(from: &[usize], to: &[usize], i: usize) -> usize {
        let pad = to.len() - from.len();
        let mut rem = i;
        let mut idx = 0;
        let mut fstride = 1;
        for d in (0..to.len()).rev() {
            let m = rem % to[d];
            rem /= to[d];
            let fd = if d < pad { 1 } else { from[d - pad] };
            if fd != 1 {
                idx += m * fstride;
            }
            fstride *= fd;
        }
        idx
    }

    /// Index a layout gives by its variant's own definition.
    pub(crate) fn layout_index(layout: &Layout, to: &[usize], i: usize) -> usize {
        match layout {
            Layout::Full => i,
            Layout::Scalar => 0,
            Layout::Row { period } => i % period,
            Layout::Col { inner } => i / inner,
            Layout::Strided(st) => {
                let mut rem = i;
                let mut idx = 0;
                for d in (0..to.len()).rev() {
                    idx += (rem % to[d]) * st[d];
                    rem /= to[d];
                }
                idx
            }
        }
    }

    pub(crate) fn naive_broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
        let rank = a.len().max(b.len());
        let mut out = vec![];
        for d in 0..rank {
            let da = if d + a.len() >= rank {
                a[d + a.len() - rank]
            } else {
                1
            };
            let db = if d + b.len() >= rank {
                b[d + b.len() - rank]
            } else {
                1
            };
            if da != db && da != 1 && db != 1 {
                return None;
            }
            out.push(if da == 1 { db } else { da });
        }
        Some(out)
    }

    fn check_layout(from: &[usize], to: &[usize]) -> Result<Layout, TestCaseError> {
        let l = Layout::new(from, to).expect("broadcastable");
        let st = l.strides(to);
        let strided = Layout::Strided(st);
        for i in 0..numel(to) {
            let want = naive_index(from, to, i);
            prop_assert_eq!(
                layout_index(&l, to, i),
                want,
                "{:?} {:?}->{:?} i={}",
                l,
                from,
                to,
                i
            );
            prop_assert_eq!(layout_index(&strided, to, i), want);
        }
        match &l {
            Layout::Full => prop_assert_eq!(numel(from), numel(to)),
            Layout::Scalar => prop_assert_eq!(numel(from), 1),
            Layout::Row { .. } | Layout::Col { .. } => {}
            Layout::Strided(_) => {
                // A simpler layout must not have been available (vacuous for empty outputs,
                // where every layout reads nothing).
                let n = numel(to);
                if n == 0 {
                    return Ok(l);
                }
                let fits = |cand: &Layout| {
                    (0..n).all(|i| layout_index(cand, to, i) == naive_index(from, to, i))
                };
                prop_assert!(numel(from) != n);
                prop_assert!(numel(from) != 1);
                let row = Layout::Row {
                    period: numel(from),
                };
                prop_assert!(!fits(&row), "Row would fit");
                let col_fits = (1..=n).any(|inner| fits(&Layout::Col { inner }));
                prop_assert!(!col_fits, "Col would fit");
            }
        }
        Ok(l)
    }

    proptest! {
        #[test]
        fn broadcast_shape_matches_naive(
            a in shape(0..=3),
            b in shape(0..=3),
        ) {
            let got = broadcast_shape(&a, &b).map(|s| s.to_vec());
            prop_assert_eq!(got, naive_broadcast_shape(&a, &b));
        }

        #[test]
        fn layouts_match_reference((to, a, b) in broadcast_shapes()) {
            let out = broadcast_shape(&a, &b).unwrap();
            prop_assert_eq!(broadcast_shape(&out, &to).map(|s| s.to_vec()), Some(to.clone()));
            check_layout(&a, &to)?;
            check_layout(&b, &to)?;
            check_layout(&a, &out)?;
            check_layout(&b, &out)?;
            check_layout(&to, &to)?;
        }

        #[test]
        fn layout_rejects_non_broadcastable(
            from in shape(0..=3),
            to in shape(0..=3),
        ) {
            let ok = naive_broadcast_shape(&from, &to).as_deref() == Some(&to[..]);
            prop_assert_eq!(Layout::new(&from, &to).is_some(), ok);
            if ok {
                check_layout(&from, &to)?;
            }
        }

        #[test]
        fn broadcast_to_and_sum_to_match_naive((to, from, _b) in broadcast_shapes()) {
            let layout = Layout::new(&from, &to).unwrap();
            let x = wave(numel(&from));
            let n = numel(&to);
            let mut out = vec![f32::NAN; n];
            broadcast_to(&x, &layout, &to, &mut out);
            let mut out_s = vec![f32::NAN; n];
            broadcast_to(&x, &Layout::Strided(layout.strides(&to)), &to, &mut out_s);
            for i in 0..n {
                prop_assert_eq!(out[i], x[naive_index(&from, &to, i)]);
                prop_assert_eq!(out_s[i], out[i]);
            }
            let g = wave(n + 3)[3..].to_vec();
            let mut want = vec![0.0f64; x.len()];
            for (i, &gv) in g.iter().enumerate() {
                want[naive_index(&from, &to, i)] += gv as f64;
            }
            for l in [layout.clone(), Layout::Strided(layout.strides(&to))] {
                let mut got = vec![f32::NAN; x.len()];
                sum_to(&g, &to, &l, &mut got);
                for (gv, wv) in got.iter().zip(&want) {
                    prop_assert!((*gv as f64 - wv).abs() <= 1e-5 * (1.0 + wv.abs()) * n as f64, "{:?}: {} vs {}", l, gv, wv);
                }
            }
        }
    }

    #[test]
    fn every_variant_is_chosen() {
        assert_eq!(Layout::new(&[2, 3], &[2, 3]), Some(Layout::Full));
        assert_eq!(Layout::new(&[3], &[1, 3]), Some(Layout::Full));
        assert_eq!(Layout::new(&[], &[2, 3]), Some(Layout::Scalar));
        assert_eq!(Layout::new(&[1, 1], &[2, 3]), Some(Layout::Scalar));
        assert_eq!(Layout::new(&[3], &[2, 3]), Some(Layout::Row { period: 3 }));
        assert_eq!(
            Layout::new(&[1, 3, 4], &[2, 3, 4]),
            Some(Layout::Row { period: 12 })
        );
        assert_eq!(
            Layout::new(&[2, 1], &[2, 3]),
            Some(Layout::Col { inner: 3 })
        );
        assert_eq!(
            Layout::new(&[2, 1, 1], &[2, 3, 4]),
            Some(Layout::Col { inner: 12 })
        );
        assert_eq!(
            Layout::new(&[3, 1], &[2, 3, 4]),
            Some(Layout::Strided(Shape::from_slice(&[0, 1, 0])))
        );
        assert_eq!(
            Layout::new(&[2, 1, 4], &[2, 3, 4]),
            Some(Layout::Strided(Shape::from_slice(&[4, 0, 1])))
        );
        assert_eq!(Layout::new(&[2, 3], &[3]), None);
        assert_eq!(Layout::new(&[1, 3], &[3]), None);
        assert_eq!(Layout::new(&[2], &[3]), None);
    }

    #[test]
    fn zero_sized_outputs() {
        // Once found by proptest: an empty output where no simpler layout is chosen.
        assert!(Layout::new(&[0, 1], &[2, 0, 2]).is_some());
        assert_eq!(
            broadcast_shape(&[0, 1], &[1, 3]).unwrap().to_vec(),
            vec![0, 3]
        );
        let l = Layout::new(&[1, 3], &[0, 3]).unwrap();
        let mut out = [];
        broadcast_to(&[1.0, 2.0, 3.0], &l, &[0, 3], &mut out);
        let mut s = [9.0; 3];
        sum_to(&[], &[0, 3], &l, &mut s);
        assert_eq!(s, [0.0; 3]);
        let l = Layout::new(&[2, 1], &[2, 0]).unwrap();
        let mut s = [9.0; 2];
        sum_to(&[], &[2, 0], &l, &mut s);
        assert_eq!(s, [0.0; 2]);
        let l = Layout::new(&[1, 1], &[3, 0]).unwrap();
        let mut s = [9.0; 1];
        sum_to(&[], &[3, 0], &l, &mut s);
        assert_eq!(s, [0.0]);
    }

    #[test]
    fn bias_gradient() {
        let g = [1.0, 2.0, 3.0, 10.0, 20.0, 30.0];
        let mut out = [0.0; 3];
        sum_to(&g, &[2, 3], &Layout::Row { period: 3 }, &mut out);
        assert_eq!(out, [11.0, 22.0, 33.0]);
        let mut out = [0.0; 2];
        sum_to(&g, &[2, 3], &Layout::Col { inner: 3 }, &mut out);
        assert_eq!(out, [6.0, 60.0]);
    }
}

/// `x` broadcast to `shape` through its layout, optionally scaled.
#[derive(Clone, Debug)]
pub(crate) struct BroadcastCall<S> {
    pub(crate) x: S,
    pub(crate) layout: Layout,
    pub(crate) shape: Shape,
    pub(crate) scale: Option<f32>,
}

impl<S> BroadcastCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        let n = numel(&self.shape);
        broadcast_to(get(&self.x), &self.layout, &self.shape, &mut out[..n]);
        if let Some(s) = self.scale {
            super::scale_inplace(&mut out[..n], s);
        }
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "broadcast {}{} to {}{}",
            name(&self.x),
            super::describe_layout(&self.layout),
            super::describe_dims(&self.shape),
            self.scale.map(|s| format!(" ×{s}")).unwrap_or_default()
        )
    }
}

/// `g` of `shape` summed down to `n` values (the adjoint of broadcasting), optionally scaled.
#[derive(Clone, Debug)]
pub(crate) struct SumToCall<S> {
    pub(crate) g: S,
    pub(crate) layout: Layout,
    pub(crate) shape: Shape,
    pub(crate) n: usize,
    pub(crate) scale: Option<f32>,
}

impl<S> SumToCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        let total = numel(&self.shape);
        let dst = &mut out[..self.n];
        dst.fill(0.0);
        sum_to(&get(&self.g)[..total], &self.shape, &self.layout, dst);
        if let Some(s) = self.scale {
            super::scale_inplace(dst, s);
        }
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "sum_to {} {} down to [{}]{}{}",
            name(&self.g),
            super::describe_dims(&self.shape),
            self.n,
            super::describe_layout(&self.layout),
            self.scale.map(|s| format!(" ×{s}")).unwrap_or_default()
        )
    }
}
