//! Axis reductions over an `(outer, len, inner)` row-major view, argmax, max masks, transpose
//! and strided row copies.
//!
//! Maximum-based kernels propagate NaN: a NaN counts as larger than every number, so
//! [`reduce_max`] returns NaN and [`max_mask`] / [`argmax_rows`] point at the first NaN.

/// Number of independent accumulators in [`sum_all`]: enough to hide add latency and to let
/// the compiler keep them in one or two SIMD registers.
const LANES: usize = 8;

crate::multiversion! {
    /// Sum of all elements with a fixed, length-determined summation order (8 interleaved partial
    /// sums combined pairwise, then the tail), so results are deterministic and the loop vectorises.
    pub fn sum_all / sum_all_at(x: &[f32]) -> f32 {
        let mut acc = [0.0f32; LANES];
        let chunks = x.chunks_exact(LANES);
        let tail = chunks.remainder();
        for c in chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += v;
            }
        }
        let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for &v in tail {
            s += v;
        }
        s
    }
}

/// NaN-propagating maximum step: keeps `m` unless `v` is larger or `v` is NaN.
#[inline(always)]
fn max_step(m: f32, v: f32) -> f32 {
    if v > m || v.is_nan() {
        v
    } else {
        m
    }
}

crate::multiversion! {
    /// NaN-propagating maximum of a slice (`-inf` when empty).
    pub fn max_all / max_all_at(x: &[f32]) -> f32 {
        let mut acc = [f32::NEG_INFINITY; LANES];
        let chunks = x.chunks_exact(LANES);
        let tail = chunks.remainder();
        for c in chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a = max_step(*a, v);
            }
        }
        let mut m = f32::NEG_INFINITY;
        for v in acc.into_iter().chain(tail.iter().copied()) {
            m = max_step(m, v);
        }
        m
    }
}

/// Index of the first maximum of a non-empty slice (the first NaN if there is one).
#[inline(always)]
fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    let mut m = x[0];
    if m.is_nan() {
        return 0;
    }
    for (i, &v) in x.iter().enumerate().skip(1) {
        if v.is_nan() {
            return i;
        }
        if v > m {
            m = v;
            best = i;
        }
    }
    best
}

crate::multiversion! {
    /// `out[o*inner+i] = Σ_l x[(o*len+l)*inner+i]`; `out.len() == outer*inner`.
    ///
    /// Summation order is fixed (deterministic): for `inner == 1` each row is summed with
    /// [`sum_all`]'s 8 partial sums; otherwise rows are added in order of `l`, vectorised across `i`.
    pub fn reduce_sum / reduce_sum_at(x: &[f32], outer: usize, len: usize, inner: usize, out: &mut [f32]) {
        debug_assert_eq!(x.len(), outer * len * inner);
        debug_assert_eq!(out.len(), outer * inner);
        if out.is_empty() {
            return;
        }
        if len == 0 {
            out.fill(0.0);
            return;
        }
        if inner == 1 {
            for (o, row) in out.iter_mut().zip(x.chunks_exact(len)) {
                *o = sum_all(row);
            }
            return;
        }
        for (acc, block) in out.chunks_exact_mut(inner).zip(x.chunks_exact(len * inner)) {
            let mut rows = block.chunks_exact(inner);
            if let Some(first) = rows.next() {
                acc.copy_from_slice(first);
            }
            for row in rows {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += v;
                }
            }
        }
    }
}

crate::multiversion! {
    /// Mean along the axis: [`reduce_sum`] divided by `len` (`len == 0` gives NaN).
    pub fn reduce_mean / reduce_mean_at(x: &[f32], outer: usize, len: usize, inner: usize, out: &mut [f32]) {
        if len == 0 {
            out.fill(f32::NAN);
            return;
        }
        reduce_sum(x, outer, len, inner, out);
        let n = len as f32;
        for v in out.iter_mut() {
            *v /= n;
        }
    }
}

