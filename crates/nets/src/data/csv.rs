//! CSV files as a feature matrix and optional targets: labels (integers, or strings mapped to
//! classes in order of first appearance, the mapping kept) or real-valued target columns, chosen
//! by name or index. Errors name the file, the line and the column.

use super::file_error;
use crate::error::Result;
use std::path::Path;
use tape::Tensor;

/// A column, by header name or by 0-based index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    /// The column whose header is this name.
    Name(String),
    /// The column at this 0-based position.
    Index(usize),
}

/// Whether the first line is a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Header {
    /// A header if the first line has a field that is not a number (the default).
    #[default]
    Auto,
    /// The first line is a header.
    Yes,
    /// Every line is data.
    No,
}

/// What the targets are.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Targets {
    /// No targets: every column is a feature (autoencoder data).
    #[default]
    None,
    /// One column of class labels: whole numbers ≥ 0 are used as they are; otherwise each
    /// distinct string becomes a class, numbered in order of first appearance.
    Labels(Column),
    /// Real-valued target columns (regression), in the order given.
    Values(Vec<Column>),
}

/// How to read a CSV file.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CsvOptions {
    /// Whether the first line is a header.
    pub header: Header,
    /// The field separator (default `,`).
    pub delimiter: Option<u8>,
    /// Which columns are targets; the rest are features.
    pub targets: Targets,
}

impl CsvOptions {
    /// Features and one label column.
    pub fn labels(column: Column) -> CsvOptions {
        CsvOptions {
            targets: Targets::Labels(column),
            ..Default::default()
        }
    }

    /// Features and real-valued target columns.
    pub fn values(columns: Vec<Column>) -> CsvOptions {
        CsvOptions {
            targets: Targets::Values(columns),
            ..Default::default()
        }
    }
}

/// A CSV file read into arrays.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// Features, `rows × features`.
    pub x: Tensor,
    /// Labels (`rows`) or target values (`rows × targets`), if asked for.
    pub y: Option<Tensor>,
    /// The feature columns' names (from the header, else `column N`).
    pub features: Vec<String>,
    /// For string labels, the class names in class order (label `k` is `classes[k]`).
    pub classes: Option<Vec<String>>,
}

