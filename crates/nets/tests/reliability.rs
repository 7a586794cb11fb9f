//! Issue 12's findings in nets, each as a case that panicked or returned a silently wrong value
//! before: rank-0 inputs to label checks, layers connected to too few inputs, flatten and
//! reshape sizes that do not fit, unchecked targets and weights, NaN parameters in `predict`,
//! and errors that did not name the user's layer or option.

use nets::init::{BiasInit, WeightInit};
use nets::layers::{Combine, Feedforward, Form, Tied};
use nets::{
    Autoencoder, Classifier, Error, Layer, LayerSpec, Loss, LossKind, ModelOptions, Regressor,
};
use std::error::Error as _;
use tape::{Expr, Param, Tensor};

/// Every message in the error's chain, outermost first, joined.
fn chain(e: &Error) -> String {
    let mut out = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push(c.to_string());
        cause = c.source();
    }
    out.join(" / ")
}

fn x4() -> Tensor {
    Tensor::new(&[4, 2], vec![0.0, 1.0, 1.0, 0.0, 0.5, 0.5, -1.0, 2.0]).expect("8 values")
}

#[test]
fn confusion_and_label_checks_refuse_a_rank0_input() {
    let model = Classifier::new(&[2, 3, 2]).expect("valid model");
    let scalar = Tensor::scalar(1.0);
    let labels = Tensor::vector(&[0.0]);
    let e = model.confusion(&scalar, &labels).unwrap_err();
    assert!(chain(&e).contains("input layer `in`"), "{}", chain(&e));
    assert!(model.check_labels(&scalar, &labels).is_err());
}

#[test]
fn tied_and_concatenate_layers_refuse_missing_inputs() {
    let partner = Param::new("enc.w", Tensor::zeros(&[2, 3]));
    let tied = Tied::new(
        "dec",
        ("enc:out".into(), 3),
        &partner,
        "linear",
        &BiasInit::default(),
        1,
    )
    .expect("fits its partner");
    let e = tied.connect(&[]).expect_err("no inputs is an error");
    assert!(chain(&e).contains("layer `dec`"), "{}", chain(&e));
    let cat = Combine::new(
        "cat",
        5,
        &[("a:out".into(), 2), ("b:out".into(), 3)],
        Form::Concatenate,
    )
    .expect("widths add up");
    let e = cat.connect(&[]).expect_err("no inputs is an error");
    assert!(
        chain(&e).contains("expects 2 input(s) (a:out, b:out)"),
        "{}",
        chain(&e)
    );
}

#[test]
fn a_two_input_dense_layer_refuses_one_input() {
    let layer = Feedforward::new(
        "mix",
        2,
        &[("a:out".into(), 3), ("b:out".into(), 4)],
        "linear",
        &WeightInit::default(),
        &BiasInit::default(),
        1,
    )
    .expect("valid layer");
    let x = Expr::input_with_dims("a", &[None, Some(3)]);
    let e = layer
        .connect(&[x])
        .expect_err("the second input is missing");
    let msg = chain(&e);
    assert!(
        msg.contains("layer `mix`") && msg.contains("a:out, b:out"),
        "{msg}"
    );
    assert!(msg.contains("connected to 1"), "{msg}");
}

#[test]
fn flatten_and_reshape_sizes_must_fit_their_input() {
    // 3 values per row flattened to 1 used to turn a 16-row batch into 48 rows.
    let specs = vec![
        LayerSpec::input(3),
        LayerSpec::flatten(1),
        LayerSpec::dense(1),
    ];
    let e = Regressor::build(specs, ModelOptions::default())
        .err()
        .expect("size 1 ≠ 3");
    let msg = chain(&e);
    assert!(
        msg.contains("layer `hid1`") && msg.contains("has 3"),
        "{msg}"
    );
    let specs = vec![
        LayerSpec::input(6),
        LayerSpec::reshape(&[4, 2]),
        LayerSpec::dense(1),
    ];
    let e = Regressor::build(specs, ModelOptions::default())
        .err()
        .expect("4·2 ≠ 6");
    assert!(
        chain(&e).contains("needs 8 values per row"),
        "{}",
        chain(&e)
    );

    // Sizes that fit keep the batch: 16 rows in, 16 rows out.
    let specs = vec![
        LayerSpec::input(6),
        LayerSpec::reshape(&[2, 3]),
        LayerSpec::flatten(6),
        LayerSpec::dense(1),
    ];
    let model = Regressor::build(specs, ModelOptions::default()).expect("sizes fit");
    let y = model.predict(&Tensor::zeros(&[16, 6])).expect("predicts");
    assert_eq!(y.shape(), &[16, 1]);
}

