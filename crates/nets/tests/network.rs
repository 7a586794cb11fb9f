//! The graph a network builds: the `Layer` contract is enforced on custom layers, noise and
//! dropout patterns must match an output, the contractive penalty's closed form equals the
//! general computation, and decoding works (and is cached) when later layers read earlier
//! outputs.

use nets::init::{BiasInit, WeightInit};
use nets::layers::Feedforward;
use nets::{Error, Layer, LayerContext, LayerSpec, ModelOptions, Regressor, Regularizers};
use tape::testing::{assert_close_tensor, normal};
use tape::{check, Expr, Function, Param, Tensor};

/// A custom layer that passes its input through under the output names it is given.
struct Named {
    name: String,
    size: usize,
    inputs: Vec<(String, usize)>,
    outputs: Vec<&'static str>,
}

impl Layer for Named {
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
        Vec::new()
    }
    fn connect(&self, inputs: &[Expr]) -> nets::Result<Vec<(String, Expr)>> {
        Ok(self
            .outputs
            .iter()
            .map(|n| (n.to_string(), inputs[0].clone()))
            .collect())
    }
}

fn named(outputs: Vec<&'static str>) -> LayerSpec {
    LayerSpec::custom(4, move |ctx: &LayerContext| {
        Ok(Box::new(Named {
            name: ctx.name.clone(),
            size: ctx.size,
            inputs: ctx.inputs.clone(),
            outputs: outputs.clone(),
        }) as Box<dyn Layer>)
    })
    .name("odd")
}

#[test]
fn a_custom_layer_must_return_out_first() {
    for (outputs, last) in [
        (vec![], true),
        (vec![], false),
        (vec!["value"], true),
        (vec!["pre", "out"], false),
    ] {
        let specs = if last {
            vec![
                LayerSpec::input(4),
                LayerSpec::dense(4),
                named(outputs.clone()),
            ]
        } else {
            vec![
                LayerSpec::input(4),
                named(outputs.clone()),
                LayerSpec::dense(4),
            ]
        };
        // The model connects its layers once when it is built, so the breach shows there.
        let e = Regressor::build(specs, ModelOptions::default())
            .err()
            .expect("an error, not a model");
        let text = e.to_string();
        assert!(matches!(e, Error::Config { .. }), "{text}");
        assert!(text.contains("layer `odd`"), "{text}");
        assert!(text.contains("`out`"), "{text}");
    }
    // The contract kept: `out` first, then anything.
    let net = Regressor::build(
        vec![
            LayerSpec::input(4),
            named(vec!["out", "copy"]),
            LayerSpec::dense(4),
        ],
        ModelOptions::default(),
    )
    .unwrap();
    let x = normal(&[2, 4], 1);
    assert_eq!(
        net.output(&x, "odd:copy", &Regularizers::default())
            .unwrap(),
        x
    );
}

fn small() -> Regressor {
    Regressor::new(&[4, 5, 3]).unwrap()
}

#[test]
fn noise_and_dropout_patterns_must_match_an_output() {
    let net = small();
    for (key, value, pattern) in [
        ("noise", "hdi*:out=0.1", "hdi*:out"),
        ("dropout", "hid2:out=0.1", "hid2:out"),
        // Only default outputs are corrupted, so a pattern matching only `pre` would do nothing.
        ("noise", "hid1:pre=0.1", "hid1:pre"),
    ] {
        let mut r = Regularizers::default();
        r.set(key, value).unwrap();
        let e = net
            .graph(&r)
            .err()
            .expect("an unmatched pattern is an error");
        let text = e.to_string();
        assert!(matches!(e, Error::NotFound { .. }), "{text}");
        assert!(text.contains(&format!("`{pattern}`")), "{text}");
        assert!(text.contains(key), "{text}");
        for available in ["in:out", "hid1:out", "out:out"] {
            assert!(text.contains(available), "{text}");
        }
        let setting = format!("{key}={value}");
        let e = net
            .trainer("sgd", &[setting.as_str()])
            .map(|_| ())
            .expect_err("an error");
        assert!(e.to_string().contains(pattern), "{e}");
        let e = net
            .output(&normal(&[2, 4], 1), "out", &r)
            .expect_err("an error");
        assert!(e.to_string().contains(pattern), "{e}");
    }
    // Matching patterns still build.
    let mut r = Regularizers::default();
    r.set("noise", "*:out=0.1").unwrap();
    r.set("dropout", "hid?:out=0.1").unwrap();
    assert!(net.graph(&r).is_ok());
}

