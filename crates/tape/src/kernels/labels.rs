//! Integer class labels stored as `f32`: validation, picking per-row entries, scattering
//! gradients back and one-hot encoding.

/// `Ok` if every label is finite, integral and in `0..classes`; otherwise `Err((row, value))`
/// of the FIRST bad one.
pub fn check_labels(labels: &[f32], classes: usize) -> Result<(), (usize, f32)> {
    for (r, &v) in labels.iter().enumerate() {
        // `v >= 0.0` also rejects NaN; the cast is exact once `v` is a finite non-negative
        // integer, and saturates for huge values, which the `< classes` test then rejects.
        let ok = v.is_finite() && v >= 0.0 && v.fract() == 0.0 && (v as usize) < classes;
        if !ok {
            return Err((r, v));
        }
    }
    Ok(())
}

/// Column index of an already validated label.
#[inline(always)]
fn col(label: f32, cols: usize) -> usize {
    debug_assert!(label >= 0.0 && label.fract() == 0.0 && (label as usize) < cols);
    label as usize
}

/// `out[r] = x[r*cols + labels[r]]` (labels already checked with [`check_labels`]).
pub fn pick(x: &[f32], rows: usize, cols: usize, labels: &[f32], out: &mut [f32]) {
    debug_assert_eq!(x.len(), rows * cols);
    debug_assert_eq!(labels.len(), rows);
    debug_assert_eq!(out.len(), rows);
    if cols == 0 {
        return;
    }
    for ((o, row), &l) in out.iter_mut().zip(x.chunks_exact(cols)).zip(labels) {
        *o = row[col(l, cols)];
    }
}

/// `out` (`rows×cols`) = 0 except `out[r*cols + labels[r]] = g[r]`. Overwrites `out`.
pub fn scatter(g: &[f32], rows: usize, cols: usize, labels: &[f32], out: &mut [f32]) {
    debug_assert_eq!(g.len(), rows);
    debug_assert_eq!(labels.len(), rows);
    debug_assert_eq!(out.len(), rows * cols);
    out.fill(0.0);
    if cols == 0 {
        return;
    }
    for ((row, &gv), &l) in out.chunks_exact_mut(cols).zip(g).zip(labels) {
        row[col(l, cols)] = gv;
    }
}

/// The softmax cross-entropy gradient in one pass: `out[r, j] = s − p[r, j]·gᵣ` with `s = gᵣ` at
/// `j = labels[r]` and 0 elsewhere, where `gᵣ = 0 + g[r]` (labels already checked).
///
/// This is `scatter(g) − p · sum_last(scatter(g))` evaluated element by element with the same
/// roundings: the row sum of a scattered row adds zeros to `g[r]`, which is exact (and turns a
/// −0 into +0, hence the `0 +`), so the result is bit-identical to that sequence of kernels.
pub fn softmax_xent_grad(
    p: &[f32],
    g: &[f32],
    rows: usize,
    cols: usize,
    labels: &[f32],
    out: &mut [f32],
) {
    debug_assert_eq!(p.len(), rows * cols);
    debug_assert_eq!(g.len(), rows);
    debug_assert_eq!(labels.len(), rows);
    debug_assert_eq!(out.len(), rows * cols);
    if cols == 0 {
        return;
    }
    let rows_of = out.chunks_exact_mut(cols).zip(p.chunks_exact(cols));
    for (((orow, prow), &gv), &l) in rows_of.zip(g).zip(labels) {
        let gr = 0.0 + gv;
        let at = col(l, cols);
        for (j, (o, &pv)) in orow.iter_mut().zip(prow).enumerate() {
            let s = if j == at { gv } else { 0.0 };
            *o = s - pv * gr;
        }
    }
}

/// `out` (`rows×classes`) = one-hot rows of the (already checked) labels. Overwrites `out`.
pub fn one_hot(labels: &[f32], rows: usize, classes: usize, out: &mut [f32]) {
    debug_assert_eq!(labels.len(), rows);
    debug_assert_eq!(out.len(), rows * classes);
    out.fill(0.0);
    if classes == 0 {
        return;
    }
    for (row, &l) in out.chunks_exact_mut(classes).zip(labels) {
        row[col(l, classes)] = 1.0;
    }
}