crate::multiversion! {
    /// Maximum along the axis (`len == 0` gives `-inf`; NaN propagates).
    pub fn reduce_max / reduce_max_at(x: &[f32], outer: usize, len: usize, inner: usize, out: &mut [f32]) {
        debug_assert_eq!(x.len(), outer * len * inner);
        debug_assert_eq!(out.len(), outer * inner);
        if out.is_empty() {
            return;
        }
        if len == 0 {
            out.fill(f32::NEG_INFINITY);
            return;
        }
        if inner == 1 {
            for (o, row) in out.iter_mut().zip(x.chunks_exact(len)) {
                *o = max_all(row);
            }
            return;
        }
        for (acc, block) in out.chunks_exact_mut(inner).zip(x.chunks_exact(len * inner)) {
            let mut rows = block.chunks_exact(inner);
            if let Some(first) = rows.next() {
                acc.copy_from_slice(first);
            }
            for row in rows {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a = max_step(*a, v);
                }
            }
        }
    }
}

/// Columns handled together by [`max_mask`]'s blocked scan: the running maxima and their
/// indices for one block live in on-stack arrays, so no scratch memory is needed.
const MASK_BLOCK: usize = 16;

crate::multiversion! {
    /// `out` has `x`'s shape: 1.0 at the FIRST position of the maximum along the axis (the first
    /// NaN if any), 0.0 elsewhere. Overwrites `out`.
    pub fn max_mask / max_mask_at(x: &[f32], outer: usize, len: usize, inner: usize, out: &mut [f32]) {
        debug_assert_eq!(x.len(), outer * len * inner);
        debug_assert_eq!(out.len(), x.len());
        out.fill(0.0);
        if out.is_empty() {
            return;
        }
        if inner == 1 {
            for (orow, row) in out.chunks_exact_mut(len).zip(x.chunks_exact(len)) {
                orow[argmax(row)] = 1.0;
            }
            return;
        }
        for (oblock, block) in out
            .chunks_exact_mut(len * inner)
            .zip(x.chunks_exact(len * inner))
        {
            let mut i0 = 0;
            while i0 < inner {
                let w = MASK_BLOCK.min(inner - i0);
                let mut best = [f32::NEG_INFINITY; MASK_BLOCK];
                let mut idx = [0usize; MASK_BLOCK];
                best[..w].copy_from_slice(&block[i0..i0 + w]);
                for l in 1..len {
                    let row = &block[l * inner + i0..l * inner + i0 + w];
                    for ((b, k), &v) in best.iter_mut().zip(idx.iter_mut()).zip(row) {
                        // Strict `>` keeps the first maximum; once a NaN is held it is never replaced.
                        if v > *b || (v.is_nan() && !b.is_nan()) {
                            *b = v;
                            *k = l;
                        }
                    }
                }
                for (j, &l) in idx[..w].iter().enumerate() {
                    oblock[l * inner + i0 + j] = 1.0;
                }
                i0 += w;
            }
        }
    }
}

crate::multiversion! {
    /// `out[r]` = index (as f32) of the first maximum of row `r` of a `rows×cols` matrix (the first
    /// NaN if any). `cols ≥ 1`; with `cols == 0` there is no answer and NaN is written.
    pub fn argmax_rows / argmax_rows_at(x: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
        debug_assert_eq!(x.len(), rows * cols);
        debug_assert_eq!(out.len(), rows);
        debug_assert!(cols > 0 || rows == 0);
        if cols == 0 {
            out.fill(f32::NAN);
            return;
        }
        for (o, row) in out.iter_mut().zip(x.chunks_exact(cols)) {
            *o = argmax(row) as f32;
        }
    }
}

/// Tile edge for [`transpose`]: two 32×32 f32 tiles (8 KiB) fit comfortably in L1.
const TILE: usize = 32;

crate::multiversion! {
    /// Transposes a `rows×cols` row-major matrix into `cols×rows` (cache-blocked).
    pub fn transpose / transpose_at(x: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
        debug_assert_eq!(x.len(), rows * cols);
        debug_assert_eq!(out.len(), rows * cols);
        if rows <= 1 || cols <= 1 {
            // A vector is its own transpose in memory.
            out.copy_from_slice(x);
            return;
        }
        for r0 in (0..rows).step_by(TILE) {
            let r1 = (r0 + TILE).min(rows);
            for c0 in (0..cols).step_by(TILE) {
                let c1 = (c0 + TILE).min(cols);
                for r in r0..r1 {
                    let src = &x[r * cols + c0..r * cols + c1];
                    for (c, &v) in (c0..c1).zip(src) {
                        out[c * rows + r] = v;
                    }
                }
            }
        }
    }
}

