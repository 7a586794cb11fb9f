//! Activations by name: values on a probe against hand-written numbers, names and aliases,
//! composition, parametric activations' parameters, errors, and gradients by finite differences
//! (with respect to the input and to the activations' own parameters).

use nets::activations::{Activation, NAMES};
use nets::Error;
use proptest::prelude::*;
use tape::testing::{self, off_zero, values};
use tape::{check, Expr, Function, Tensor};

const PROBE: [f32; 7] = [-10.0, -1.0, -0.1, 0.0, 0.1, 1.0, 10.0];

/// The activation applied to `values` (shape `shape`), through a compiled function.
fn run(act: &Activation, shape: &[usize], values: &[f32]) -> Vec<f32> {
    let x = Expr::input("x", shape.len());
    let y = act.apply(&x);
    let mut f = Function::compile(&[x], &[y]).unwrap();
    let out = f
        .call(&[&Tensor::new(shape, values.to_vec()).unwrap()])
        .unwrap();
    out[0].data().to_vec()
}

fn probe(spec: &str) -> Vec<f32> {
    let act = Activation::build(spec, "l", 7).unwrap();
    run(&act, &[1, 7], &PROBE)
}

/// This file's tolerance: 2e-6 relative plus 1e-6 absolute against the hand-computed values.
#[track_caller]
fn assert_close(got: &[f32], expected: &[f64], what: &str) {
    testing::assert_close(got, expected, 2e-6, 1e-6, what);
}

#[test]
fn plain_activations_on_the_probe() {
    // Hand-computed (to 9 significant digits) on [-10, -1, -0.1, 0, 0.1, 1, 10].
    let relu = [0.0, 0.0, 0.0, 0.0, 0.1, 1.0, 10.0];
    let sigmoid = [
        4.53978687e-05,
        0.268941421,
        0.475020813,
        0.5,
        0.524979187,
        0.731058579,
        0.999954602,
    ];
    let cases: Vec<(&str, Vec<f64>)> = vec![
        ("linear", vec![-10.0, -1.0, -0.1, 0.0, 0.1, 1.0, 10.0]),
        ("identity", vec![-10.0, -1.0, -0.1, 0.0, 0.1, 1.0, 10.0]),
        ("logistic", sigmoid.to_vec()),
        ("sigmoid", sigmoid.to_vec()),
        (
            "tanh",
            vec![
                -0.999999996,
                -0.761594156,
                -0.0996679946,
                0.0,
                0.0996679946,
                0.761594156,
                0.999999996,
            ],
        ),
        (
            "softplus",
            vec![
                4.53988992e-05,
                0.313261688,
                0.64439666,
                std::f64::consts::LN_2, // softplus(0) = ln 2
                0.74439666,
                1.31326169,
                10.0000454,
            ],
        ),
        (
            "softmax",
            vec![
                2.06058332e-09,
                1.66970796e-05,
                4.10681889e-05,
                4.5387368e-05,
                5.01607992e-05,
                0.000123375658,
                0.999723309,
            ],
        ),
        ("relu", relu.to_vec()),
        ("rect:max", relu.to_vec()),
        ("rect:min", vec![-10.0, -1.0, -0.1, 0.0, 0.1, 1.0, 1.0]),
        ("rect:minmax", vec![0.0, 0.0, 0.0, 0.0, 0.1, 1.0, 1.0]),
        // The probe has mean 0, so norm:mean leaves it alone and norm:z equals norm:std; the
        // asymmetric rows below tell them apart.
        ("norm:mean", vec![-10.0, -1.0, -0.1, 0.0, 0.1, 1.0, 10.0]),
        // max|x| = 10.
        (
            "norm:max",
            vec![
                -0.999999999,
                -0.0999999999,
                -0.00999999999,
                0.0,
                0.00999999999,
                0.0999999999,
                0.999999999,
            ],
        ),
        // std = √(202.02/7) = 5.37215041.
        (
            "norm:std",
            vec![
                -1.86145197,
                -0.186145197,
                -0.0186145197,
                0.0,
                0.0186145197,
                0.186145197,
                1.86145197,
            ],
        ),
        (
            "norm:z",
            vec![
                -1.86145197,
                -0.186145197,
                -0.0186145197,
                0.0,
                0.0186145197,
                0.186145197,
                1.86145197,
            ],
        ),
    ];
    for (spec, expected) in &cases {
        let act = Activation::build(spec, "l", 7).unwrap();
        assert_eq!(act.name(), *spec);
        assert!(act.params().is_empty(), "{spec} has no parameters");
        assert_close(&probe(spec), expected, spec);
    }
}