/// Reads a CSV file. Every feature and target value must be a finite number, except string
/// labels.
pub fn read_csv(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Table> {
    let path = path.as_ref();
    let text = std::fs::read(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    parse_csv(path, &text, options)
}

/// Parses CSV bytes as [`read_csv`] does; `path` is only used in errors.
pub fn parse_csv(path: &Path, bytes: &[u8], options: &CsvOptions) -> Result<Table> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(options.delimiter.unwrap_or(b','))
        .trim(::csv::Trim::All)
        .flexible(true)
        .from_reader(bytes);
    let mut records = Vec::new();
    for (i, r) in reader.records().enumerate() {
        let r = r.map_err(|e| file_error(path, format!("line {}: {e}", i + 1)))?;
        if r.iter().all(str::is_empty) {
            continue;
        }
        let line = r.position().map_or(i as u64 + 1, |p| p.line()) as usize;
        records.push((line, r));
    }
    if records.is_empty() {
        return Err(file_error(path, "no rows"));
    }
    let has_header = match options.header {
        Header::Yes => true,
        Header::No => false,
        Header::Auto => {
            records[0].1.iter().any(|f| f.parse::<f64>().is_err()) && {
                // A first line of strings is a header unless string labels sit in its label column
                // and every other field is a number.
                let label = match &options.targets {
                    Targets::Labels(Column::Index(k)) => Some(*k),
                    _ => None,
                };
                records[0]
                    .1
                    .iter()
                    .enumerate()
                    .any(|(c, f)| Some(c) != label && f.parse::<f64>().is_err())
            }
        }
    };
    let width = records[0].1.len();
    let names: Vec<String> = if has_header {
        records[0].1.iter().map(str::to_string).collect()
    } else {
        (0..width).map(|c| format!("column {c}")).collect()
    };
    let data = if has_header {
        &records[1..]
    } else {
        &records[..]
    };
    if data.is_empty() {
        return Err(file_error(path, "a header but no rows"));
    }
    let find = |col: &Column| -> Result<usize> {
        match col {
            Column::Index(k) if *k < width => Ok(*k),
            Column::Index(k) => Err(file_error(
                path,
                format!("column {k} does not exist: the rows have {width} columns (0..{width})"),
            )),
            Column::Name(n) => names.iter().position(|h| h == n).ok_or_else(|| {
                file_error(
                    path,
                    if has_header {
                        format!(
                            "no column named `{n}`; the columns are {}",
                            names.join(", ")
                        )
                    } else {
                        format!("no column named `{n}`: the file has no header line")
                    },
                )
            }),
        }
    };
    let target_cols: Vec<usize> = match &options.targets {
        Targets::None => Vec::new(),
        Targets::Labels(c) => vec![find(c)?],
        Targets::Values(cs) => cs.iter().map(find).collect::<Result<_>>()?,
    };
    let feature_cols: Vec<usize> = (0..width).filter(|c| !target_cols.contains(c)).collect();
    if feature_cols.is_empty() {
        return Err(file_error(
            path,
            "every column is a target: no features are left",
        ));
    }
    let number = |line: usize, col: usize, field: &str| -> Result<f32> {
        match field.parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(file_error(
                path,
                format!(
                    "line {line}, column {} (`{}`): `{field}` is not a finite number",
                    col + 1,
                    names[col]
                ),
            )),
        }
    };
    let mut x = Vec::with_capacity(data.len() * feature_cols.len());
    let mut y = Vec::new();
    let mut label_fields: Vec<String> = Vec::new();
    for (line, r) in data {
        if r.len() != width {
            return Err(file_error(
                path,
                format!(
                    "line {line}: {} fields, but the first line has {width}",
                    r.len()
                ),
            ));
        }
        for &c in &feature_cols {
            x.push(number(*line, c, &r[c])?);
        }
        match &options.targets {
            Targets::None => {}
            Targets::Labels(_) => label_fields.push(r[target_cols[0]].to_string()),
            Targets::Values(_) => {
                for &c in &target_cols {
                    y.push(number(*line, c, &r[c])?);
                }
            }
        }
    }
    let rows = data.len();
    let x = Tensor::new(&[rows, feature_cols.len()], x)?;
    let (y, classes) = match &options.targets {
        Targets::None => (None, None),
        Targets::Values(_) => (Some(Tensor::new(&[rows, target_cols.len()], y)?), None),
        Targets::Labels(_) => {
            let (labels, classes) = labels_of(&label_fields);
            (Some(Tensor::vector(&labels)), classes)
        }
    };
    Ok(Table {
        x,
        y,
        features: feature_cols.iter().map(|&c| names[c].clone()).collect(),
        classes,
    })
}

/// Whole numbers ≥ 0 (below 2²⁴, exact in `f32`) are labels as they are; any other field makes
/// the column strings, numbered by first appearance.
fn labels_of(fields: &[String]) -> (Vec<f32>, Option<Vec<String>>) {
    let numeric: Option<Vec<f32>> = fields
        .iter()
        .map(|f| {
            f.parse::<u32>()
                .ok()
                .filter(|&v| v < (1 << 24))
                .map(|v| v as f32)
        })
        .collect();
    if let Some(labels) = numeric {
        return (labels, None);
    }
    let mut classes: Vec<String> = Vec::new();
    let labels = fields
        .iter()
        .map(|f| match classes.iter().position(|c| c == f) {
            Some(k) => k as f32,
            None => {
                classes.push(f.clone());
                (classes.len() - 1) as f32
            }
        })
        .collect();
    (labels, Some(classes))
}
