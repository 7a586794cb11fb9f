//! A user-defined layer: a highway layer, `y = t ⊙ relu(x·W + b) + (1 − t) ⊙ x` with the gate
//! `t = σ(x·W_t + b_t)`, written with `tape` expressions. It is trained inside a `Classifier` on
//! the digits data and its gradient is checked against finite differences with `tape::check`.
//!
//! Run with `cargo run --release --example custom_layer`.

use nets::init::{random_matrix, WeightInit};
use nets::{Classifier, Layer, LayerContext, LayerSpec, ModelOptions};
use optim::{Dataset, DatasetOptions};
use tape::check::{self, Options};
use tape::{Expr, Param, Tensor};
use theanets_rs::digits;

/// A highway layer: its output has the width of its (single) input.
pub struct Highway {
    name: String,
    size: usize,
    inputs: Vec<(String, usize)>,
    w: Param,
    b: Param,
    wt: Param,
    bt: Param,
}

impl Highway {
    /// Builds the layer in a model: the gate's bias starts at −1 so the layer begins close to the
    /// identity, which is what makes deep stacks of them trainable.
    pub fn make(ctx: &LayerContext) -> nets::Result<Box<dyn Layer>> {
        let [(input, width)] = ctx.inputs.as_slice() else {
            return Err(nets::Error::Config {
                what: format!("layer `{}`", ctx.name),
                problem: "a highway layer reads one input".into(),
            });
        };
        if *width != ctx.size {
            return Err(nets::Error::Config {
                what: format!("layer `{}`", ctx.name),
                problem: format!(
                    "a highway layer keeps its input's width {width}, not {}",
                    ctx.size
                ),
            });
        }
        let mut rng = ctx.rng.lock().unwrap_or_else(|e| e.into_inner());
        let n = ctx.size;
        let init = WeightInit::default();
        Ok(Box::new(Highway {
            name: ctx.name.clone(),
            size: n,
            inputs: vec![(input.clone(), n)],
            w: Param::new(
                &format!("{}.w", ctx.name),
                random_matrix(n, n, &init, &mut rng)?,
            ),
            b: Param::new(&format!("{}.b", ctx.name), Tensor::zeros(&[n])),
            wt: Param::new(
                &format!("{}.wt", ctx.name),
                random_matrix(n, n, &init, &mut rng)?,
            ),
            bt: Param::new(&format!("{}.bt", ctx.name), Tensor::full(&[n], -1.0)),
        }))
    }
}

impl Layer for Highway {
    fn name(&self) -> &str {
        &self.name
    }
    fn size(&self) -> usize {
        self.size
    }
    fn inputs(&self) -> &[(String, usize)] {
        &self.inputs
    }
    fn params(&self) -> Vec<Param> {
        vec![
            self.w.clone(),
            self.b.clone(),
            self.wt.clone(),
            self.bt.clone(),
        ]
    }
    fn connect(&self, inputs: &[Expr]) -> nets::Result<Vec<(String, Expr)>> {
        let x = &inputs[0];
        let h = (x.matmul(&self.w.expr()) + self.b.expr()).relu();
        let gate = (x.matmul(&self.wt.expr()) + self.bt.expr()).sigmoid();
        let out = &gate * &h + (1.0 - &gate) * x;
        Ok(vec![("out".into(), out), ("gate".into(), gate)])
    }
    fn describe(&self) -> String {
        format!("{}: highway {}", self.name, self.size)
    }
}

/// Trains 64-64(dense)-64(highway)-10 on digits; returns the test accuracy.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let specs = vec![
        LayerSpec::input(64),
        LayerSpec::dense(64),
        LayerSpec::custom(64, Highway::make).name("highway"),
        LayerSpec::classifier(10),
    ];
    let net = Classifier::build(specs, ModelOptions::default())?;
    for l in net.layers() {
        println!("{}", l.describe());
    }

    // The layer's gradient, checked on a few rows against central differences.
    let data = digits::train();
    let graph = net.graph(&nets::Regularizers::default())?;
    let inputs = vec![
        (graph.inputs[0].clone(), data.x.rows(0, 8)?),
        (graph.inputs[1].clone(), data.y.rows(0, 8)?),
    ];
    let wrt: Vec<Expr> = ["w", "bt"]
        .iter()
        .map(|p| net.find("highway", p).map(|p| p.expr()))
        .collect::<Result<_, _>>()?;
    let report = check::gradient(&graph.loss, &inputs, &wrt, &Options::default())?;
    println!("gradient check of the highway layer: {report}");
    if !report.ok() {
        return Err("the highway layer's gradient disagrees with finite differences".into());
    }

    let options = DatasetOptions {
        batch_size: 32,
        seed: 1,
        ..Default::default()
    };
    let mut train = Dataset::new(
        "train",
        vec![data.x.rows(0, 1200)?, data.y.rows(0, 1200)?],
        options.clone(),
    )?;
    let mut valid = Dataset::new(
        "valid",
        vec![data.x.rows(1200, 1437)?, data.y.rows(1200, 1437)?],
        options,
    )?;
    let settings = [
        "learning_rate=0.01",
        "momentum=0.9",
        "validate_every=5",
        "patience=5",
        "max_updates=100",
    ];
    net.trainer("nag", &settings)?
        .train(&mut train, Some(&mut valid))?;
    let test = digits::test();
    let accuracy = net.score(&test.x, &test.y, None)?;
    println!(
        "test accuracy with a highway layer: {:.2}%",
        100.0 * accuracy
    );
    if accuracy < 0.9 {
        return Err(format!("accuracy {accuracy} is too low").into());
    }
    Ok(())
}