#[test]
fn norms_work_per_row_on_the_last_axis() {
    // Rows [1, 2, 3, 6] (mean 3, variance 14/4) and [-4, 0, 0, 0] (mean -1, variance 3).
    let x = [1.0, 2.0, 3.0, 6.0, -4.0, 0.0, 0.0, 0.0];
    let run2 = |spec: &str| run(&Activation::build(spec, "l", 4).unwrap(), &[2, 4], &x);
    let (s1, s2) = (3.5f64.sqrt(), 3.0f64.sqrt());
    let eps = 1e-8;
    assert_close(
        &run2("norm:mean"),
        &[-2.0, -1.0, 0.0, 3.0, -3.0, 1.0, 1.0, 1.0],
        "norm:mean",
    );
    assert_close(
        &run2("norm:max"),
        &[1.0 / 6.0, 2.0 / 6.0, 0.5, 1.0, -1.0, 0.0, 0.0, 0.0],
        "norm:max",
    );
    let std: Vec<f64> = [1.0, 2.0, 3.0, 6.0]
        .iter()
        .map(|v| v / (s1 + eps))
        .chain([-4.0, 0.0, 0.0, 0.0].iter().map(|v| v / (s2 + eps)))
        .collect();
    assert_close(&run2("norm:std"), &std, "norm:std");
    let z: Vec<f64> = [-2.0, -1.0, 0.0, 3.0]
        .iter()
        .map(|v| v / (s1 + eps))
        .chain([-3.0, 1.0, 1.0, 1.0].iter().map(|v| v / (s2 + eps)))
        .collect();
    assert_close(&run2("norm:z"), &z, "norm:z");
    // Softmax per row as well.
    let e1: Vec<f64> = [1.0f64, 2.0, 3.0, 6.0].iter().map(|v| v.exp()).collect();
    let e2: Vec<f64> = [-4.0f64, 0.0, 0.0, 0.0].iter().map(|v| v.exp()).collect();
    let (t1, t2): (f64, f64) = (e1.iter().sum(), e2.iter().sum());
    let soft: Vec<f64> = e1
        .iter()
        .map(|v| v / t1)
        .chain(e2.iter().map(|v| v / t2))
        .collect();
    assert_close(&run2("softmax"), &soft, "softmax");
}

#[test]
fn constant_rows_stay_finite_under_norms() {
    // A constant row has std 0: values are finite (0 for norm:z) and so are the gradients.
    for spec in ["norm:std", "norm:z", "norm:max", "norm:mean"] {
        let act = Activation::build(spec, "l", 3).unwrap();
        let x = Expr::input("x", 2);
        let y = act.apply(&x);
        let cost = (&y * &Expr::constant(Tensor::vector(&[1.0, 2.0, -1.0]))).sum();
        let g = tape::grad(&cost, std::slice::from_ref(&x))
            .unwrap()
            .remove(0);
        let mut f = Function::compile(&[x], &[y, g]).unwrap();
        let zeros = Tensor::zeros(&[2, 3]);
        let out = f.call(&[&zeros]).unwrap();
        assert!(
            out.iter().all(|t| t.first_non_finite().is_none()),
            "{spec}: {out:?}"
        );
        assert!(out[0].data().iter().all(|&v| v == 0.0), "{spec}");
    }
    let z = Activation::build("norm:z", "l", 3).unwrap();
    assert_eq!(run(&z, &[1, 3], &[2.5, 2.5, 2.5]), vec![0.0; 3]);
}

