//! [`Dims`]: the dims of a value as known when a graph is built, with unknown ones as `None`.
//! Kept apart, with no dependency inside the crate, so that both the shape rules (`op`) and the
//! error type (`error`) can use it without a module cycle.

use smallvec::SmallVec;
use std::fmt;

/// Dims of a value as known when the graph is built; `None` is a dim only known at run time.
///
/// A type of its own (not a bare vector) so that errors can carry shapes as data and every
/// shape is rendered one way, the numpy way with `?` for an unknown dim: `[?, 3]`. It derefs to
/// the underlying vector, so slice and vector methods apply directly.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Dims(pub SmallVec<[Option<usize>; 4]>);

impl Dims {
    /// Fully known dims, e.g. a tensor's shape.
    pub fn known(dims: &[usize]) -> Dims {
        dims.iter().map(|&d| Some(d)).collect()
    }
}

impl std::ops::Deref for Dims {
    type Target = SmallVec<[Option<usize>; 4]>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Dims {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl FromIterator<Option<usize>> for Dims {
    fn from_iter<I: IntoIterator<Item = Option<usize>>>(iter: I) -> Dims {
        Dims(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Dims {
    type Item = &'a Option<usize>;
    type IntoIter = std::slice::Iter<'a, Option<usize>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl From<&[Option<usize>]> for Dims {
    fn from(dims: &[Option<usize>]) -> Dims {
        Dims(SmallVec::from_slice(dims))
    }
}

impl<const N: usize> From<[Option<usize>; N]> for Dims {
    fn from(dims: [Option<usize>; N]) -> Dims {
        Dims(SmallVec::from_slice(&dims))
    }
}

impl From<SmallVec<[Option<usize>; 4]>> for Dims {
    fn from(dims: SmallVec<[Option<usize>; 4]>) -> Dims {
        Dims(dims)
    }
}

/// Debug shows the plain list (`[Some(3), None]`), as the bare vector it replaced did.
impl fmt::Debug for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl fmt::Display for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            match d {
                Some(d) => write!(f, "{d}")?,
                None => write!(f, "?")?,
            }
        }
        write!(f, "]")
    }
}