/// Copies `rows` rows of `width` elements: src row `r` starts at `r*src_stride+src_offset`, dst
/// row `r` at `r*dst_stride+dst_offset` (used by concatenate/split).
#[allow(clippy::too_many_arguments)] // two (slice, stride, offset) triples plus the block size
pub fn copy_rows(
    src: &[f32],
    src_stride: usize,
    src_offset: usize,
    dst: &mut [f32],
    dst_stride: usize,
    dst_offset: usize,
    rows: usize,
    width: usize,
) {
    if width == 0 {
        return;
    }
    for r in 0..rows {
        let s = r * src_stride + src_offset;
        let d = r * dst_stride + dst_offset;
        dst[d..d + width].copy_from_slice(&src[s..s + width]);
    }
}

#[cfg(test)]
// The references index with plain loops on purpose: they must be obviously correct.
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::testing::values;
    use proptest::prelude::*;

    fn dims() -> impl Strategy<Value = (usize, usize, usize, Vec<f32>)> {
        (0usize..=4, 0usize..=9, 0usize..=5).prop_flat_map(|(o, l, i)| {
            let v = prop_oneof![
                8 => -100.0f32..100.0,
                1 => (-3i32..3).prop_map(|v| v as f32),
            ];
            (
                Just(o),
                Just(l),
                Just(i),
                prop::collection::vec(v, o * l * i),
            )
        })
    }

    fn at(x: &[f32], len: usize, inner: usize, o: usize, l: usize, i: usize) -> f32 {
        x[(o * len + l) * inner + i]
    }

    proptest! {
        #[test]
        fn sum_mean_max_match_naive((outer, len, inner, x) in dims()) {
            let mut s = vec![f32::NAN; outer * inner];
            let mut m = s.clone();
            let mut mx = s.clone();
            reduce_sum(&x, outer, len, inner, &mut s);
            reduce_mean(&x, outer, len, inner, &mut m);
            reduce_max(&x, outer, len, inner, &mut mx);
            for o in 0..outer {
                for i in 0..inner {
                    let mut ws = 0.0f64;
                    let mut wa = 0.0f64;
                    let mut wm = f32::NEG_INFINITY;
                    for l in 0..len {
                        let v = at(&x, len, inner, o, l, i);
                        ws += v as f64;
                        wa += v.abs() as f64;
                        wm = wm.max(v);
                    }
                    let k = o * inner + i;
                    let tol = 1e-6 * (len as f64 + 1.0) * wa + 1e-6;
                    prop_assert!((s[k] as f64 - ws).abs() <= tol, "{} vs {}", s[k], ws);
                    if len == 0 {
                        prop_assert!(m[k].is_nan());
                    } else {
                        prop_assert!((m[k] as f64 - ws / len as f64).abs() <= tol / len as f64);
                    }
                    prop_assert_eq!(mx[k], wm);
                }
            }
        }

        #[test]
        fn max_mask_and_argmax_match_naive((outer, len, inner, x) in dims()) {
            let mut mask = vec![f32::NAN; x.len()];
            max_mask(&x, outer, len, inner, &mut mask);
            for o in 0..outer {
                for i in 0..inner {
                    let mut best = 0;
                    for l in 1..len {
                        if at(&x, len, inner, o, l, i) > at(&x, len, inner, o, best, i) {
                            best = l;
                        }
                    }
                    for l in 0..len {
                        let want = if l == best { 1.0 } else { 0.0 };
                        prop_assert_eq!(at(&mask, len, inner, o, l, i), want);
                    }
                }
            }
            if len > 0 {
                // Rows of the (outer*inner... ) view: treat x as (outer) × (len*inner) matrix rows.
                let cols = len * inner;
                if cols > 0 {
                    let mut am = vec![f32::NAN; outer];
                    argmax_rows(&x, outer, cols, &mut am);
                    for (r, &a) in am.iter().enumerate() {
                        let row = &x[r * cols..(r + 1) * cols];
                        let mut best = 0;
                        for (c, &v) in row.iter().enumerate() {
                            if v > row[best] {
                                best = c;
                            }
                        }
                        prop_assert_eq!(a, best as f32);
                    }
                }
            }
        }

        #[test]
        fn transpose_matches_naive(rows in 0usize..=70, cols in 0usize..=40) {
            let x: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            let mut out = vec![f32::NAN; x.len()];
            transpose(&x, rows, cols, &mut out);
            for r in 0..rows {
                for c in 0..cols {
                    prop_assert_eq!(out[c * rows + r], x[r * cols + c]);
                }
            }
        }

        #[test]
        fn copy_rows_matches_naive(
            rows in 0usize..=5,
            width in 0usize..=4,
            src_pad in 0usize..=3,
            dst_pad in 0usize..=3,
            so in 0usize..=3,
            dof in 0usize..=3,
        ) {
            let ss = width + src_pad + so;
            let ds = width + dst_pad + dof;
            let src: Vec<f32> = (0..rows * ss).map(|v| v as f32).collect();
            let mut dst = vec![-1.0; rows * ds];
            copy_rows(&src, ss, so, &mut dst, ds, dof, rows, width);
            let mut want = vec![-1.0; rows * ds];
            for r in 0..rows {
                for j in 0..width {
                    want[r * ds + dof + j] = src[r * ss + so + j];
                }
            }
            prop_assert_eq!(dst, want);
        }

        #[test]
        fn sum_all_is_close(x in values(-10.0..10.0, 0..100)) {
            let want: f64 = x.iter().map(|&v| v as f64).sum();
            prop_assert!((sum_all(&x) as f64 - want).abs() <= 1e-5 * (x.len() as f64 + 1.0) * 10.0);
        }
    }

    #[test]
    fn nan_and_ties() {
        let x = [1.0, 3.0, 3.0, f32::NAN, 2.0, f32::NAN];
        let mut out = [0.0; 1];
        reduce_max(&x, 1, 6, 1, &mut out);
        assert!(out[0].is_nan());
        argmax_rows(&x, 1, 6, &mut out);
        assert_eq!(out, [3.0]);
        argmax_rows(&x[..3], 1, 3, &mut out);
        assert_eq!(out, [1.0]);
        // Same data along a strided axis (inner = 2, second column all 0 ties).
        let y = [
            1.0,
            0.0,
            3.0,
            0.0,
            3.0,
            0.0,
            f32::NAN,
            0.0,
            2.0,
            0.0,
            f32::NAN,
            0.0,
        ];
        let mut mask = [9.0; 12];
        max_mask(&y, 1, 6, 2, &mut mask);
        assert_eq!(
            mask,
            [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
        let mut mx = [0.0; 2];
        reduce_max(&y, 1, 6, 2, &mut mx);
        assert!(mx[0].is_nan());
        assert_eq!(mx[1], 0.0);
        let mut e = [0.0; 3];
        reduce_max(&[], 3, 0, 1, &mut e);
        assert_eq!(e, [f32::NEG_INFINITY; 3]);
    }

    #[test]
    fn wide_inner_blocks() {
        // inner spans more than one MASK_BLOCK.
        let (outer, len, inner) = (2, 3, 37);
        let x: Vec<f32> = (0..outer * len * inner)
            .map(|v| ((v * 7919) % 13) as f32)
            .collect();
        let mut mask = vec![0.0; x.len()];
        max_mask(&x, outer, len, inner, &mut mask);
        for o in 0..outer {
            for i in 0..inner {
                let col: Vec<f32> = (0..len).map(|l| at(&x, len, inner, o, l, i)).collect();
                let best = (0..len).fold(0, |b, l| if col[l] > col[b] { l } else { b });
                for l in 0..len {
                    assert_eq!(
                        at(&mask, len, inner, o, l, i),
                        if l == best { 1.0 } else { 0.0 }
                    );
                }
            }
        }
    }
}

// Kernel calls of the reduction, transpose and row-copy kernels (see `elementwise.rs`).

/// `out = x` over `n` values.
#[derive(Clone, Debug)]
pub(crate) struct CopyCall<S> {
    pub(crate) x: S,
    pub(crate) n: usize,
}

impl<S> CopyCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        out[..self.n].copy_from_slice(&get(&self.x)[..self.n]);
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!("copy {} [{}]", name(&self.x), self.n)
    }
}