#[test]
fn higher_rank_inputs_act_on_the_last_axis() {
    let x: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 3.0).collect();
    // Rank 3 (2, 2, 3) gives the same values as the rows of the (4, 3) matrix.
    for spec in [
        "softmax",
        "norm:z",
        "norm:max",
        "prelu",
        "maxout:3",
        "lgrelu+norm:mean",
    ] {
        let act = Activation::build(spec, "l", 3).unwrap();
        let a = run(&act, &[2, 2, 3], &x);
        let b = run(&act, &[4, 3], &x);
        assert_eq!(a, b, "{spec}");
        assert_eq!(a.len(), 12);
    }
}

#[test]
fn aliases_and_case() {
    let same = [
        ("identity", "linear"),
        ("logistic", "sigmoid"),
        ("rect:max", "relu"),
        ("leaky-relu", "prelu"),
        ("leaky-gain-relu", "lgrelu"),
        ("PReLU", "prelu"),
        ("LGReLU", "lgrelu"),
        ("Leaky-ReLU", "prelu"),
        ("MaxOut:3", "maxout:3"),
    ];
    for (a, b) in same {
        assert_eq!(probe(a), probe(b), "{a} vs {b}");
    }
    // Parametric names display lower-case.
    assert_eq!(Activation::build("PReLU", "l", 7).unwrap().name(), "prelu");
    assert_eq!(
        Activation::build("MAXOUT:3", "l", 7).unwrap().name(),
        "maxout:3"
    );
    // Plain names are exact; whitespace around a stage is ignored.
    assert_eq!(
        Activation::build(" relu + tanh ", "l", 7).unwrap().name(),
        "tanh(relu)"
    );
}

#[test]
fn composition_applies_left_to_right_and_names_inside_out() {
    let act = Activation::build("relu+norm:z", "l", 7).unwrap();
    assert_eq!(act.name(), "norm:z(relu)");
    assert!(act.params().is_empty());
    // By hand: relu gives [0, 0, 0, 0, 0.1, 1, 10]; mean 11.1/7; std √(mean((r - mean)²)).
    let r = [0.0f64, 0.0, 0.0, 0.0, 0.1, 1.0, 10.0];
    let mean = r.iter().sum::<f64>() / 7.0;
    let std = (r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 7.0).sqrt();
    let expected: Vec<f64> = r.iter().map(|v| (v - mean) / (std + 1e-8)).collect();
    assert_close(&probe("relu+norm:z"), &expected, "relu+norm:z");
    // The same numbers written out: -0.459376332 for the zeros, 2.43759153 for 10.
    assert_close(
        &probe("relu+norm:z")[3..],
        &[-0.459376332, -0.430406654, -0.169679546, 2.43759153],
        "relu+norm:z",
    );

    let three = Activation::build("relu+norm:z+tanh", "l", 7).unwrap();
    assert_eq!(three.name(), "tanh(norm:z(relu))");
    let tanh_of: Vec<f64> = expected.iter().map(|v| v.tanh()).collect();
    assert_close(&probe("relu+norm:z+tanh"), &tanh_of, "three stages");

    // Order matters: norm:z then relu is a different function.
    let other = Activation::build("norm:z+relu", "l", 7).unwrap();
    assert_eq!(other.name(), "relu(norm:z)");
    assert_close(
        &probe("norm:z+relu"),
        &[0.0, 0.0, 0.0, 0.0, 0.0186145197, 0.186145197, 1.86145197],
        "norm:z+relu",
    );
}

fn names_and_shapes(act: &Activation) -> Vec<(String, Vec<usize>)> {
    let mut v: Vec<(String, Vec<usize>)> = act
        .params()
        .iter()
        .map(|p| (p.name().to_string(), p.shape().to_vec()))
        .collect();
    v.sort();
    v
}

