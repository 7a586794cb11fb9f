//! Sequences of different lengths into the `(batch, time, ...)` arrays recurrent models read:
//! [`pad`] stacks them, padding the short ones at the end, and returns the `(batch, time)` mask
//! (1 for a real step, 0 for padding) that keeps the padding out of states, losses and monitors;
//! [`mask_from_lengths`] builds that mask alone; [`windows`] cuts one long sequence into
//! overlapping training windows with next-step targets (a language model's data).
//!
//! ```
//! use nets::data::sequences::pad;
//! use tape::Tensor;
//! // Two sequences of 2-dim steps, 3 and 1 steps long.
//! let a = Tensor::new(&[3, 2], vec![1., 1., 2., 2., 3., 3.])?;
//! let b = Tensor::new(&[1, 2], vec![9., 9.])?;
//! let padded = pad(&[a, b], 0.0)?;
//! assert_eq!(padded.values.shape(), &[2, 3, 2]);
//! assert_eq!(padded.values.data()[6..], [9., 9., 0., 0., 0., 0.]);
//! assert_eq!(padded.mask.data(), &[1., 1., 1., 1., 0., 0.]);
//! assert_eq!(padded.lengths, vec![3, 1]);
//! # Ok::<(), nets::Error>(())
//! ```

use crate::error::{Error, Result};
use tape::Tensor;

fn data_error(problem: String) -> Error {
    Error::Data {
        what: "sequences".into(),
        problem,
    }
}

/// Sequences stacked along a new batch axis, padded to the longest.
#[derive(Clone, Debug, PartialEq)]
pub struct Padded {
    /// `(batch, time, ...)`: sequence `i` in row `i`, its steps first, then padding.
    pub values: Tensor,
    /// `(batch, time)`: 1 where row `i` has a real step, 0 where it is padded.
    pub mask: Tensor,
    /// Each sequence's number of steps.
    pub lengths: Vec<usize>,
}

/// Stacks `seqs` (each `(time_i, ...)`, the same trailing shape for all; rank 1 for label
/// sequences) into `(batch, max time, ...)`, filling the missing steps with `fill`.
///
/// Errors on an empty list, a scalar, differing trailing shapes (naming the sequence) or when
/// every sequence is empty.
pub fn pad(seqs: &[Tensor], fill: f32) -> Result<Padded> {
    let first = seqs
        .first()
        .ok_or_else(|| data_error("no sequences given".into()))?;
    let inner = match first.shape() {
        [] => {
            return Err(data_error(
                "sequence 0 is a scalar; it needs a time axis".into(),
            ))
        }
        [_, rest @ ..] => rest.to_vec(),
    };
    for (i, s) in seqs.iter().enumerate() {
        if s.rank() == 0 || s.shape()[1..] != inner[..] {
            return Err(data_error(format!(
                "sequence {i} has shape {:?}, but sequence 0 has steps of shape {inner:?}",
                s.shape()
            )));
        }
    }
    let lengths: Vec<usize> = seqs.iter().map(|s| s.shape()[0]).collect();
    let time = lengths.iter().copied().max().unwrap_or(0);
    if time == 0 {
        return Err(data_error(format!(
            "all {} sequences are empty",
            seqs.len()
        )));
    }
    let step: usize = inner.iter().product();
    let mut values = Vec::with_capacity(seqs.len() * time * step);
    for s in seqs {
        values.extend_from_slice(s.data());
        values.resize(values.len() + (time - s.shape()[0]) * step, fill);
    }
    let mut shape = vec![seqs.len(), time];
    shape.extend(&inner);
    Ok(Padded {
        values: Tensor::new(&shape, values)?,
        mask: mask_from_lengths(&lengths, time)?,
        lengths,
    })
}

/// The `(batch, time)` mask of sequences with the given lengths: row `i` holds `lengths[i]`
/// ones, then zeros. Errors if a length exceeds `time`.
pub fn mask_from_lengths(lengths: &[usize], time: usize) -> Result<Tensor> {
    if let Some((i, &n)) = lengths.iter().enumerate().find(|(_, &n)| n > time) {
        return Err(data_error(format!(
            "sequence {i} has {n} steps, more than the {time} steps of the mask"
        )));
    }
    let mut mask = Vec::with_capacity(lengths.len() * time);
    for &n in lengths {
        mask.extend((0..time).map(|t| if t < n { 1.0 } else { 0.0 }));
    }
    Ok(Tensor::new(&[lengths.len(), time], mask)?)
}