/// The transpose of a `rows×cols` matrix.
#[derive(Clone, Debug)]
pub(crate) struct TransposeCall<S> {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) x: S,
}

impl<S> TransposeCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        let n = self.rows * self.cols;
        transpose(&get(&self.x)[..n], self.rows, self.cols, &mut out[..n]);
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!("transpose {} [{}×{}]", name(&self.x), self.rows, self.cols)
    }
}

/// A sum, mean or max over the middle axis of an `(outer, len, inner)` view.
#[derive(Clone, Debug)]
pub(crate) struct ReduceCall<S> {
    pub(crate) kind: super::ReduceKind,
    pub(crate) outer: usize,
    pub(crate) len: usize,
    pub(crate) inner: usize,
    pub(crate) x: S,
}

impl<S> ReduceCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        let (outer, len, inner) = (self.outer, self.len, self.inner);
        let (src, dst) = (
            &get(&self.x)[..outer * len * inner],
            &mut out[..outer * inner],
        );
        match self.kind {
            super::ReduceKind::Sum => reduce_sum(src, outer, len, inner, dst),
            super::ReduceKind::Mean => reduce_mean(src, outer, len, inner, dst),
            super::ReduceKind::Max => reduce_max(src, outer, len, inner, dst),
        }
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "{} {} over the middle of [{}×{}×{}]",
            format!("{:?}", self.kind).to_lowercase(),
            name(&self.x),
            self.outer,
            self.len,
            self.inner
        )
    }
}