#[test]
fn parametric_activations_own_named_parameters() {
    let prelu = Activation::build("prelu", "l", 5).unwrap();
    assert_eq!(names_and_shapes(&prelu), vec![("l.leak".into(), vec![5])]);
    assert!(prelu.params()[0].value().data().iter().all(|&v| v == 0.1));

    let lgrelu = Activation::build("lgrelu", "l", 5).unwrap();
    assert_eq!(
        names_and_shapes(&lgrelu),
        vec![("l.gain".into(), vec![5]), ("l.leak".into(), vec![5])]
    );
    let by_name =
        |a: &Activation, n: &str| a.params().iter().find(|p| p.name() == n).unwrap().value();
    assert!(by_name(&lgrelu, "l.gain").data().iter().all(|&v| v == 1.0));
    assert!(by_name(&lgrelu, "l.leak").data().iter().all(|&v| v == 0.1));

    let maxout = Activation::build("maxout:8", "l", 5).unwrap();
    assert_eq!(maxout.name(), "maxout:8");
    assert_eq!(
        names_and_shapes(&maxout),
        vec![
            ("l.intercept".into(), vec![5, 8]),
            ("l.slope".into(), vec![5, 8])
        ]
    );

    // The layer name prefixes every parameter; composition concatenates them in stage order.
    let both = Activation::build("prelu+maxout:2", "hid1", 3).unwrap();
    let names: Vec<&str> = both.params().iter().map(|p| p.name()).collect();
    assert_eq!(names, ["hid1.leak", "hid1.slope", "hid1.intercept"]);
    assert_eq!(both.name(), "maxout:2(prelu)");
}

#[test]
fn parametric_values_at_init_and_after_setting_parameters() {
    // prelu and lgrelu start as relu(x) + 0.1·min(0, x).
    let leaky = [-1.0, -0.1, -0.01, 0.0, 0.1, 1.0, 10.0];
    assert_close(&probe("prelu"), &leaky, "prelu");
    assert_close(&probe("lgrelu"), &leaky, "lgrelu");

    let act = Activation::build("lgrelu", "l", 7).unwrap();
    act.params()[0]
        .set(Tensor::vector(&[2.0, 2.0, 2.0, 2.0, 2.0, 3.0, 0.5]))
        .unwrap(); // gain
    act.params()[1]
        .set(Tensor::vector(&[0.3, 0.0, 1.0, 0.3, 0.3, 0.3, 0.3]))
        .unwrap(); // leak
    assert_close(
        &run(&act, &[1, 7], &PROBE),
        &[-3.0, 0.0, -0.1, 0.0, 0.2, 3.0, 5.0],
        "lgrelu with set parameters",
    );

    let act = Activation::build("prelu", "l", 7).unwrap();
    act.params()[0].set(Tensor::full(&[7], -0.5)).unwrap();
    assert_close(
        &run(&act, &[1, 7], &PROBE),
        &[5.0, 0.5, 0.05, 0.0, 0.1, 1.0, 10.0],
        "prelu with a negative leak",
    );
}

#[test]
fn maxout_pieces_start_distinct() {
    // maxout:3 starts with slopes [1, 0, -1] and intercepts [-1/2, 0, -1/2] (tangents of x²/2),
    // so on the probe it is max(x - 1/2, 0, -x - 1/2).
    let m3 = Activation::build("maxout:3", "l", 7).unwrap();
    let slope = m3.params().iter().find(|p| p.name() == "l.slope").unwrap();
    let intercept = m3
        .params()
        .iter()
        .find(|p| p.name() == "l.intercept")
        .unwrap();
    assert_eq!(&slope.value().data()[..3], &[1.0, 0.0, -1.0]);
    assert_eq!(&intercept.value().data()[..3], &[-0.5, 0.0, -0.5]);
    assert_close(
        &probe("maxout:3"),
        &[9.5, 0.5, 0.0, 0.0, 0.0, 0.5, 9.5],
        "maxout:3",
    );
    // maxout:5: slopes [1, .5, 0, -.5, -1], intercepts [-.5, -.125, 0, -.125, -.5]; at ±0.6 the
    // piece of slope ±0.5 wins (0.3 - 0.125), so middle pieces are live from the start.
    let m5 = Activation::build("maxout:5", "l", 3).unwrap();
    assert_close(
        &run(&m5, &[1, 3], &[0.6, -0.6, 2.0]),
        &[0.175, 0.175, 1.5],
        "maxout:5",
    );
    // One piece is the identity.
    assert_close(
        &probe("maxout:1"),
        &[-10.0, -1.0, -0.1, 0.0, 0.1, 1.0, 10.0],
        "maxout:1",
    );
    // After setting the parameters: unit j uses its own row of pieces.
    let m2 = Activation::build("maxout:2", "l", 2).unwrap();
    m2.params()[0]
        .set(Tensor::new(&[2, 2], vec![2.0, -1.0, 0.5, 3.0]).unwrap())
        .unwrap(); // slope
    m2.params()[1]
        .set(Tensor::new(&[2, 2], vec![0.0, 1.0, -1.0, 0.0]).unwrap())
        .unwrap(); // intercept
                   // Unit 0 at x=1: max(2, 0) = 2; unit 1 at x=-1: max(-1.5, -3) = -1.5.
    assert_close(
        &run(&m2, &[1, 2], &[1.0, -1.0]),
        &[2.0, -1.5],
        "maxout:2 set",
    );
}

