//! Row operations on arrays that share their first axis (`[x]`, `[x, y]`, `[x, y, w]`): a seeded
//! shuffle, a split by fraction (stratified by class for labels, so both parts keep the class
//! proportions), selecting rows by index and concatenating. The random stream is
//! `data.{name}` under the given seed, like every other stream.

use crate::error::{Error, Result};
use tape::{Rng, Tensor};

fn data_error(problem: String) -> Error {
    Error::Data {
        what: "arrays".into(),
        problem,
    }
}

/// The common number of rows, or an error naming the array that differs.
fn rows_of(arrays: &[Tensor]) -> Result<usize> {
    let first = arrays
        .first()
        .ok_or_else(|| data_error("no arrays given".into()))?;
    if first.rank() == 0 {
        return Err(data_error(
            "array 0 is a scalar; rows need a first axis".into(),
        ));
    }
    let n = first.shape()[0];
    for (k, a) in arrays.iter().enumerate() {
        if a.rank() == 0 || a.shape()[0] != n {
            return Err(data_error(format!(
                "array {k} has shape {:?}, but array 0 has {n} rows",
                a.shape()
            )));
        }
    }
    Ok(n)
}

/// The given rows of every array, in the given order.
pub fn select(arrays: &[Tensor], rows: &[usize]) -> Result<Vec<Tensor>> {
    let n = rows_of(arrays)?;
    if let Some(&r) = rows.iter().find(|&&r| r >= n) {
        return Err(data_error(format!(
            "row {r} does not exist: the arrays have {n} rows"
        )));
    }
    arrays
        .iter()
        .map(|a| {
            let width: usize = a.shape()[1..].iter().product();
            let mut data = Vec::with_capacity(rows.len() * width);
            for &r in rows {
                data.extend_from_slice(&a.data()[r * width..(r + 1) * width]);
            }
            let mut shape = a.shape().to_vec();
            shape[0] = rows.len();
            Ok(Tensor::new(&shape, data)?)
        })
        .collect()
}

/// The rows of every array in one seeded random order (the same for all arrays).
pub fn shuffle(arrays: &[Tensor], seed: u64, name: &str) -> Result<Vec<Tensor>> {
    let n = rows_of(arrays)?;
    let mut order: Vec<usize> = (0..n).collect();
    Rng::from_name(seed, &format!("data.{name}")).shuffle(&mut order);
    select(arrays, &order)
}

/// Two parts of a data set.
#[derive(Clone, Debug)]
pub struct Split {
    /// The larger part (`1 − fraction` of the rows).
    pub first: Vec<Tensor>,
    /// `fraction` of the rows (e.g. the validation set).
    pub second: Vec<Tensor>,
}

/// Splits the rows at random into `1 − fraction` and `fraction`. With `stratify`, the index of
/// an array of class labels among `arrays`, each class is split on its own, so both parts keep
/// the class proportions (each class with at least two rows gives at least one to each part).
pub fn split(
    arrays: &[Tensor],
    fraction: f32,
    stratify: Option<usize>,
    seed: u64,
) -> Result<Split> {
    let n = rows_of(arrays)?;
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(data_error(format!(
            "split fraction {fraction} is not in (0, 1)"
        )));
    }
    let mut rng = Rng::from_name(seed, "data.split");
    let mut groups: Vec<Vec<usize>> = match stratify {
        None => vec![(0..n).collect()],
        Some(k) => {
            let labels = arrays.get(k).ok_or_else(|| {
                data_error(format!(
                    "no array {k} to stratify by ({} arrays)",
                    arrays.len()
                ))
            })?;
            if labels.rank() != 1 {
                return Err(data_error(format!(
                    "array {k}, stratified by, has shape {:?}: labels are one per row",
                    labels.shape()
                )));
            }
            let mut by_class: Vec<(u32, Vec<usize>)> = Vec::new();
            for (r, &v) in labels.data().iter().enumerate() {
                if !(v >= 0.0 && v.fract() == 0.0) {
                    return Err(data_error(format!("label {v} in row {r} is not a class")));
                }
                let c = v as u32;
                match by_class.iter_mut().find(|(k, _)| *k == c) {
                    Some((_, rows)) => rows.push(r),
                    None => by_class.push((c, vec![r])),
                }
            }
            by_class.sort_by_key(|(c, _)| *c);
            by_class.into_iter().map(|(_, rows)| rows).collect()
        }
    };
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for g in &mut groups {
        rng.shuffle(g);
        let mut take = (g.len() as f32 * fraction).round() as usize;
        if g.len() >= 2 {
            take = take.clamp(1, g.len() - 1);
        }
        second.extend_from_slice(&g[..take]);
        first.extend_from_slice(&g[take..]);
    }
    if first.is_empty() || second.is_empty() {
        return Err(data_error(format!(
            "splitting {n} rows by {fraction} leaves a part empty"
        )));
    }
    // Within each part, rows in a fresh random order rather than grouped by class.
    rng.shuffle(&mut first);
    rng.shuffle(&mut second);
    Ok(Split {
        first: select(arrays, &first)?,
        second: select(arrays, &second)?,
    })
}

/// The rows of `a` followed by those of `b`, array by array (shapes after the first axis must
/// agree).
pub fn concat(a: &[Tensor], b: &[Tensor]) -> Result<Vec<Tensor>> {
    rows_of(a)?;
    rows_of(b)?;
    if a.len() != b.len() {
        return Err(data_error(format!(
            "{} arrays and {} arrays",
            a.len(),
            b.len()
        )));
    }
    a.iter()
        .zip(b)
        .enumerate()
        .map(|(k, (x, y))| {
            if x.shape()[1..] != y.shape()[1..] {
                return Err(data_error(format!(
                    "array {k}: rows of shape {:?} and {:?} cannot be stacked",
                    &x.shape()[1..],
                    &y.shape()[1..]
                )));
            }
            let mut shape = x.shape().to_vec();
            shape[0] += y.shape()[0];
            let mut data = x.data().to_vec();
            data.extend_from_slice(y.data());
            Ok(Tensor::new(&shape, data)?)
        })
        .collect()
}