/// 1 at the first maximum along the middle axis of an `(outer, len, inner)` view, 0 elsewhere.
#[derive(Clone, Debug)]
pub(crate) struct MaxMaskCall<S> {
    pub(crate) outer: usize,
    pub(crate) len: usize,
    pub(crate) inner: usize,
    pub(crate) x: S,
}

impl<S> MaxMaskCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        let n = self.outer * self.len * self.inner;
        max_mask(
            &get(&self.x)[..n],
            self.outer,
            self.len,
            self.inner,
            &mut out[..n],
        );
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "max_mask {} over the middle of [{}×{}×{}]",
            name(&self.x),
            self.outer,
            self.len,
            self.inner
        )
    }
}

/// The index of each row's first maximum.
#[derive(Clone, Debug)]
pub(crate) struct ArgmaxCall<S> {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) x: S,
}

impl<S> ArgmaxCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        let (rows, cols) = (self.rows, self.cols);
        argmax_rows(&get(&self.x)[..rows * cols], rows, cols, &mut out[..rows]);
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!("argmax {} [{}×{}]", name(&self.x), self.rows, self.cols)
    }
}

/// Parts (each `width` values per outer row) joined side by side into rows of `row` values.
#[derive(Clone, Debug)]
pub(crate) struct ConcatCall<S> {
    pub(crate) parts: Vec<(S, usize)>,
    pub(crate) outer: usize,
    pub(crate) row: usize,
}

impl<S> ConcatCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        let mut offset = 0;
        for (p, width) in &self.parts {
            copy_rows(get(p), *width, 0, out, self.row, offset, self.outer, *width);
            offset += width;
        }
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|(s, w)| format!("{} ({w} wide)", name(s)))
            .collect();
        format!(
            "concat {} into [{}×{}]",
            parts.join(", "),
            self.outer,
            self.row
        )
    }
}

/// Columns `offset..offset + width` of each of `outer` rows of `row` values.
#[derive(Clone, Debug)]
pub(crate) struct SliceCall<S> {
    pub(crate) x: S,
    pub(crate) outer: usize,
    pub(crate) row: usize,
    pub(crate) offset: usize,
    pub(crate) width: usize,
}

impl<S> SliceCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        let w = self.width;
        copy_rows(
            get(&self.x),
            self.row,
            self.offset,
            out,
            w,
            0,
            self.outer,
            w,
        );
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "slice {} [{}×{}] columns {}..{}",
            name(&self.x),
            self.outer,
            self.row,
            self.offset,
            self.offset + self.width
        )
    }
}

/// Zeros of `n` values with `g` placed at columns `offset..offset + width` of each row (the
/// adjoint of [`SliceCall`]).
#[derive(Clone, Debug)]
pub(crate) struct SliceGradCall<S> {
    pub(crate) g: S,
    pub(crate) outer: usize,
    pub(crate) row: usize,
    pub(crate) offset: usize,
    pub(crate) width: usize,
    pub(crate) n: usize,
}

impl<S> SliceGradCall<S> {
    pub(crate) fn run<'a>(&self, get: impl Fn(&S) -> &'a [f32], out: &mut [f32]) {
        out[..self.n].fill(0.0);
        let w = self.width;
        copy_rows(
            get(&self.g),
            w,
            0,
            out,
            self.row,
            self.offset,
            self.outer,
            w,
        );
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "slice_grad {} into columns {}..{} of [{}×{}]",
            name(&self.g),
            self.offset,
            self.offset + self.width,
            self.outer,
            self.row
        )
    }
}
