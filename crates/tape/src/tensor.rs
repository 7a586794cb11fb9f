//! `Tensor`: an owned, contiguous, row-major `f32` array, and `TensorView`, its borrowed form.

use crate::error::{Error, Result};
use crate::kernels::Shape;
use std::fmt;

/// An owned n-dimensional `f32` array, row-major and contiguous.
///
/// Class labels are stored here too, as integer-valued floats; the ops that consume them check
/// range and integrality when they run.
///
/// `Send` and `Sync`: plain owned data.
///
/// ```
/// use tape::Tensor;
/// let t = Tensor::new(&[2, 3], vec![1., 2., 3., 4., 5., 6.])?;
/// assert_eq!(t.shape(), &[2, 3]);
/// assert_eq!(t.data()[4], 5.0);
/// assert!(Tensor::new(&[2, 2], vec![1.0]).is_err());
/// # Ok::<(), tape::Error>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct Tensor {
    shape: Shape,
    data: Vec<f32>,
}

/// A borrowed tensor: a shape and a slice of matching length. Compiled functions take their
/// arguments this way so that a batch can be handed over without copying. `Send` and `Sync`,
/// like the slices it borrows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorView<'a> {
    shape: &'a [usize],
    data: &'a [f32],
}

/// The number of elements of `shape`, or `None` when a tensor of that shape cannot exist: its
/// element count (or, for an empty shape, the count of any sub-shape obtained by leaving out
/// the zero dims, which row and print code multiply out) overflows, or its bytes exceed what
/// a `Vec` may hold.
pub(crate) fn checked_numel(shape: &[usize]) -> Option<usize> {
    let nonzero = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d.max(1)))?;
    if nonzero > isize::MAX as usize / std::mem::size_of::<f32>() {
        return None;
    }
    Some(if shape.contains(&0) { 0 } else { nonzero })
}

/// The element count of a shape that is already known to be valid (a tensor holds it).
fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The error for a shape whose element count does not fit in memory.
fn too_large(what: &'static str, shape: &[usize], len: usize) -> Error {
    Error::Data {
        what,
        shape: shape.to_vec(),
        len,
    }
}

impl Tensor {
    /// A tensor of the given shape over `data`; fails if the lengths disagree.
    pub fn new(shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
        if checked_numel(shape) != Some(data.len()) {
            return Err(Error::Data {
                what: "Tensor::new",
                shape: shape.to_vec(),
                len: data.len(),
            });
        }
        Ok(Tensor {
            shape: Shape::from_slice(shape),
            data,
        })
    }