#[test]
fn scores_check_targets_and_weights() {
    let model = Regressor::new(&[2, 3, 1]).expect("valid model");
    let x = x4();
    let nan = Tensor::new(&[4, 1], vec![0.0, f32::NAN, 1.0, 2.0]).expect("4 values");
    let e = model.score(&x, &nan, None).unwrap_err();
    assert!(
        chain(&e).contains("targets") && chain(&e).contains("row 1"),
        "{}",
        chain(&e)
    );

    let y = Tensor::new(&[4, 1], vec![0.0, 1.0, 1.0, 2.0]).expect("4 values");
    let weights = |w: [f32; 4]| Tensor::new(&[4, 1], w.to_vec()).expect("4 values");
    let e = model
        .score(&x, &y, Some(&weights([1.0, 1.0, -1.0, 1.0])))
        .unwrap_err();
    assert!(chain(&e).contains("row 2 is negative"), "{}", chain(&e));
    let e = model.score(&x, &y, Some(&weights([0.0; 4]))).unwrap_err();
    assert!(chain(&e).contains("all weights are zero"), "{}", chain(&e));

    let ae = Autoencoder::new(&[2, 3, 2]).expect("valid model");
    let w = Tensor::new(
        &[4, 2],
        vec![1.0, 1.0, 1.0, 1.0, 1.0, f32::INFINITY, 1.0, 1.0],
    )
    .expect("8 values");
    let e = ae.score(&x, Some(&w)).unwrap_err();
    assert!(
        chain(&e).contains("weights") && chain(&e).contains("row 2"),
        "{}",
        chain(&e)
    );
}

#[test]
fn loss_weights_must_be_finite_and_not_negative() {
    for weight in [f32::NAN, -1.0, f32::INFINITY] {
        let options = ModelOptions {
            losses: vec![Loss {
                weight,
                ..Loss::new(LossKind::Mse)
            }],
            ..ModelOptions::default()
        };
        let specs = vec![LayerSpec::input(2), LayerSpec::dense(1)];
        let e = Regressor::build(specs, options)
            .err()
            .expect("bad loss weight");
        assert!(
            chain(&e).contains("option `weight`"),
            "{weight}: {}",
            chain(&e)
        );
    }
}

#[test]
fn predict_reports_nan_parameters_instead_of_class_0() {
    let model = Classifier::new(&[2, 3, 2]).expect("valid model");
    let w = model.find("out", "w").expect("output weights");
    w.update(|v| v.fill(f32::NAN));
    let e = model.predict(&x4()).unwrap_err();
    let msg = chain(&e);
    assert!(
        msg.contains("output layer `out`") && msg.contains("row 0"),
        "{msg}"
    );
}

#[test]
fn init_errors_name_the_layer() {
    let specs = vec![
        LayerSpec::input(2),
        LayerSpec::dense(3).std(-1.0),
        LayerSpec::dense(1),
    ];
    let e = Regressor::build(specs, ModelOptions::default())
        .err()
        .expect("negative std");
    let msg = chain(&e);
    assert!(
        msg.contains("layer `hid1`") && msg.contains("hid1.w"),
        "{msg}"
    );
    let specs = vec![LayerSpec::input(2), LayerSpec::dense(3).bias(0.0, -1.0)];
    let e = Regressor::build(specs, ModelOptions::default())
        .err()
        .expect("negative std");
    assert!(chain(&e).contains("`out.b`"), "{}", chain(&e));
}

/// A custom output layer of width 0: no values to choose a class from.
struct Empty {
    name: String,
    inputs: Vec<(String, usize)>,
}

