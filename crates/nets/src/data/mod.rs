//! Data in and out of arrays: CSV files ([`csv`]), MNIST's IDX files ([`idx`]), the row
//! operations a training script needs ([`rows`]: seeded shuffle, split by fraction, stratified for
//! labels, select, concatenate) and [`sequences`] (variable-length sequences padded into
//! `(batch, time, ...)` arrays with their masks, and next-step windows). Every error is
//! [`crate::Error::File`] naming the file (and the line and column for text) or
//! [`crate::Error::Data`] naming the arrays.
//!
//! ```
//! use nets::data::{rows, Column, CsvOptions};
//! # let dir = std::env::temp_dir().join(format!("nets-data-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! let path = dir.join("iris.csv");
//! std::fs::write(&path, "sepal,petal,species\n5.1,1.4,setosa\n7.0,4.7,versicolor\n6.3,6.0,virginica\n4.9,1.4,setosa\n")?;
//! let table = nets::data::read_csv(&path, &CsvOptions::labels(Column::Name("species".into())))?;
//! assert_eq!(table.x.shape(), &[4, 2]);
//! assert_eq!(table.classes.as_deref(), Some(&["setosa".to_string(), "versicolor".into(), "virginica".into()][..]));
//! assert_eq!(table.y.unwrap().data(), &[0.0, 1.0, 2.0, 0.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod csv;
pub mod idx;
pub mod rows;
pub mod sequences;

pub use self::csv::{read_csv, Column, CsvOptions, Header, Table, Targets};
pub use self::idx::{read_idx, read_mnist, Mnist};
pub use self::rows::{concat, select, shuffle, split, Split};

use crate::error::Error;
use std::path::Path;

/// A file error for `path`.
pub(crate) fn file_error(path: &Path, problem: impl Into<String>) -> Error {
    Error::File {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}