#[cfg(test)]
// The references index with plain loops on purpose: they must be obviously correct.
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labelled() -> impl Strategy<Value = (usize, usize, Vec<f32>)> {
        (0usize..=6, 1usize..=7).prop_flat_map(|(rows, cols)| {
            (
                Just(rows),
                Just(cols),
                prop::collection::vec((0..cols).prop_map(|v| v as f32), rows),
            )
        })
    }

    proptest! {
        #[test]
        fn pick_scatter_one_hot_match_naive((rows, cols, labels) in labelled()) {
            prop_assert_eq!(check_labels(&labels, cols), Ok(()));
            let x: Vec<f32> = (0..rows * cols).map(|v| v as f32 * 0.5).collect();
            let g: Vec<f32> = (0..rows).map(|v| v as f32 + 1.0).collect();
            let mut picked = vec![f32::NAN; rows];
            pick(&x, rows, cols, &labels, &mut picked);
            let mut sc = vec![f32::NAN; rows * cols];
            scatter(&g, rows, cols, &labels, &mut sc);
            let mut oh = vec![f32::NAN; rows * cols];
            one_hot(&labels, rows, cols, &mut oh);
            for r in 0..rows {
                let l = labels[r] as usize;
                prop_assert_eq!(picked[r], x[r * cols + l]);
                for c in 0..cols {
                    let hit = c == l;
                    prop_assert_eq!(sc[r * cols + c], if hit { g[r] } else { 0.0 });
                    prop_assert_eq!(oh[r * cols + c], if hit { 1.0 } else { 0.0 });
                }
            }
        }

        #[test]
        fn check_labels_reports_first_bad(
            (rows, cols, mut labels) in labelled(),
            bad in prop_oneof![
                Just(-1.0f32), Just(0.5f32), Just(f32::NAN), Just(f32::INFINITY),
                Just(f32::NEG_INFINITY), Just(1e30f32), Just(7.0f32), Just(2.25f32),
            ],
            pos in 0usize..6,
            second in any::<bool>(),
        ) {
            prop_assume!(rows > 0);
            let pos = pos % rows;
            labels[pos] = bad;
            if second && pos + 1 < rows {
                labels[pos + 1] = -5.0;
            }
            let res = check_labels(&labels, cols);
            // 7.0 is only bad for cols ≤ 7; all generated cols are ≤ 7.
            match res {
                Err((r, v)) => {
                    prop_assert_eq!(r, pos);
                    prop_assert!(v.to_bits() == bad.to_bits());
                }
                Ok(()) => prop_assert!(false, "{} accepted with {} classes", bad, cols),
            }
        }
    }

    #[test]
    fn boundaries() {
        assert_eq!(check_labels(&[], 0), Ok(()));
        assert_eq!(check_labels(&[0.0], 0), Err((0, 0.0)));
        assert_eq!(check_labels(&[0.0, 2.0, 3.0], 3), Err((2, 3.0)));
        assert_eq!(check_labels(&[-0.0, 2.0], 3), Ok(()));
        let e = check_labels(&[1.0, f32::NAN], 3).unwrap_err();
        assert_eq!(e.0, 1);
        assert!(e.1.is_nan());
    }
}

// Kernel calls of the label kernels (see `elementwise.rs`). Their labels are checked on every
// call: a bad one is returned as `(row, value)` for the caller to report.

/// `out[i] = x[i, labels[i]]`.
#[derive(Clone, Debug)]
pub(crate) struct PickCall<S> {
    pub(crate) x: S,
    pub(crate) labels: S,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
}

impl<S> PickCall<S> {
    pub(crate) fn run<'a>(
        &self,
        get: impl Fn(&S) -> &'a [f32],
        out: &mut [f32],
    ) -> Result<(), (usize, f32)> {
        let (rows, cols) = (self.rows, self.cols);
        let l = &get(&self.labels)[..rows];
        check_labels(l, cols)?;
        pick(
            &get(&self.x)[..rows * cols],
            rows,
            cols,
            l,
            &mut out[..rows],
        );
        Ok(())
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "pick {} [{}×{}] at {}",
            name(&self.x),
            self.rows,
            self.cols,
            name(&self.labels)
        )
    }
}

/// Zeros of `rows×cols` with `g[i]` at `[i, labels[i]]` (the adjoint of [`PickCall`]).
#[derive(Clone, Debug)]
pub(crate) struct ScatterCall<S> {
    pub(crate) g: S,
    pub(crate) labels: S,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
}

impl<S> ScatterCall<S> {
    pub(crate) fn run<'a>(
        &self,
        get: impl Fn(&S) -> &'a [f32],
        out: &mut [f32],
    ) -> Result<(), (usize, f32)> {
        let (rows, cols) = (self.rows, self.cols);
        let l = &get(&self.labels)[..rows];
        check_labels(l, cols)?;
        scatter(
            &get(&self.g)[..rows],
            rows,
            cols,
            l,
            &mut out[..rows * cols],
        );
        Ok(())
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "scatter {} into [{}×{}] at {}",
            name(&self.g),
            self.rows,
            self.cols,
            name(&self.labels)
        )
    }
}

/// One-hot rows of `classes` values.
#[derive(Clone, Debug)]
pub(crate) struct OneHotCall<S> {
    pub(crate) labels: S,
    pub(crate) rows: usize,
    pub(crate) classes: usize,
}

impl<S> OneHotCall<S> {
    pub(crate) fn run<'a>(
        &self,
        get: impl Fn(&S) -> &'a [f32],
        out: &mut [f32],
    ) -> Result<(), (usize, f32)> {
        let (rows, classes) = (self.rows, self.classes);
        let l = &get(&self.labels)[..rows];
        check_labels(l, classes)?;
        one_hot(l, rows, classes, &mut out[..rows * classes]);
        Ok(())
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "one_hot {} [{}×{}]",
            name(&self.labels),
            self.rows,
            self.classes
        )
    }
}

/// The softmax cross-entropy gradient (see [`softmax_xent_grad`]) of `rows×cols` probabilities.
#[derive(Clone, Debug)]
pub(crate) struct XentGradCall<S> {
    pub(crate) p: S,
    pub(crate) g: S,
    pub(crate) labels: S,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
}

impl<S> XentGradCall<S> {
    pub(crate) fn run<'a>(
        &self,
        get: impl Fn(&S) -> &'a [f32],
        out: &mut [f32],
    ) -> Result<(), (usize, f32)> {
        let (rows, cols) = (self.rows, self.cols);
        let l = &get(&self.labels)[..rows];
        check_labels(l, cols)?;
        softmax_xent_grad(
            &get(&self.p)[..rows * cols],
            &get(&self.g)[..rows],
            rows,
            cols,
            l,
            &mut out[..rows * cols],
        );
        Ok(())
    }

    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        format!(
            "softmax_xent_grad {} [{}×{}] by {} at {}",
            name(&self.p),
            self.rows,
            self.cols,
            name(&self.g),
            name(&self.labels)
        )
    }
}