/// A dense layer seen as a custom layer: it computes exactly what `LayerSpec::dense` does (same
/// parameter names and streams, so the same values) but does not offer the contractive
/// penalty's closed form, so the network takes the general path, one backward pass per unit.
struct Opaque(Feedforward);

impl Layer for Opaque {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn size(&self) -> usize {
        self.0.size()
    }
    fn inputs(&self) -> &[(String, usize)] {
        self.0.inputs()
    }
    fn params(&self) -> Vec<Param> {
        self.0.params()
    }
    fn connect(&self, inputs: &[Expr]) -> nets::Result<Vec<(String, Expr)>> {
        self.0.connect(inputs)
    }
}

const SEED: u64 = 29;

fn pair(activation: &str) -> (Regressor, Regressor) {
    let options = || ModelOptions {
        seed: SEED,
        ..Default::default()
    };
    let dense = Regressor::build(
        vec![
            LayerSpec::input(4),
            LayerSpec::dense(6).activation(activation),
            LayerSpec::dense(3),
        ],
        options(),
    )
    .unwrap();
    let opaque = Regressor::build(
        vec![
            LayerSpec::input(4),
            LayerSpec::custom(6, |ctx: &LayerContext| {
                Ok(Box::new(Opaque(Feedforward::new(
                    &ctx.name,
                    ctx.size,
                    &ctx.inputs,
                    &ctx.activation,
                    &WeightInit::default(),
                    &BiasInit::default(),
                    SEED,
                )?)) as Box<dyn Layer>)
            })
            .activation(activation),
            LayerSpec::dense(3),
        ],
        options(),
    )
    .unwrap();
    for (a, b) in dense.params().iter().zip(opaque.params()) {
        assert_eq!(a.name(), b.name());
        assert_eq!(a.value(), b.value());
    }
    // Biases away from zero so relu-like units are both on and off.
    for net in [&dense, &opaque] {
        let b = net.find("hid1", "b").unwrap();
        b.set(Tensor::from_fn(&[6], |i| 0.3 * i[0] as f32 - 0.8))
            .unwrap();
    }
    (dense, opaque)
}

/// The contractive penalty alone (the loss with it minus the loss without), for `x` and zero
/// targets.
fn penalty(net: &Regressor, x: &Tensor) -> f64 {
    let mut r = Regularizers::default();
    r.set("contractive", "1").unwrap();
    let y = Tensor::zeros(&[x.shape()[0], 3]);
    let loss = |r: &Regularizers| {
        let g = net.graph(r).unwrap();
        let mut f = Function::compile(&g.inputs, &[g.loss]).unwrap();
        f64::from(f.call(&[x, &y]).unwrap()[0].data()[0])
    };
    loss(&r) - loss(&Regularizers::default())
}

#[test]
fn contractive_closed_form_equals_the_general_path() {
    let x = normal(&[9, 4], 3);
    for activation in [
        "relu",
        "linear",
        "sigmoid",
        "tanh",
        "softplus",
        "prelu",
        "lgrelu",
        "rect:minmax",
        "maxout:3",
        "tanh+relu",
    ] {
        let (dense, opaque) = pair(activation);
        let (closed, general) = (penalty(&dense, &x), penalty(&opaque, &x));
        assert!(general > 1e-3, "{activation}: general {general}");
        assert!(
            (closed - general).abs() < 1e-5 * general.max(1.0),
            "{activation}: closed form {closed} vs general {general}"
        );
    }
    // Non-elementwise activations keep the general path, which is exact either way.
    for activation in ["softmax", "norm:z", "relu+norm:mean"] {
        let (dense, opaque) = pair(activation);
        let (a, b) = (penalty(&dense, &x), penalty(&opaque, &x));
        assert!(
            (a - b).abs() < 1e-5 * b.max(1.0),
            "{activation}: {a} vs {b}"
        );
    }
}

