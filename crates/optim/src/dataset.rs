//! `Dataset`: hands out mini-batches for training and validation, from arrays that share their
//! first (sample) axis or from a function that produces one batch per call, the way downhill's
//! `Dataset` does, with a seeded, saveable order.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use tape::{Rng, Tensor, TensorView};

/// How a [`Dataset`] cuts and orders its batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetOptions {
    /// Rows per batch; 0, or more than the number of rows, means one batch of all rows.
    /// Ignored for callables, whose batches are whatever the function returns.
    pub batch_size: usize,
    /// Batches per training iteration: `None` means one full pass for arrays and 100 for a
    /// callable.
    pub iteration_size: Option<usize>,
    /// Also permute the rows (not only the order of the batches) before every pass, so that each
    /// pass groups different samples together.
    pub shuffle_samples: bool,
    /// Shuffle the order of the batches before every pass (the default). Off, every pass hands
    /// out the batches in natural row order, as stateful training over consecutive chunks of
    /// long sequences needs (see [`crate::Trainer::with_carried`]).
    pub shuffle_batches: bool,
    /// Reject NaN and infinite values (at construction for arrays, on every call for callables).
    pub check_finite: bool,
    /// The master seed; the dataset's stream is `Rng::from_name(seed, "dataset.<name>")`.
    pub seed: u64,
}

impl Default for DatasetOptions {
    /// Batches of 32, one pass per iteration, batch order shuffled but rows kept together,
    /// finiteness checked, seed 0.
    fn default() -> Self {
        DatasetOptions {
            batch_size: 32,
            iteration_size: None,
            shuffle_samples: false,
            shuffle_batches: true,
            check_finite: true,
            seed: 0,
        }
    }
}

/// Everything needed to resume a [`Dataset`]'s sequence of batches exactly: save it with a
/// checkpoint and hand it back to [`Dataset::set_state`] on a dataset built the same way.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DatasetState {
    /// The random stream's four words.
    pub rng: [u64; 4],
    /// For arrays: how many batches of the current pass have been handed out (equal to the number
    /// of batches just before a wrap). For a callable: how many of its batches have been handed
    /// out (for training or validation).
    pub cursor: usize,
    /// The current pass's order of batches, as indices into the contiguous row ranges
    /// `[i*B, min(L, (i+1)*B))`. Empty for a callable.
    pub batch_order: Vec<usize>,
    /// With `shuffle_samples`: row `i` of the current pass is original row `sample_order[i]`.
    /// `None` otherwise.
    pub sample_order: Option<Vec<usize>>,
}

/// Mini-batches from arrays or from a function, in a seeded order that can be saved and resumed.
///
/// Arrays are cut into contiguous row ranges of `batch_size` rows (the last may be shorter); the
/// order of those batches is shuffled at construction and again at the start of every pass
/// (unless [`DatasetOptions::shuffle_batches`] is off). Rows within a batch stay together unless `shuffle_samples` is set.
///
/// ```
/// use optim::tape::Tensor;
/// use optim::{Dataset, DatasetOptions};
/// let x = Tensor::from_fn(&[10, 2], |i| (i[0] * 2 + i[1]) as f32);
/// let y = Tensor::from_fn(&[10], |i| i[0] as f32);
/// let options = DatasetOptions { batch_size: 4, ..Default::default() };
/// let mut ds = Dataset::new("train", vec![x, y], options)?;
/// assert_eq!((ds.len(), ds.num_batches(), ds.iteration_size()), (Some(10), Some(3), 3));
/// let batch = ds.next_batch()?;
/// let rows = batch[1].shape()[0];
/// assert!(rows == 4 || rows == 2);
/// assert_eq!(batch[0].shape(), &[rows, 2]);
/// // x and y stay aligned: row r of x is [2r, 2r+1] and y holds r.
/// assert_eq!(batch[0].data()[0], 2.0 * batch[1].data()[0]);
/// # Ok::<(), optim::Error>(())
/// ```
///
/// `Send` but not `Sync`: a dataset built from a callable holds an `FnMut + Send`, and drawing a
/// batch needs `&mut` anyway, so a dataset moves to a thread rather than being shared.
pub struct Dataset {
    name: String,
    check_finite: bool,
    iteration_size: usize,
    rng: Rng,
    source: Source,
}

