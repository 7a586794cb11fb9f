//! Data sets and layer lists from the command line: a CSV file (targets by column name or
//! index) or an MNIST directory, and `784,512:relu,10` layer lists.

use super::args::{DataArgs, HeaderArg};
use super::{fail, CliResult};
use nets::data::{read_csv, read_mnist, Column, CsvOptions, Header, Targets};
use nets::{Kind, LayerSpec};
use tape::Tensor;

/// A data set read for a model: its arrays in training order, and held-out test arrays when
/// the source has them (MNIST).
pub struct Loaded {
    /// `[x, labels]`, `[x, targets]` or `[x]`.
    pub arrays: Vec<Tensor>,
    /// MNIST's test set, in the same order.
    pub test: Option<Vec<Tensor>>,
    /// The class names, when the labels were strings (label `k` is `classes[k]`, numbered in
    /// order of first appearance in the file).
    pub classes: Vec<String>,
}

impl Loaded {
    /// Renumbers string labels into a model's classes (by name), so a file read on its own
    /// lines up with the classes the model was trained on.
    pub fn align_classes(&mut self, model: &[String]) -> CliResult<()> {
        if self.classes.is_empty() {
            return Ok(());
        }
        if model.is_empty() {
            return Err(fail(format!(
                "the file's labels are names ({}), but the model was trained on numbered classes",
                self.classes.join(", ")
            )));
        }
        let mut to_model = Vec::with_capacity(self.classes.len());
        for name in &self.classes {
            let k = model.iter().position(|m| m == name).ok_or_else(|| {
                fail(format!(
                    "class `{name}` is not one of the model's classes: {}",
                    model.join(", ")
                ))
            })?;
            to_model.push(k as f32);
        }
        for arrays in std::iter::once(&mut self.arrays).chain(self.test.as_mut()) {
            if let Some(labels) = arrays.get_mut(1) {
                for v in labels.data_mut() {
                    *v = to_model[*v as usize];
                }
            }
        }
        self.classes = model.to_vec();
        Ok(())
    }
}

/// A column named on the command line: a whole number is an index, anything else a name.
fn column(text: &str) -> Column {
    match text.parse() {
        Ok(i) => Column::Index(i),
        Err(_) => Column::Name(text.to_string()),
    }
}

/// Reads `args.data` for a model of `kind`.
pub fn load(args: &DataArgs, kind: Kind) -> CliResult<Loaded> {
    if args.data.is_dir() {
        return load_mnist(args, kind);
    }
    let targets = match (kind, args.target.as_slice()) {
        (Kind::Autoencoder, []) => Targets::None,
        (Kind::Autoencoder, _) => return Err(fail("an autoencoder takes no --target column")),
        (Kind::Classifier, [one]) => Targets::Labels(column(one)),
        (Kind::Classifier, _) => {
            return Err(fail(
                "a classifier needs exactly one --target column (the class label)",
            ))
        }
        (Kind::Regressor, []) => return Err(fail("a regressor needs --target columns")),
        (Kind::Regressor, cols) => Targets::Values(cols.iter().map(|c| column(c)).collect()),
    };
    let delimiter = u8::try_from(args.delimiter)
        .map_err(|_| fail(format!("--delimiter `{}` is not one byte", args.delimiter)))?;
    let options = CsvOptions {
        header: match args.header {
            HeaderArg::Auto => Header::Auto,
            HeaderArg::Yes => Header::Yes,
            HeaderArg::No => Header::No,
        },
        delimiter: Some(delimiter),
        targets,
    };
    let table = read_csv(&args.data, &options)?;
    let mut arrays = vec![table.x];
    arrays.extend(table.y);
    Ok(Loaded {
        arrays,
        test: None,
        classes: table.classes.unwrap_or_default(),
    })
}

/// MNIST: training and test sets; an autoencoder gets the images only.
fn load_mnist(args: &DataArgs, kind: Kind) -> CliResult<Loaded> {
    if kind == Kind::Regressor {
        return Err(fail(format!(
            "{}: MNIST has class labels, not regression targets",
            args.data.display()
        )));
    }
    let m = read_mnist(&args.data)?;
    let pick = |x: Tensor, y: Tensor| match kind {
        Kind::Autoencoder => vec![x],
        _ => vec![x, y],
    };
    Ok(Loaded {
        arrays: pick(m.train_x, m.train_y),
        test: Some(pick(m.test_x, m.test_y)),
        classes: Vec::new(),
    })
}

/// Layer specs from `784,512:relu,10`: the first is the input, the last the output (a softmax
/// layer for a classifier; linear otherwise unless an activation is given).
pub fn parse_layers(text: &str, kind: Kind) -> CliResult<Vec<LayerSpec>> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if parts.len() < 2 {
        return Err(fail(format!(
            "--layers `{text}`: give at least an input and an output size, e.g. 64,100:relu,10"
        )));
    }
    let last = parts.len() - 1;
    let mut specs = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let (size, activation) = match part.split_once(':') {
            Some((s, a)) => (s, Some(a)),
            None => (*part, None),
        };
        let size: usize = size.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
            fail(format!(
                "--layers `{text}`: `{part}` is not a positive size (optionally `:activation`)"
            ))
        })?;
        let spec = match (i, activation) {
            (0, Some(_)) => {
                return Err(fail(format!(
                    "--layers `{text}`: the input layer `{part}` takes no activation"
                )))
            }
            (0, None) => LayerSpec::input(size),
            (i, None) if i == last && kind == Kind::Classifier => LayerSpec::classifier(size),
            (_, None) => LayerSpec::dense(size),
            (_, Some(a)) => LayerSpec::dense(size).activation(a),
        };
        specs.push(spec);
    }
    Ok(specs)
}