    /// A tensor filled with zeros.
    ///
    /// # Panics
    /// If the shape's element count overflows (see [`Tensor::try_zeros`] for shapes that come
    /// from user input).
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }

    /// A tensor filled with zeros, or an error if the shape's element count overflows.
    pub fn try_zeros(shape: &[usize]) -> Result<Tensor> {
        Tensor::try_full(shape, 0.0)
    }

    /// A tensor filled with ones.
    ///
    /// # Panics
    /// If the shape's element count overflows.
    pub fn ones(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 1.0)
    }

    /// A tensor filled with `value`.
    ///
    /// # Panics
    /// If the shape's element count overflows (see [`Tensor::try_full`]).
    pub fn full(shape: &[usize], value: f32) -> Tensor {
        match Tensor::try_full(shape, value) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    /// A tensor filled with `value`, or an error if the shape's element count overflows.
    pub fn try_full(shape: &[usize], value: f32) -> Result<Tensor> {
        let n = checked_numel(shape).ok_or_else(|| too_large("Tensor::full", shape, 0))?;
        Ok(Tensor {
            shape: Shape::from_slice(shape),
            data: vec![value; n],
        })
    }

    /// A rank-0 tensor holding one value.
    pub fn scalar(value: f32) -> Tensor {
        Tensor {
            shape: Shape::new(),
            data: vec![value],
        }
    }

    /// A rank-1 tensor over `values`.
    pub fn vector(values: &[f32]) -> Tensor {
        Tensor {
            shape: Shape::from_slice(&[values.len()]),
            data: values.to_vec(),
        }
    }

    /// A tensor whose element at each multi-index is `f(index)`, visited in row-major order.
    ///
    /// ```
    /// let eye = tape::Tensor::from_fn(&[2, 2], |i| if i[0] == i[1] { 1.0 } else { 0.0 });
    /// assert_eq!(eye.data(), &[1., 0., 0., 1.]);
    /// ```
    ///
    /// # Panics
    /// If the shape's element count overflows.
    pub fn from_fn(shape: &[usize], mut f: impl FnMut(&[usize]) -> f32) -> Tensor {
        let Some(n) = checked_numel(shape) else {
            panic!("{}", too_large("Tensor::from_fn", shape, 0));
        };
        let mut data = Vec::with_capacity(n);
        let mut index = vec![0usize; shape.len()];
        for _ in 0..n {
            data.push(f(&index));
            for axis in (0..shape.len()).rev() {
                index[axis] += 1;
                if index[axis] < shape[axis] {
                    break;
                }
                index[axis] = 0;
            }
        }
        Tensor {
            shape: Shape::from_slice(shape),
            data,
        }
    }

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor holds no element (some dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The values in row-major order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The values, mutably (the shape stays fixed).
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// The storage itself, for swapping whole buffers in and out without copying.
    pub(crate) fn storage_mut(&mut self) -> &mut Vec<f32> {
        &mut self.data
    }

    /// Takes the values out.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// The single value of a one-element tensor, if it has exactly one.
    pub fn item(&self) -> Option<f32> {
        (self.data.len() == 1).then(|| self.data[0])
    }

    /// The same values under another shape with the same number of elements.
    pub fn reshape(self, shape: &[usize]) -> Result<Tensor> {
        Tensor::new(shape, self.data)
    }

    /// Rows `start..end` of the first axis, copied (the other axes kept).
    ///
    /// ```
    /// let t = tape::Tensor::from_fn(&[4, 2], |i| i[0] as f32);
    /// assert_eq!(t.rows(1, 3)?.data(), &[1., 1., 2., 2.]);
    /// assert!(t.rows(3, 5).is_err());
    /// # Ok::<(), tape::Error>(())
    /// ```
    pub fn rows(&self, start: usize, end: usize) -> Result<Tensor> {
        let n = self.shape.first().copied().unwrap_or(0);
        if self.rank() == 0 || start > end || end > n {
            return Err(Error::Data {
                what: "Tensor::rows",
                shape: self.shape.to_vec(),
                len: end.saturating_sub(start),
            });
        }
        let width: usize = self.shape[1..].iter().product();
        let mut shape = self.shape.clone();
        shape[0] = end - start;
        Ok(Tensor {
            shape,
            data: self.data[start * width..end * width].to_vec(),
        })
    }

    /// A borrowed view.
    pub fn view(&self) -> TensorView<'_> {
        TensorView {
            shape: &self.shape,
            data: &self.data,
        }
    }

    /// The first non-finite value, as `(flat index, value)`.
    pub fn first_non_finite(&self) -> Option<(usize, f32)> {
        self.view().first_non_finite()
    }
}

impl<'a> TensorView<'a> {
    /// A view of `data` as `shape`; fails if the lengths disagree.
    pub fn new(shape: &'a [usize], data: &'a [f32]) -> Result<TensorView<'a>> {
        if checked_numel(shape) != Some(data.len()) {
            return Err(Error::Data {
                what: "TensorView::new",
                shape: shape.to_vec(),
                len: data.len(),
            });
        }
        Ok(TensorView { shape, data })
    }

    /// The dimensions.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// The values in row-major order.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// An owned copy.
    pub fn to_tensor(&self) -> Tensor {
        Tensor {
            shape: Shape::from_slice(self.shape),
            data: self.data.to_vec(),
        }
    }

    /// The first non-finite value, as `(flat index, value)`.
    pub fn first_non_finite(&self) -> Option<(usize, f32)> {
        // Every call of a compiled function checks its arguments, so the common case (all
        // finite) must run at memory speed: each chunk is tested without an early exit, which
        // the compiler vectorises, and only a chunk that fails is searched.
        const CHUNK: usize = 256;
        const EXP: u32 = 0x7f80_0000; // all exponent bits set: an infinity or a NaN
        let bad = |v: &f32| v.to_bits() & EXP == EXP;
        self.data
            .chunks(CHUNK)
            .enumerate()
            .find(|(_, c)| c.iter().fold(false, |any, v| any | bad(v)))
            .and_then(|(k, c)| {
                let i = c.iter().position(bad)?;
                Some((k * CHUNK + i, c[i]))
            })
    }
}

