//! The planned call of a scan, beside the copies it is made of: [`ScanCall`] (the loop over
//! time steps, whose body runs as a nested plan of its own). Plain data, like the kernels' call
//! structs; the interpreter (`exec`) runs the loop because it runs the nested plan. Its results
//! are read in place from its packed output (`Src::Part`), not copied out.
//!
//! A sequence `(batch, time, …)` is stored row-major, so one time step's slice is `batch` rows
//! of `row` elements, `time · row` apart: [`gather_step`] copies them into a contiguous step
//! buffer and [`scatter_step`] writes a step's rows back into a stacked result.

/// One scan over concrete shapes: where its operands are, how big a step is, and where each
/// result goes in the packed output.
#[derive(Clone, Debug)]
pub(crate) struct ScanCall<S> {
    /// The scan's node, whose body program the function keeps.
    pub(crate) node: usize,
    /// Its nested plan among the plan's nested plans.
    pub(crate) nested: usize,
    /// Sequences, initial states, non-sequences.
    pub(crate) operands: Vec<S>,
    pub(crate) n_seqs: usize,
    /// Per sequence: whether the body reads its step slices' values. One read only for its
    /// shape (a gradient's `like`, e.g. the forward sequence in a reverse scan) is not copied
    /// into its step buffer at all.
    pub(crate) read: Vec<bool>,
    pub(crate) n_states: usize,
    pub(crate) batch: usize,
    pub(crate) time: usize,
    /// Run from the last time index down.
    pub(crate) reverse: bool,
    /// Steps actually run (all `time` unless the scan is truncated).
    pub(crate) steps: usize,
    /// Per state: zero its final value when steps were left out.
    pub(crate) cut: Vec<bool>,
    /// Per state, if recorded: where its values entering each step go, and their row length.
    pub(crate) entering: Vec<Option<(usize, usize)>>,
    /// Per output: where its stacked values go, and their row length.
    pub(crate) outputs: Vec<(usize, usize)>,
    /// Per state: where its final value goes.
    pub(crate) finals: Vec<usize>,
    /// Elements of the packed output.
    pub(crate) total: usize,
}

impl<S> ScanCall<S> {
    pub(crate) fn describe(&self, name: impl Fn(&S) -> String) -> String {
        let ops: Vec<String> = self
            .operands
            .iter()
            .enumerate()
            .map(|(i, o)| match self.read.get(i) {
                Some(false) => format!("{} (shape only)", name(o)),
                _ => name(o),
            })
            .collect();
        let dir = if self.reverse { ", reversed" } else { "" };
        let cut = if self.steps < self.time {
            format!(", first {} run", self.steps)
        } else {
            String::new()
        };
        format!(
            "scan {} steps{dir}{cut} over batch {} ({}) [{}]",
            self.time,
            self.batch,
            ops.join(", "),
            self.total
        )
    }
}

/// Copies time step `t` of a stacked `(batch, time, row)` value into `step` (`batch × row`).
pub(crate) fn gather_step(stacked: &[f32], step: &mut [f32], batch: usize, time: usize, t: usize) {
    if batch == 0 {
        return;
    }
    let row = step.len() / batch;
    for (b, dst) in step.chunks_exact_mut(row.max(1)).enumerate().take(batch) {
        let at = (b * time + t) * row;
        dst.copy_from_slice(&stacked[at..at + row]);
    }
}

/// Writes `step` (`batch × row`) as time step `t` of a stacked `(batch, time, row)` value.
pub(crate) fn scatter_step(step: &[f32], stacked: &mut [f32], batch: usize, time: usize, t: usize) {
    if batch == 0 {
        return;
    }
    let row = step.len() / batch;
    for (b, src) in step.chunks_exact(row.max(1)).enumerate().take(batch) {
        let at = (b * time + t) * row;
        stacked[at..at + row].copy_from_slice(src);
    }
}

/// Zeroes time step `t` of a stacked `(batch, time, row)` value.
pub(crate) fn zero_step(stacked: &mut [f32], row: usize, batch: usize, time: usize, t: usize) {
    for b in 0..batch {
        let at = (b * time + t) * row;
        stacked[at..at + row].fill(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_goes_out_and_back_in_place() {
        // (batch 2, time 3, row 2): element [b, t, k] holds 100b + 10t + k.
        let stacked: Vec<f32> = (0..2)
            .flat_map(|b| {
                (0..3).flat_map(move |t| (0..2).map(move |k| (100 * b + 10 * t + k) as f32))
            })
            .collect();
        let mut step = vec![0.0; 4];
        gather_step(&stacked, &mut step, 2, 3, 1);
        assert_eq!(step, [10.0, 11.0, 110.0, 111.0]);
        let mut back = vec![0.0; 12];
        scatter_step(&step, &mut back, 2, 3, 1);
        assert_eq!(&back[2..4], &[10.0, 11.0]);
        assert_eq!(&back[8..10], &[110.0, 111.0]);
        zero_step(&mut back, 2, 2, 3, 1);
        assert!(back.iter().all(|&v| v == 0.0));
    }
}