fn config_problem(r: nets::Result<Activation>) -> String {
    match r {
        Err(Error::Config { what, problem }) => format!("{what}: {problem}"),
        Err(other) => panic!("expected a configuration error, got {other:?}"),
        Ok(a) => panic!("expected an error, built {}", a.name()),
    }
}

#[test]
fn unknown_names_are_errors_listing_every_valid_name() {
    let msg = config_problem(Activation::build("rleu", "hid1", 4));
    assert!(msg.contains("`rleu`") && msg.contains("hid1"), "{msg}");
    for name in NAMES {
        assert!(msg.contains(name), "{name} missing from: {msg}");
    }
    for name in [
        "linear",
        "identity",
        "logistic",
        "sigmoid",
        "tanh",
        "softmax",
        "softplus",
        "relu",
        "rect:max",
        "rect:min",
        "rect:minmax",
        "norm:mean",
        "norm:max",
        "norm:std",
        "norm:z",
        "prelu",
        "leaky-relu",
        "lgrelu",
        "leaky-gain-relu",
        "maxout:",
    ] {
        assert!(msg.contains(name), "{name} missing from: {msg}");
    }

    // Plain names are case-sensitive, with a hint.
    let msg = config_problem(Activation::build("ReLU", "l", 4));
    assert!(msg.contains("did you mean `relu`"), "{msg}");

    // A bad stage inside a composition is named.
    let msg = config_problem(Activation::build("relu+tahn", "l", 4));
    assert!(msg.contains("`tahn`") && msg.contains("relu+tahn"), "{msg}");

    for spec in ["", "relu+", "+relu", "relu++tanh"] {
        let msg = config_problem(Activation::build(spec, "l", 4));
        assert!(msg.contains("empty activation name"), "{spec:?}: {msg}");
    }
}

#[test]
fn maxout_needs_a_positive_integer_piece_count() {
    for spec in [
        "maxout",
        "maxout:",
        "maxout:0",
        "maxout:-2",
        "maxout:2.5",
        "maxout:two",
        "maxout: 3",
        "maxout:100000",
    ] {
        let msg = config_problem(Activation::build(spec, "l", 4));
        assert!(msg.contains("piece count"), "{spec}: {msg}");
    }
    // Not a maxout at all.
    let msg = config_problem(Activation::build("maxout8", "l", 4));
    assert!(msg.contains("unknown activation"), "{msg}");
}

#[test]
fn composing_a_parametric_activation_twice_is_an_error() {
    let msg = config_problem(Activation::build("prelu+lgrelu", "l", 4));
    assert!(msg.contains("l.leak"), "{msg}");
}

/// Values of magnitude in [0.2, 2] with mixed signs, away from 1 (the kink of rect:min), with
/// distinct magnitudes per row (ties would make norm:max's max a kink) and away from maxout's
/// breakpoints (0, ±1/3, ±2/3, ±1/2 for up to 4 pieces).
const POINT: [f32; 10] = [0.3, -1.7, 1.3, -0.45, 0.8, -0.25, 1.9, -1.2, 0.55, -0.75];
const WEIGHTS: [f32; 10] = [0.7, -1.1, 0.4, 1.6, -0.3, 0.9, -0.6, 1.2, -1.4, 0.5];

/// A scalar cost that depends on every output element differently (a plain sum would make
/// softmax's and norm:mean's gradients vanish identically).
fn weighted_cost(y: &Expr, shape: &[usize], weights: &[f32]) -> Expr {
    (y * &Expr::constant(Tensor::new(shape, weights.to_vec()).unwrap())).sum()
}