enum Source {
    Arrays(Arrays),
    Callable(Callable),
}

struct Arrays {
    arrays: Vec<Tensor>,
    /// Values per row of each array (the product of its shape after axis 0).
    row_len: Vec<usize>,
    rows: usize,
    /// Row range of each batch, in natural order.
    ranges: Vec<(usize, usize)>,
    /// `shapes[b][k]`: shape of array `k` in batch `b`, kept here so the views can borrow it.
    shapes: Vec<Vec<Vec<usize>>>,
    order: Vec<usize>,
    cursor: usize,
    samples: Option<Samples>,
    /// Whether each pass draws a new batch order ([`DatasetOptions::shuffle_batches`]).
    shuffle_batches: bool,
}

/// The row permutation of the current pass and the arrays gathered in that order; gathered once
/// per pass so that batches are still contiguous slices that can be lent out without copying.
struct Samples {
    perm: Vec<usize>,
    gathered: Vec<Vec<f32>>,
}

struct Callable {
    f: Box<dyn FnMut() -> Vec<Tensor> + Send>,
    /// The batch from the probing call in `from_fn`, not yet handed out.
    pending: Option<Vec<Tensor>>,
    /// The batch most recently handed out; the views borrow it.
    current: Vec<Tensor>,
    /// Each array's shape after axis 0, as the first call returned it.
    inner: Vec<Vec<usize>>,
    calls: usize,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hand-written because the callable cannot be printed; the data would be too long anyway.
        f.debug_struct("Dataset")
            .field("name", &self.name)
            .field("rows", &self.len())
            .field("num_arrays", &self.num_arrays())
            .field("num_batches", &self.num_batches())
            .field("iteration_size", &self.iteration_size)
            .field("state", &self.state())
            .finish()
    }
}

/// Default number of batches per iteration for a callable, as in downhill.
const CALLABLE_ITERATION_SIZE: usize = 100;

fn data_error(name: &str, problem: String) -> Error {
    Error::Data {
        dataset: name.to_string(),
        problem,
    }
}

