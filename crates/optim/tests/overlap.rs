//! Updates overlapped with the backward pass (`Trainer::set_overlap`): the parameters, the rule's
//! state and the monitors after several steps are bit-identical to updating after the whole
//! step, on one and on two threads, and a step whose loss is not finite still updates nothing.

use optim::{Algorithm, LoopOptions, RuleOptions, Trainer};
use tape::testing::normal_from;
use tape::{Expr, Param, Rng, Tensor};

/// A classifier 48-272-256-10: the middle weights (69,632 values) are large enough for the rule
/// to split them across threads, and the products for the GEMM to split them too.
struct Setup {
    params: Vec<Param>,
    trainer: Trainer,
}

const SIZES: [usize; 4] = [48, 272, 256, 10];

fn setup(rule: &RuleOptions, overlap: bool) -> Setup {
    let mut rng = Rng::new(17);
    let x = Expr::input("x", 2);
    let y = Expr::labels("y");
    let mut h = x.clone();
    let mut params = Vec::new();
    for l in 0..3 {
        let (a, b) = (SIZES[l], SIZES[l + 1]);
        let w = Param::new(&format!("w{l}"), normal_from(&mut rng, &[a, b], 0.1));
        let bias = Param::new(&format!("b{l}"), normal_from(&mut rng, &[b], 0.1));
        h = h.matmul(&w.expr()) + bias.expr();
        if l < 2 {
            h = h.relu();
        }
        params.extend([w, bias]);
    }
    let loss = -h.log_softmax().pick(&y).mean();
    let monitors = vec![("acc".to_string(), h.sum() * 0.0 + 1.0)];
    let lp = LoopOptions {
        monitor_gradients: true,
        ..Default::default()
    };
    let mut trainer = Trainer::new(&loss, &params, &[x, y], &monitors, rule.clone(), lp).unwrap();
    assert!(!trainer.overlap(), "overlap is off by default");
    assert_eq!(trainer.set_overlap(overlap), overlap);
    Setup { params, trainer }
}

fn batches(n: usize) -> Vec<[Tensor; 2]> {
    let mut rng = Rng::new(3);
    (0..n)
        .map(|i| {
            let xs = normal_from(&mut rng, &[64, SIZES[0]], 1.0);
            let ys: Vec<f32> = (0..64).map(|r| ((r * 7 + i) % 10) as f32).collect();
            [xs, Tensor::vector(&ys)]
        })
        .collect()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

/// Runs `steps` steps with and without overlap and compares every bit.
fn check_same(rule: &RuleOptions, what: &str) {
    let data = batches(3);
    let mut runs = Vec::new();
    for overlap in [false, true] {
        let mut s = setup(rule, overlap);
        let losses: Vec<u32> = data
            .iter()
            .map(|[x, y]| s.trainer.step(&[x.view(), y.view()]).unwrap().to_bits())
            .collect();
        let params: Vec<Vec<u32>> = s.params.iter().map(|p| bits(&p.value())).collect();
        let state = rmp_serde::to_vec(s.trainer.rule_state()).unwrap();
        runs.push((losses, params, state, s.params[2].value()));
    }
    let (off, on) = (&runs[0], &runs[1]);
    assert_eq!(off.0, on.0, "{what}: losses");
    for (k, (a, b)) in off.1.iter().zip(&on.1).enumerate() {
        let differ = a.iter().zip(b).filter(|(x, y)| x != y).count();
        assert_eq!(
            differ, 0,
            "{what}: parameter {k} differs in {differ} values"
        );
    }
    assert_eq!(off.2, on.2, "{what}: rule state");
    // The steps did move the parameters (so equal bits mean equal updates).
    let start = setup(rule, false).params[2].value();
    assert_ne!(bits(&start), bits(&off.3), "{what}: w1 never moved");
}

fn rules() -> Vec<(String, RuleOptions)> {
    let mut out = Vec::new();
    for clip in [0.0, 0.5] {
        let mut adam = RuleOptions::new(Algorithm::Adam);
        adam.learning_rate = 1e-3;
        adam.max_gradient_norm = clip;
        out.push((format!("adam, max_gradient_norm {clip}"), adam));
        let mut nesterov = RuleOptions::new(Algorithm::Sgd);
        nesterov.learning_rate = 0.05;
        nesterov.momentum = 0.9;
        nesterov.nesterov = true;
        nesterov.max_gradient_norm = clip;
        out.push((format!("sgd+nesterov, max_gradient_norm {clip}"), nesterov));
    }
    let mut esgd = RuleOptions::new(Algorithm::Esgd);
    esgd.learning_rate = 1e-3;
    out.push(("esgd".into(), esgd));
    out
}

#[test]
fn overlapped_updates_are_bit_identical_on_one_and_two_threads() {
    let before = tape::kernels::num_threads();
    for threads in [1, 2] {
        tape::kernels::set_num_threads(threads);
        for (name, rule) in rules() {
            check_same(&rule, &format!("{threads} thread(s), {name}"));
        }
    }
    tape::kernels::set_num_threads(before);
}

#[test]
fn a_step_whose_loss_is_not_finite_updates_nothing_with_overlap() {
    // log of a negative sum: NaN loss, finite gradients.
    let x = Expr::input("x", 2);
    let w = Param::new("w", Tensor::new(&[2, 1], vec![1.0, 1.0]).unwrap());
    let loss = x.matmul(&w.expr()).sum().log();
    let rule = RuleOptions::new(Algorithm::Adam);
    let mut t = Trainer::new(
        &loss,
        std::slice::from_ref(&w),
        &[x],
        &[],
        rule,
        LoopOptions::default(),
    )
    .unwrap();
    assert!(t.set_overlap(true));
    let xs = Tensor::new(&[1, 2], vec![-1.0, -2.0]).unwrap();
    let l = t.step(&[xs.view()]).unwrap();
    assert!(l.is_nan(), "{l}");
    assert_eq!(w.value().data(), &[1.0, 1.0]);
    assert_eq!(t.rule_state().step, 0, "the step was not counted");
}

#[test]
fn a_trained_tensor_that_is_also_carried_cannot_overlap() {
    let x = Expr::input("x", 2);
    let w = Param::new("w", Tensor::new(&[1, 2], vec![1.0, 1.0]).unwrap());
    let loss = (&x * &w.expr()).sum();
    let carried = [(w.clone(), &w.expr() * 0.5)];
    let rule = RuleOptions::new(Algorithm::Sgd);
    let mut t = Trainer::with_carried(
        &loss,
        std::slice::from_ref(&w),
        &[x],
        &[],
        &carried,
        rule,
        LoopOptions::default(),
    )
    .unwrap();
    assert!(!t.overlap());
    assert!(!t.set_overlap(true));
    let xs = Tensor::new(&[1, 2], vec![1.0, 2.0]).unwrap();
    assert!(
        t.step(&[xs.view()]).is_ok(),
        "it still trains, sequentially"
    );
}