/// Windows of `len` steps cut from one long sequence `(time, ...)` every `stride` steps, each
/// with the window one step later as its target: `x[i] = seq[s..s+len]`,
/// `y[i] = seq[s+1..s+len+1]` with `s = i·stride`. The windows that fit are kept; errors if
/// none does or `len` or `stride` is 0.
///
/// ```
/// use nets::data::sequences::windows;
/// use tape::Tensor;
/// let text = Tensor::vector(&[0., 1., 2., 3., 4., 5.]);
/// let (x, y) = windows(&text, 3, 2)?;
/// assert_eq!(x.shape(), &[2, 3]);
/// assert_eq!(x.data(), &[0., 1., 2., 2., 3., 4.]);
/// assert_eq!(y.data(), &[1., 2., 3., 3., 4., 5.]);
/// # Ok::<(), nets::Error>(())
/// ```
pub fn windows(seq: &Tensor, len: usize, stride: usize) -> Result<(Tensor, Tensor)> {
    if len == 0 || stride == 0 {
        return Err(data_error(format!(
            "windows need a length and a stride of at least 1, got len={len}, stride={stride}"
        )));
    }
    let (time, inner) = match seq.shape() {
        [] => {
            return Err(data_error(
                "the sequence is a scalar; it needs a time axis".into(),
            ))
        }
        [t, rest @ ..] => (*t, rest.to_vec()),
    };
    if time < len + 1 {
        return Err(data_error(format!(
            "a sequence of {time} steps has no window of {len} steps with a next-step target"
        )));
    }
    let count = (time - len - 1) / stride + 1;
    let step: usize = inner.iter().product();
    let (mut x, mut y) = (
        Vec::with_capacity(count * len * step),
        Vec::with_capacity(count * len * step),
    );
    for i in 0..count {
        let s = i * stride;
        x.extend_from_slice(&seq.data()[s * step..(s + len) * step]);
        y.extend_from_slice(&seq.data()[(s + 1) * step..(s + 1 + len) * step]);
    }
    let mut shape = vec![count, len];
    shape.extend(&inner);
    Ok((Tensor::new(&shape, x)?, Tensor::new(&shape, y)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_stacks_rank_1_label_sequences_and_refuses_mismatches() {
        let a = Tensor::vector(&[1.0, 2.0]);
        let b = Tensor::vector(&[3.0, 4.0, 5.0]);
        let p = pad(&[a.clone(), b], -1.0).unwrap();
        assert_eq!(p.values.shape(), &[2, 3]);
        assert_eq!(p.values.data(), &[1.0, 2.0, -1.0, 3.0, 4.0, 5.0]);
        assert_eq!(p.mask.data(), &[1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);

        let wide = Tensor::zeros(&[2, 2]);
        let e = pad(&[a, wide], 0.0).unwrap_err().to_string();
        assert!(e.contains("sequence 1 has shape [2, 2]"), "{e}");
        assert!(pad(&[], 0.0).is_err());
        assert!(pad(&[Tensor::zeros(&[0, 3])], 0.0).is_err());
        assert!(pad(&[Tensor::scalar(1.0)], 0.0).is_err());
    }

    #[test]
    fn an_empty_sequence_among_others_is_all_padding() {
        let p = pad(
            &[
                Tensor::zeros(&[0, 1]),
                Tensor::vector(&[7.0]).reshape(&[1, 1]).unwrap(),
            ],
            0.0,
        )
        .unwrap();
        assert_eq!(p.mask.data(), &[0.0, 1.0]);
        assert_eq!(p.lengths, vec![0, 1]);
    }

    #[test]
    fn masks_from_lengths_refuse_a_length_beyond_the_time_axis() {
        assert_eq!(
            mask_from_lengths(&[2, 0], 3).unwrap().data(),
            &[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
        );
        let e = mask_from_lengths(&[4], 3).unwrap_err().to_string();
        assert!(e.contains("sequence 0 has 4 steps"), "{e}");
    }

    #[test]
    fn windows_of_multi_dim_steps_and_their_limits() {
        let seq = Tensor::new(&[4, 2], (0..8).map(|v| v as f32).collect()).unwrap();
        let (x, y) = windows(&seq, 2, 1).unwrap();
        assert_eq!(x.shape(), &[2, 2, 2]);
        assert_eq!(x.data(), &[0., 1., 2., 3., 2., 3., 4., 5.]);
        assert_eq!(y.data(), &[2., 3., 4., 5., 4., 5., 6., 7.]);
        assert!(windows(&seq, 4, 1).is_err());
        assert!(windows(&seq, 0, 1).is_err());
        assert!(windows(&seq, 2, 0).is_err());
    }
}