fn gradient_report(spec: &str, rows: usize, cols: usize, x: &[f32], w: &[f32]) -> check::Report {
    let act = Activation::build(spec, "l", cols).unwrap();
    let input = Expr::input("x", 2);
    let cost = weighted_cost(&act.apply(&input), &[rows, cols], w);
    let mut wrt = vec![input.clone()];
    wrt.extend(act.params().iter().map(|p| p.expr()));
    let value = Tensor::new(&[rows, cols], x.to_vec()).unwrap();
    check::gradient(&cost, &[(input, value)], &wrt, &check::Options::default()).unwrap()
}

#[test]
fn every_activation_has_the_right_gradient() {
    let mut specs: Vec<String> = NAMES
        .iter()
        .filter(|n| !n.starts_with("maxout"))
        .map(|n| n.to_string())
        .collect();
    specs.extend(
        [
            "maxout:1",
            "maxout:2",
            "maxout:3",
            "maxout:4",
            "relu+norm:z",
            "prelu+maxout:3+softmax",
        ]
        .map(String::from),
    );
    for spec in &specs {
        let report = gradient_report(spec, 2, 5, &POINT, &WEIGHTS);
        assert!(report.ok(), "{spec}: {report}");
        assert!(report.checked >= 10, "{spec}: {report}");
    }
}

#[test]
fn parametric_gradients_after_moving_the_parameters() {
    // Away from the initial constants, so gain, leak, slope and intercept all matter.
    let act = Activation::build("lgrelu", "l", 5).unwrap();
    act.params()[0]
        .set(Tensor::vector(&[1.5, 0.5, -0.7, 2.0, 1.0]))
        .unwrap();
    act.params()[1]
        .set(Tensor::vector(&[0.2, -0.3, 0.6, 0.05, 1.1]))
        .unwrap();
    let m = Activation::build("maxout:3", "m", 5).unwrap();
    m.params()[1]
        .set(Tensor::from_fn(&[5, 3], |i| {
            0.1 * (i[0] as f32) - 0.2 * (i[1] as f32)
        }))
        .unwrap();
    for act in [act, m] {
        let input = Expr::input("x", 2);
        let cost = weighted_cost(&act.apply(&input), &[2, 5], &WEIGHTS);
        let mut wrt = vec![input.clone()];
        wrt.extend(act.params().iter().map(|p| p.expr()));
        let value = Tensor::new(&[2, 5], POINT.to_vec()).unwrap();
        let report =
            check::gradient(&cost, &[(input, value)], &wrt, &check::Options::default()).unwrap();
        assert!(report.ok(), "{}: {report}", act.name());
    }
}

/// Rows of `cols` values with magnitudes in [0.2, 2] and random signs, plus cost weights.
fn point(rows: usize, cols: usize) -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
    let n = rows * cols;
    (off_zero(0.2..2.0, n), values(-1.5..1.5, n))
}

/// As [`point`], with each row's values spread apart (column j shifted by 0.7·j): a row whose
/// values nearly coincide has a near-zero deviation, where the normalisers' gradients blow up
/// and central differences cannot follow them.
fn spread_point(rows: usize, cols: usize) -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
    point(rows, cols).prop_map(move |(x, w)| {
        let spread = x
            .iter()
            .enumerate()
            .map(|(i, v)| v * 0.2 + (i % cols) as f32 * 0.7)
            .collect();
        (spread, w)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn leaky_relus_have_the_right_gradient((x, w) in point(3, 4)) {
        for spec in ["prelu", "lgrelu", "relu", "softplus+lgrelu"] {
            let report = gradient_report(spec, 3, 4, &x, &w);
            prop_assert!(report.ok(), "{}: {}", spec, report);
        }
    }

    #[test]
    fn row_normalisers_have_the_right_gradient((x, w) in spread_point(3, 4)) {
        for spec in ["softmax", "norm:z", "norm:std", "norm:mean", "tanh+norm:z"] {
            let report = gradient_report(spec, 3, 4, &x, &w);
            prop_assert!(report.ok(), "{}: {}", spec, report);
        }
    }
}
