//! The embedded `digits` data set: 8×8 grey-level images of handwritten digits, 10 classes,
//! 1,437 training and 360 test rows (`data/digits/*.csv`: label, then 64 pixels in `[0, 1]`).

use std::fmt;
use tape::Tensor;

/// One split of the data: images as a `rows × 64` matrix, labels as a vector of class numbers.
#[derive(Clone, Debug)]
pub struct Split {
    /// `rows × 64` pixel values in `[0, 1]`.
    pub x: Tensor,
    /// `rows` labels in `0..10`, stored as floats.
    pub y: Tensor,
}

/// Why a CSV file could not be read as digits data.
#[derive(Debug)]
pub struct DigitsError {
    /// The file.
    pub path: String,
    /// Line number (1-based), 0 for the whole file.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for DigitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path, self.line, self.problem)
    }
}

impl std::error::Error for DigitsError {}

const TRAIN: &str = include_str!("../data/digits/train.csv");
const TEST: &str = include_str!("../data/digits/test.csv");

/// The training split (embedded in the binary).
pub fn train() -> Split {
    parse("data/digits/train.csv", TRAIN).expect("the embedded digits data is valid")
}

/// The test split (embedded in the binary).
pub fn test() -> Split {
    parse("data/digits/test.csv", TEST).expect("the embedded digits data is valid")
}

/// Parses CSV text of rows `label, 64 features`.
pub fn parse(path: &str, text: &str) -> Result<Split, DigitsError> {
    let err = |line: usize, problem: String| DigitsError {
        path: path.to_string(),
        line,
        problem,
    };
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let values: Vec<f32> = line
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|e| err(i + 1, format!("not a number ({e})")))?;
        if values.len() != 65 {
            return Err(err(
                i + 1,
                format!(
                    "expected 65 values (label + 64 pixels), found {}",
                    values.len()
                ),
            ));
        }
        let label = values[0];
        if !(label.fract() == 0.0 && (0.0..10.0).contains(&label)) {
            return Err(err(i + 1, format!("label {label} is not a class in 0..10")));
        }
        ys.push(label);
        xs.extend_from_slice(&values[1..]);
    }
    if ys.is_empty() {
        return Err(err(0, "no rows".into()));
    }
    let rows = ys.len();
    Ok(Split {
        x: Tensor::new(&[rows, 64], xs).map_err(|e| err(0, e.to_string()))?,
        y: Tensor::new(&[rows], ys).map_err(|e| err(0, e.to_string()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_splits_have_the_documented_sizes() {
        assert_eq!(train().x.shape(), &[1437, 64]);
        assert_eq!(test().y.shape(), &[360]);
    }

    #[test]
    fn bad_rows_are_reported_with_their_line() {
        let e = parse("t.csv", "1,2\n").unwrap_err();
        assert_eq!(e.line, 1);
        let mut row = vec!["11".to_string()];
        row.extend((0..64).map(|_| "0".to_string()));
        let e = parse("t.csv", &row.join(",")).unwrap_err();
        assert!(e.problem.contains("label 11"), "{e}");
        assert!(parse("t.csv", "").is_err());
    }
}