#[test]
fn contractive_closed_form_gradients_check() {
    let x = normal(&[5, 4], 4);
    for activation in ["tanh", "softplus", "sigmoid"] {
        let (dense, _) = pair(activation);
        let mut r = Regularizers::default();
        r.set("contractive", "1").unwrap();
        let g = dense.graph(&r).unwrap();
        // The penalty alone (the loss minus `err`), so its gradients are not hidden under the
        // error's.
        let cost = g.loss.clone() - g.monitors[0].1.clone();
        let inputs = vec![
            (g.inputs[0].clone(), x.clone()),
            (g.inputs[1].clone(), Tensor::zeros(&[5, 3])),
        ];
        let wrt: Vec<Expr> = dense.params().iter().map(Param::expr).collect();
        let report = check::gradient(&cost, &inputs, &wrt, &check::Options::default()).unwrap();
        assert!(report.ok(), "{activation}: {report}");
        assert!(report.checked > 20, "{activation}: {report}");
    }
}

#[test]
fn contractive_closed_form_of_a_tied_layer_reading_the_input() {
    // in 4 → hid1 (dense 4, relu) and hid2 (tied to hid1, relu, also reading `in`) → out 3.
    let net = Regressor::build(
        vec![
            LayerSpec::input(4),
            LayerSpec::dense(4),
            LayerSpec::tied()
                .partner("hid1")
                .inputs(&["in"])
                .bias(0.1, 0.5),
            LayerSpec::dense(3).inputs(&["hid2", "hid1"]),
        ],
        ModelOptions::default(),
    )
    .unwrap();
    let x = normal(&[7, 4], 21);
    let none = Regularizers::default();
    let w = net.find("hid1", "w").unwrap().value();
    let at = |t: &Tensor, r: usize, c: usize| f64::from(t.data()[r * t.shape()[1] + c]);
    // hid1 = relu(x·W + b): unit j's input weights are column j of W; hid2 = relu(x·Wᵀ + b₂):
    // row j of W.
    let by_hand = |layer: &str, weight: &dyn Fn(usize, usize) -> f64| {
        let pre = net.output(&x, &format!("{layer}:pre"), &none).unwrap();
        let mut total = 0.0;
        for r in 0..7 {
            for j in 0..4 {
                if at(&pre, r, j) > 0.0 {
                    total += (0..4).map(|i| weight(i, j).powi(2)).sum::<f64>();
                }
            }
        }
        total / 7.0
    };
    let expected =
        (by_hand("hid1", &|i, j| at(&w, i, j)) + by_hand("hid2", &|i, j| at(&w, j, i))) / 2.0;
    let mut r = Regularizers::default();
    r.set("contractive", "1").unwrap();
    let g = net.graph(&r).unwrap();
    let mut f = Function::compile(&g.inputs, &[g.loss - g.monitors[0].1.clone()]).unwrap();
    let got = f64::from(f.call(&[&x, &Tensor::zeros(&[7, 3])]).unwrap()[0].data()[0]);
    assert!(expected > 1e-2, "{expected}");
    assert!(
        (got - expected).abs() < 1e-5 * expected.max(1.0),
        "{got} vs {expected} by hand"
    );
}

/// in 4 → hid1 5 → hid2 3 → out 2, the output reading both hid2 and hid1 (theanets'
/// "decode from multiple layers" net).
fn skip_net() -> Regressor {
    Regressor::build(
        vec![
            LayerSpec::input(4),
            LayerSpec::dense(5),
            LayerSpec::dense(3),
            LayerSpec::dense(2).inputs(&["hid2", "hid1"]),
        ],
        ModelOptions::default(),
    )
    .unwrap()
}