impl Layer for Empty {
    fn name(&self) -> &str {
        &self.name
    }
    fn size(&self) -> usize {
        0
    }
    fn inputs(&self) -> &[(String, usize)] {
        &self.inputs
    }
    fn params(&self) -> Vec<Param> {
        Vec::new()
    }
    fn connect(&self, inputs: &[Expr]) -> nets::Result<Vec<(String, Expr)>> {
        Ok(vec![("out".into(), inputs[0].slice(1, 0, 0))])
    }
}

#[test]
fn predict_refuses_an_output_of_width_0() {
    let empty = LayerSpec::custom(0, |ctx: &nets::LayerContext| {
        Ok(Box::new(Empty {
            name: ctx.name.clone(),
            inputs: ctx.inputs.clone(),
        }) as Box<dyn Layer>)
    });
    let specs = vec![LayerSpec::input(2), empty];
    let options = ModelOptions {
        losses: vec![Loss::new(LossKind::Hinge)],
        ..ModelOptions::default()
    };
    let model = Classifier::build(specs, options).expect("a width-0 output can be built");
    let predict = std::panic::AssertUnwindSafe(|| model.predict(&x4()).map(|_| ()));
    let result = std::panic::catch_unwind(predict).expect("predict must not panic");
    let e = result.expect_err("no class to predict");
    assert!(chain(&e).contains("width 0"), "{}", chain(&e));
}

#[test]
fn label_errors_on_the_direct_trainer_path_name_the_layer_the_dataset_and_the_row() {
    // A user who builds the trainer and the dataset by hand (no Experiment, no model-level
    // check) must still learn which layer's labels, which data set and which row are wrong,
    // not an op name at a line inside nets.
    let model = Classifier::new(&[2, 3, 2]).expect("model");
    let mut trainer = model.trainer("sgd", &["max_updates=1"]).expect("trainer");
    let labels = Tensor::vector(&[0.0, 1.0, 1.0, 7.0]);
    let mut train = optim::Dataset::new(
        "train",
        vec![x4(), labels],
        optim::DatasetOptions {
            batch_size: 2,
            shuffle_samples: false,
            ..Default::default()
        },
    )
    .expect("dataset");
    let e = trainer
        .train(&mut train, None)
        .map(|_| ())
        .expect_err("label 7 with 2 classes");
    let text = chain(&nets::Error::from(e));
    assert!(text.contains("layer `out`"), "{text}");
    assert!(text.contains("`train`"), "{text}");
    assert!(text.contains("row 3"), "{text}");
    assert!(text.contains("label 7"), "{text}");
    assert!(!text.contains("crates/nets/src"), "{text}");
}

#[test]
fn a_bad_label_met_in_shuffled_training_batches_is_reported_at_its_original_row() {
    let model = Classifier::new(&[2, 3, 2]).expect("model");
    let mut trainer = model.trainer("sgd", &["max_updates=3"]).expect("trainer");
    let options = optim::DatasetOptions {
        batch_size: 1,
        shuffle_samples: true,
        seed: 5,
        ..Default::default()
    };
    let good = Tensor::vector(&[0.0, 1.0, 1.0, 0.0]);
    let bad = Tensor::vector(&[0.0, 1.0, 2.0, 0.0]);
    let mut train =
        optim::Dataset::new("train", vec![x4(), bad.clone()], options.clone()).expect("dataset");
    let mut valid = optim::Dataset::new("valid", vec![x4(), good], options).expect("dataset");
    let e = trainer
        .train(&mut train, Some(&mut valid))
        .map(|_| ())
        .expect_err("label 2 with 2 classes");
    let text = chain(&nets::Error::from(e));
    assert!(text.starts_with("training: iteration 1"), "{text}");
    assert!(
        text.contains("dataset `train`: row 2: labels for layer `out`: label 2"),
        "{text}"
    );

    // A batch handed to `step` directly is located within the batch.
    let e = trainer
        .step(&[x4().view(), bad.view()])
        .expect_err("label 2 with 2 classes");
    assert!(
        e.to_string().contains("row 2: labels for layer `out`"),
        "{e}"
    );
}