/// The first non-finite value among `arrays`, reported with its array index and row.
fn check_finite(name: &str, arrays: &[Tensor], context: &str) -> Result<()> {
    for (k, t) in arrays.iter().enumerate() {
        if let Some((i, v)) = t.first_non_finite() {
            let row_len = t.shape()[1..].iter().product::<usize>().max(1);
            return Err(data_error(
                name,
                format!(
                    "{context}arrays[{k}], row {}, holds the non-finite value {v}; \
                     set check_finite to false to allow it",
                    i / row_len
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `v` holds each of `0..n` exactly once.
fn is_permutation(v: &[usize], n: usize) -> bool {
    if v.len() != n {
        return false;
    }
    let mut seen = vec![false; n];
    v.iter()
        .all(|&i| i < n && !std::mem::replace(&mut seen[i], true))
}

impl Arrays {
    /// Starts a new pass: new row permutation (if any), then new batch order. The draw order is
    /// part of the reproducibility contract, so keep it fixed.
    fn reshuffle(&mut self, rng: &mut Rng) {
        if let Some(s) = &mut self.samples {
            rng.shuffle(&mut s.perm);
        }
        self.gather();
        if self.shuffle_batches {
            rng.shuffle(&mut self.order);
        }
        self.cursor = 0;
    }

    /// Copies the rows into `samples.gathered` in `samples.perm` order, reusing the buffers.
    fn gather(&mut self) {
        let Some(s) = &mut self.samples else { return };
        for ((t, out), &rl) in self.arrays.iter().zip(&mut s.gathered).zip(&self.row_len) {
            out.clear();
            for &r in &s.perm {
                out.extend_from_slice(&t.data()[r * rl..(r + 1) * rl]);
            }
        }
    }

    /// Views of batch `b`; `shuffled` picks the gathered copy (training) over the original rows
    /// (validation, which should not depend on the training state).
    fn views(&self, b: usize, shuffled: bool) -> Result<SmallVec<[TensorView<'_>; 4]>> {
        let (start, end) = self.ranges[b];
        self.arrays
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let data: &[f32] = match (&self.samples, shuffled) {
                    (Some(s), true) => &s.gathered[k],
                    _ => t.data(),
                };
                let rl = self.row_len[k];
                Ok(TensorView::new(
                    &self.shapes[b][k],
                    &data[start * rl..end * rl],
                )?)
            })
            .collect()
    }
}

impl Callable {
    /// Makes `current` the next batch: the probe batch if still pending, else a fresh checked one.
    fn fetch(&mut self, name: &str, finite: bool) -> Result<()> {
        if let Some(batch) = self.pending.take() {
            self.current = batch;
            return Ok(());
        }
        self.calls += 1;
        let batch = (self.f)();
        check_batch(name, &batch, self.calls, Some(&self.inner), finite)?;
        self.current = batch;
        Ok(())
    }

    fn views(&self) -> SmallVec<[TensorView<'_>; 4]> {
        self.current.iter().map(Tensor::view).collect()
    }

    /// Batches handed out so far: every call's batch except a probe batch still pending.
    fn handed_out(&self) -> usize {
        self.calls - usize::from(self.pending.is_some())
    }
}

/// Checks one batch from a callable: at least one array, each with a sample axis, all of the same
/// non-zero length, matching the first call's arity and trailing shapes, and finite if asked.
fn check_batch(
    name: &str,
    batch: &[Tensor],
    call: usize,
    inner: Option<&[Vec<usize>]>,
    finite: bool,
) -> Result<()> {
    let err = |problem: String| {
        Err(data_error(
            name,
            format!("call {call} of the batch function {problem}"),
        ))
    };
    if batch.is_empty() {
        return err("returned no arrays".into());
    }
    if let Some(inner) = inner {
        if batch.len() != inner.len() {
            return err(format!(
                "returned {} arrays, but the first call returned {}",
                batch.len(),
                inner.len()
            ));
        }
    }
    for (k, t) in batch.iter().enumerate() {
        if t.rank() == 0 {
            return err(format!(
                "returned a scalar (rank 0) as arrays[{k}]; arrays need a first axis that counts the samples"
            ));
        }
        let rows0 = batch[0].shape()[0];
        if t.shape()[0] != rows0 {
            return err(format!(
                "returned arrays of different lengths: arrays[0] has {rows0} rows but arrays[{k}] has {}",
                t.shape()[0]
            ));
        }
        if let Some(inner) = inner {
            if t.shape()[1..] != inner[k][..] {
                let mut first = vec![rows0];
                first.extend_from_slice(&inner[k]);
                return err(format!(
                    "returned arrays[{k}] of shape {:?}, but the first call's had shape {first:?} \
                     (only axis 0, the batch size, may change)",
                    t.shape()
                ));
            }
        }
    }
    if batch[0].shape()[0] == 0 {
        return err("returned a batch with no rows".into());
    }
    if finite {
        check_finite(name, batch, &format!("call {call} of the batch function: "))?;
    }
    Ok(())
}

impl Dataset {
    /// A dataset over `arrays`, which must share their first axis (the samples), e.g. `[x]`,
    /// `[x, y]` or `[x, y, weights]`. Shuffles the batch order (and the rows, with
    /// `shuffle_samples`) once before returning.
    ///
    /// Errors: no arrays, a rank-0 array, arrays of different lengths, no rows, a zero
    /// `iteration_size`, or (with `check_finite`) a NaN or infinite value.
    pub fn new(name: &str, arrays: Vec<Tensor>, options: DatasetOptions) -> Result<Dataset> {
        if arrays.is_empty() {
            return Err(data_error(
                name,
                "no arrays given; a dataset needs at least one array whose first axis counts the samples"
                    .into(),
            ));
        }
        if let Some(k) = arrays.iter().position(|t| t.rank() == 0) {
            return Err(data_error(
                name,
                format!("arrays[{k}] is a scalar (rank 0); arrays need a first axis that counts the samples"),
            ));
        }
        let rows = arrays[0].shape()[0];
        if let Some(k) = arrays.iter().position(|t| t.shape()[0] != rows) {
            return Err(data_error(
                name,
                format!(
                    "arrays[0] has {rows} rows but arrays[{k}] has {}; all arrays must share their first axis",
                    arrays[k].shape()[0]
                ),
            ));
        }
        if rows == 0 {
            return Err(data_error(name, "the arrays have no rows".into()));
        }
        if options.check_finite {
            check_finite(name, &arrays, "")?;
        }
        let batch = if options.batch_size == 0 || options.batch_size > rows {
            rows
        } else {
            options.batch_size
        };
        let ranges: Vec<(usize, usize)> = (0..rows)
            .step_by(batch)
            .map(|i| (i, rows.min(i + batch)))
            .collect();
        let shapes = ranges
            .iter()
            .map(|&(s, e)| {
                arrays
                    .iter()
                    .map(|t| {
                        let mut shape = t.shape().to_vec();
                        shape[0] = e - s;
                        shape
                    })
                    .collect()
            })
            .collect();
        let iteration_size = options.iteration_size.unwrap_or(ranges.len());
        if iteration_size == 0 {
            return Err(data_error(name, "iteration_size must be at least 1".into()));
        }
        let row_len = arrays
            .iter()
            .map(|t| t.shape()[1..].iter().product())
            .collect();
        let samples = options.shuffle_samples.then(|| Samples {
            perm: (0..rows).collect(),
            gathered: arrays.iter().map(|t| Vec::with_capacity(t.len())).collect(),
        });
        let mut source = Arrays {
            order: (0..ranges.len()).collect(),
            arrays,
            row_len,
            rows,
            ranges,
            shapes,
            cursor: 0,
            samples,
            shuffle_batches: options.shuffle_batches,
        };
        let mut rng = Rng::from_name(options.seed, &format!("dataset.{name}"));
        source.reshuffle(&mut rng);
        Ok(Dataset {
            name: name.to_string(),
            check_finite: options.check_finite,
            iteration_size,
            rng,
            source: Source::Arrays(source),
        })
    }

    /// A dataset whose batches come from calling `f`, one batch (a `Vec` of arrays sharing their
    /// first axis) per call. `f` is called once here to learn the number of arrays and their
    /// shapes; that batch is kept and handed out first. Later batches must have the same number
    /// of arrays and the same shapes except along axis 0. `batch_size` and `shuffle_samples` do
    /// not apply; `iteration_size` defaults to 100.
    pub fn from_fn(
        name: &str,
        mut f: impl FnMut() -> Vec<Tensor> + Send + 'static,
        options: DatasetOptions,
    ) -> Result<Dataset> {
        let iteration_size = options.iteration_size.unwrap_or(CALLABLE_ITERATION_SIZE);
        if iteration_size == 0 {
            return Err(data_error(name, "iteration_size must be at least 1".into()));
        }
        let first = f();
        check_batch(name, &first, 1, None, options.check_finite)?;
        let inner = first.iter().map(|t| t.shape()[1..].to_vec()).collect();
        Ok(Dataset {
            name: name.to_string(),
            check_finite: options.check_finite,
            iteration_size,
            rng: Rng::from_name(options.seed, &format!("dataset.{name}")),
            source: Source::Callable(Callable {
                f: Box::new(f),
                pending: Some(first),
                current: Vec::new(),
                inner,
                calls: 1,
            }),
        })
    }

    /// The name given at construction (used in error messages and to derive the random stream).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of rows (samples), or `None` for a callable.
    pub fn len(&self) -> Option<usize> {
        match &self.source {
            Source::Arrays(a) => Some(a.rows),
            Source::Callable(_) => None,
        }
    }

    /// Whether the dataset has no rows; always false, since construction rejects empty data.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The number of arrays in every batch.
    pub fn num_arrays(&self) -> usize {
        match &self.source {
            Source::Arrays(a) => a.arrays.len(),
            Source::Callable(c) => c.inner.len(),
        }
    }

    /// The number of batches in one pass, or `None` for a callable.
    pub fn num_batches(&self) -> Option<usize> {
        match &self.source {
            Source::Arrays(a) => Some(a.ranges.len()),
            Source::Callable(_) => None,
        }
    }

    /// Whether training batches come in a different order from pass to pass (arrays with
    /// `shuffle_batches` or `shuffle_samples`); a callable's order is its own, so never.
    pub fn is_shuffled(&self) -> bool {
        match &self.source {
            Source::Arrays(a) => a.shuffle_batches || a.samples.is_some(),
            Source::Callable(_) => false,
        }
    }

    /// Whether the next [`Dataset::next_batch`] starts a pass over the arrays (the first batch
    /// ever, or the one after a pass's last). Always false for a callable, which has no passes.
    pub fn at_pass_start(&self) -> bool {
        match &self.source {
            Source::Arrays(a) => a.cursor == 0 || a.cursor >= a.order.len(),
            Source::Callable(_) => false,
        }
    }

    /// How many batches one training iteration consumes.
    pub fn iteration_size(&self) -> usize {
        self.iteration_size
    }

    /// The next batch as borrowed views (no copy of the data for arrays without
    /// `shuffle_samples`), advancing the cursor. After the last batch of a pass, the next call
    /// reshuffles and starts a new pass.
    pub fn next_batch(&mut self) -> Result<SmallVec<[TensorView<'_>; 4]>> {
        match &mut self.source {
            Source::Arrays(a) => {
                // Wrap lazily, as downhill does: the reshuffle happens when a batch is needed.
                if a.cursor >= a.order.len() {
                    a.reshuffle(&mut self.rng);
                }
                let b = a.order[a.cursor];
                a.cursor += 1;
                a.views(b, true)
            }
            Source::Callable(c) => {
                c.fetch(&self.name, self.check_finite)?;
                Ok(c.views())
            }
        }
    }

    /// Where row `row` of the batch most recently returned by [`Dataset::next_batch`] came from,
    /// in words a user can look up: `row 37` (of the arrays as given, through any shuffling) for
    /// arrays, `row 3 of call 12` for a callable. Errors about one row of a batch use it.
    pub fn describe_batch_row(&self, row: usize) -> String {
        match &self.source {
            Source::Arrays(a) => match a.cursor.checked_sub(1).map(|c| a.order[c]) {
                Some(b) => {
                    let at = a.ranges[b].0 + row;
                    let original = a.samples.as_ref().map_or(at, |s| s.perm[at]);
                    format!("row {original}")
                }
                None => format!("row {row} of the batch"),
            },
            Source::Callable(c) => format!("row {row} of call {}", c.calls),
        }
    }

    /// Every batch of one full pass, in natural row order and from the original (unpermuted)
    /// rows, without touching the cursor or the random stream (for validation): calls `f` with
    /// each batch's views and stops at the first error.
    ///
    /// For a callable: `iteration_size` batches, the first being the probe batch from
    /// [`Dataset::from_fn`] if it has not been handed out yet, the rest fresh calls.
    pub fn for_each_batch(
        &mut self,
        mut f: impl FnMut(&[TensorView<'_>]) -> Result<()>,
    ) -> Result<()> {
        match &mut self.source {
            Source::Arrays(a) => {
                for b in 0..a.ranges.len() {
                    f(&a.views(b, false)?)?;
                }
            }
            Source::Callable(c) => {
                for _ in 0..self.iteration_size {
                    c.fetch(&self.name, self.check_finite)?;
                    f(&c.views())?;
                }
            }
        }
        Ok(())
    }

    /// The random stream, cursor and orders, enough to resume the batch sequence exactly. For a
    /// callable only the number of batches handed out is recorded: see [`Dataset::set_state`].
    pub fn state(&self) -> DatasetState {
        match &self.source {
            Source::Arrays(a) => DatasetState {
                rng: self.rng.state(),
                cursor: a.cursor,
                batch_order: a.order.clone(),
                sample_order: a.samples.as_ref().map(|s| s.perm.clone()),
            },
            Source::Callable(c) => DatasetState {
                rng: self.rng.state(),
                cursor: c.handed_out(),
                batch_order: Vec::new(),
                sample_order: None,
            },
        }
    }

    /// Resumes from a [`Dataset::state`]; fails, leaving the dataset unchanged, if the state
    /// cannot belong to a dataset built like this one (wrong number of batches or rows, a
    /// sample order present or missing against `shuffle_samples`, a cursor past the end, or the
    /// all-zero random state, which would make the stream constant).
    ///
    /// A callable is resumed by replaying it: the function is called, and its batches dropped,
    /// until it has produced as many batches as the saved dataset had handed out (the probe
    /// batch from [`Dataset::from_fn`] counts as the first). So a function that is deterministic
    /// from its construction (e.g. seeded) continues exactly where the saved run was; replaying
    /// costs one call per batch skipped. A state further back than the batches this dataset has
    /// already handed out is refused, since a function cannot be rewound.
    pub fn set_state(&mut self, s: DatasetState) -> Result<()> {
        let bad = |why: String| {
            Err(data_error(
                &self.name,
                format!("cannot restore state: {why}"),
            ))
        };
        if s.rng == [0; 4] {
            return bad("the random state is all zeros".into());
        }
        match &mut self.source {
            Source::Arrays(a) => {
                let n = a.ranges.len();
                if !is_permutation(&s.batch_order, n) {
                    return bad(format!(
                        "the batch order is not a permutation of the {n} batches of this dataset"
                    ));
                }
                if s.cursor > n {
                    return bad(format!("the cursor {} is past the {n} batches", s.cursor));
                }
                match (&mut a.samples, s.sample_order) {
                    (None, None) => {}
                    (Some(samples), Some(perm)) => {
                        if !is_permutation(&perm, a.rows) {
                            return bad(format!(
                                "the sample order is not a permutation of the {} rows",
                                a.rows
                            ));
                        }
                        samples.perm = perm;
                    }
                    (None, Some(_)) => {
                        return bad("it has a sample order but shuffle_samples is off".into())
                    }
                    (Some(_), None) => {
                        return bad("it has no sample order but shuffle_samples is on".into())
                    }
                }
                a.gather();
                a.order = s.batch_order;
                a.cursor = s.cursor;
            }
            Source::Callable(c) => {
                if !s.batch_order.is_empty() || s.sample_order.is_some() {
                    return bad(
                        "it has a batch or sample order, but this dataset is a callable".into(),
                    );
                }
                let done = c.handed_out();
                if s.cursor < done {
                    return bad(format!(
                        "it resumes after {} batches, but this dataset has already handed out {done} \
                         and a batch function cannot be rewound",
                        s.cursor
                    ));
                }
                if s.cursor > done {
                    // The pending probe batch (if any) lies within the batches being skipped.
                    c.pending = None;
                    while c.calls < s.cursor {
                        (c.f)();
                        c.calls += 1;
                    }
                }
            }
        }
        self.rng = Rng::from_state(s.rng);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_check() {
        assert!(is_permutation(&[2, 0, 1], 3));
        assert!(!is_permutation(&[0, 0, 1], 3));
        assert!(!is_permutation(&[0, 1, 3], 3));
        assert!(!is_permutation(&[0, 1], 3));
        assert!(is_permutation(&[], 0));
    }

    #[test]
    fn gathered_rows_follow_the_permutation() {
        let x = Tensor::from_fn(&[5, 2], |i| (i[0] * 10 + i[1]) as f32);
        let options = DatasetOptions {
            shuffle_samples: true,
            ..Default::default()
        };
        let ds = Dataset::new("g", vec![x], options).unwrap();
        let Source::Arrays(a) = &ds.source else {
            unreachable!()
        };
        let s = a.samples.as_ref().unwrap();
        for (i, &r) in s.perm.iter().enumerate() {
            assert_eq!(
                &s.gathered[0][i * 2..i * 2 + 2],
                &[(r * 10) as f32, (r * 10 + 1) as f32]
            );
        }
    }
}