#[test]
fn decoding_works_when_a_later_layer_reads_an_earlier_output() {
    let net = skip_net();
    let x = normal(&[6, 4], 11);
    let none = Regularizers::default();
    let (z1, z2) = (
        net.output(&x, "hid1", &none).unwrap(),
        net.output(&x, "hid2", &none).unwrap(),
    );
    // Codes for both layers the output reads: the prediction, without the input.
    let both = net
        .decode_codes(&[("hid2", &z2), ("hid1", &z1)], None)
        .unwrap();
    assert_close_tensor(&both, &net.predict(&x).unwrap(), 1e-5, 1e-5, "both codes");

    // A new code for hid2, hid1 from the input: out = z·W_hid2 + hid1(x)·W_hid1 + b by hand.
    let z = normal(&[6, 3], 12);
    let decoded = net.decode_codes(&[("hid2", &z)], Some(&x)).unwrap();
    let w2 = net.find("out", "w_hid2:out").unwrap().value();
    let w1 = net.find("out", "w_hid1:out").unwrap().value();
    let b = net.find("out", "b").unwrap().value();
    let expected = Tensor::from_fn(&[6, 2], |i| {
        let (r, c) = (i[0], i[1]);
        let from_code: f32 = (0..3)
            .map(|k| z.data()[r * 3 + k] * w2.data()[k * 2 + c])
            .sum();
        let from_x: f32 = (0..5)
            .map(|k| z1.data()[r * 5 + k] * w1.data()[k * 2 + c])
            .sum();
        from_code + from_x + b.data()[c]
    });
    assert_close_tensor(&decoded, &expected, 1e-5, 1e-5, "hid2 code and x");

    // One code and no input: an error that says what is missing.
    let e = net.decode_from("hid2", &z).unwrap_err().to_string();
    assert!(e.contains("layer `out` reads `hid1:out`"), "{e}");
    assert!(e.contains("input"), "{e}");
    // The input is not needed when the codes suffice, and wrong shapes are errors.
    assert!(net
        .decode_codes(&[("hid2", &z), ("hid1", &z1)], Some(&x))
        .is_ok());
    let e = net
        .decode_codes(&[("hid2", &z), ("hid1", &z)], None)
        .unwrap_err();
    assert!(e.to_string().contains("hid1"), "{e}");
    let e = net
        .decode_codes(&[("hid2", &z), ("hid2", &z)], None)
        .unwrap_err();
    assert!(e.to_string().contains("two codes"), "{e}");
}

#[test]
fn decoding_compiles_once_per_request() {
    let net = skip_net();
    let x = normal(&[6, 4], 11);
    let z1 = net.output(&x, "hid1", &Regularizers::default()).unwrap();
    let z2 = normal(&[6, 3], 12);
    let before = net.compiled_functions();
    let first = net
        .decode_codes(&[("hid2", &z2), ("hid1", &z1)], None)
        .unwrap();
    assert_eq!(net.compiled_functions(), before + 1);
    let z2b = normal(&[4, 3], 13);
    let z1b = normal(&[4, 5], 14);
    for _ in 0..3 {
        assert_eq!(
            net.decode_codes(&[("hid2", &z2), ("hid1", &z1)], None)
                .unwrap(),
            first
        );
        net.decode_codes(&[("hid2", &z2b), ("hid1", &z1b)], None)
            .unwrap();
    }
    assert_eq!(net.compiled_functions(), before + 1, "no recompilation");
    // Another request is another function, compiled once too.
    net.decode_codes(&[("hid2", &z2)], Some(&x)).unwrap();
    net.decode_codes(&[("hid2", &z2)], Some(&x)).unwrap();
    assert_eq!(net.compiled_functions(), before + 2);

    // A plain chain decodes from one code, also cached.
    let ae = nets::Autoencoder::new(&[4, 3, 4]).unwrap();
    let code = ae.encode(&x, None).unwrap();
    let n = ae.compiled_functions();
    let once = ae.decode(&code, None).unwrap();
    assert_eq!(ae.decode(&code, None).unwrap(), once);
    assert_eq!(ae.compiled_functions(), n + 1);
    assert_close_tensor(
        &once,
        &ae.predict(&x).unwrap(),
        1e-5,
        1e-5,
        "autoencoder decode",
    );
}

#[test]
fn class_names_belong_to_a_classifier_one_per_output_and_survive_a_file() {
    let named = |classes: &[&str]| ModelOptions {
        classes: classes.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let e = nets::Classifier::build(
        vec![LayerSpec::input(2), LayerSpec::classifier(3)],
        named(&["a", "b"]),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("2 class names for a Classifier with 3 outputs"),
        "{e}"
    );
    let e = Regressor::build(
        vec![LayerSpec::input(2), LayerSpec::dense(2)],
        named(&["a", "b"]),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("names are for a classifier"), "{e}");
    let net = nets::Classifier::build(
        vec![LayerSpec::input(2), LayerSpec::classifier(3)],
        named(&["cat", "dog", "bird"]),
    )
    .unwrap();
    let path = std::env::temp_dir().join(format!("nets-classes-{}.model", std::process::id()));
    net.save(&path).unwrap();
    let back = nets::Classifier::load(&path).unwrap();
    assert_eq!(back.options().classes, ["cat", "dog", "bird"]);
    std::fs::remove_file(path).unwrap();
}