impl<'a> From<&'a Tensor> for TensorView<'a> {
    fn from(t: &'a Tensor) -> Self {
        t.view()
    }
}

/// Prints like numpy: nested brackets, long axes cut to their first and last three entries.
impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor{:?} ", self.shape.as_slice())?;
        fmt_nested(f, &self.shape, &self.data)
    }
}

const EDGE: usize = 3;

fn fmt_nested(f: &mut fmt::Formatter<'_>, shape: &[usize], data: &[f32]) -> fmt::Result {
    let Some((&n, rest)) = shape.split_first() else {
        return write!(f, "{}", data[0]);
    };
    let stride = numel(rest);
    write!(f, "[")?;
    for i in 0..n {
        if n > 2 * EDGE && i == EDGE {
            write!(f, "..., ")?;
        }
        if n > 2 * EDGE && (EDGE..n - EDGE).contains(&i) {
            continue;
        }
        fmt_nested(f, rest, &data[i * stride..(i + 1) * stride])?;
        if i + 1 < n {
            write!(f, ", ")?;
        }
    }
    write!(f, "]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_check_length() {
        assert!(Tensor::new(&[2, 3], vec![0.0; 6]).is_ok());
        let err = Tensor::new(&[2, 3], vec![0.0; 5]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Tensor::new: shape [2, 3] needs 6 values, got 5"
        );
        assert!(TensorView::new(&[4], &[1.0, 2.0]).is_err());
        assert_eq!(Tensor::scalar(2.5).shape(), &[] as &[usize]);
        assert_eq!(Tensor::scalar(2.5).item(), Some(2.5));
        assert_eq!(Tensor::zeros(&[0, 3]).len(), 0);
    }

    #[test]
    fn from_fn_is_row_major() {
        let t = Tensor::from_fn(&[2, 3], |i| (i[0] * 10 + i[1]) as f32);
        assert_eq!(t.data(), &[0., 1., 2., 10., 11., 12.]);
    }

    #[test]
    fn debug_truncates_long_axes() {
        let t = Tensor::from_fn(&[10], |i| i[0] as f32);
        assert_eq!(format!("{t:?}"), "Tensor[10] [0, 1, 2, ..., 7, 8, 9]");
        let m = Tensor::from_fn(&[2, 2], |i| i[1] as f32);
        assert_eq!(format!("{m:?}"), "Tensor[2, 2] [[0, 1], [0, 1]]");
        assert_eq!(format!("{:?}", Tensor::scalar(1.5)), "Tensor[] 1.5");
    }

    #[test]
    fn finds_non_finite() {
        let t = Tensor::vector(&[1.0, f32::NAN, f32::INFINITY]);
        assert_eq!(t.first_non_finite().map(|p| p.0), Some(1));
    }

    #[test]
    fn finds_the_first_non_finite_value_anywhere_among_chunks() {
        // Lengths and positions around the search's chunk boundaries, against a plain scan.
        let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN];
        for len in [0usize, 1, 255, 256, 257, 513, 1000] {
            let clean: Vec<f32> = (0..len).map(|i| i as f32 * 1e30 - 3e32).collect();
            assert_eq!(Tensor::vector(&clean).first_non_finite(), None, "{len}");
            for pos in [0, 1, 254, 255, 256, 257, 511, 512, 999] {
                if pos >= len {
                    continue;
                }
                for (j, &sp) in specials.iter().enumerate() {
                    let mut d = clean.clone();
                    d[pos] = sp;
                    // A later non-finite value must not be reported instead.
                    d[len - 1] = specials[(j + 1) % specials.len()];
                    let got = Tensor::vector(&d).first_non_finite();
                    let want = d.iter().position(|v| !v.is_finite()).unwrap();
                    assert_eq!(got.map(|p| p.0), Some(want), "{len} {pos}");
                    assert_eq!(got.unwrap().1.to_bits(), d[want].to_bits());
                }
            }
        }
    }
}
