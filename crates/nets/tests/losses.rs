//! Tests of `nets::losses`: name parsing, each loss's value against the formula computed here in
//! f64, weighted forms, validation errors, finite-difference gradients, a property test, and a
//! tiny training run per loss.

use nets::losses::{GllForm, HingeForm, Loss, LossKind};
use nets::Error;
use proptest::prelude::*;
use tape::testing::{self, close, values};
use tape::{check, grad, Expr, Function, Param, Tensor};

const ALL_NAMES: [&str; 15] = [
    "mse",
    "meansquarederror",
    "mae",
    "meanabsoluteerror",
    "xe",
    "crossentropy",
    "cross-entropy",
    "hinge",
    "kl",
    "kld",
    "kullbackleiblerdivergence",
    "gll",
    "gaussianloglikelihood",
    "mmd",
    "maximummeandiscrepancy",
];

fn mat(rows: usize, cols: usize, data: &[f32]) -> Tensor {
    Tensor::new(&[rows, cols], data.to_vec()).unwrap()
}

/// Compiles `cost` over the given inputs and returns its value at their tensors.
fn eval(cost: &Expr, inputs: &[(Expr, Tensor)]) -> f32 {
    let exprs: Vec<Expr> = inputs.iter().map(|(e, _)| e.clone()).collect();
    let mut f = Function::compile(&exprs, std::slice::from_ref(cost)).unwrap();
    let args: Vec<&Tensor> = inputs.iter().map(|(_, t)| t).collect();
    f.call(&args).unwrap()[0].item().unwrap()
}

/// This file's usual tolerance: 1e-5 relative and absolute against the f64 formula.
#[track_caller]
fn assert_close(a: f32, b: f64) {
    testing::assert_close(&[a], &[b], 1e-5, 1e-5, "loss");
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.data().iter().map(|&v| v as f64).collect()
}

fn weighted(kind: LossKind) -> Loss {
    Loss {
        weighted: true,
        ..Loss::new(kind)
    }
}

/// The 2×3 float fixtures: output, target, (2,3) weights, (2,) weights.
fn float_case() -> (Tensor, Tensor, Tensor, Tensor) {
    (
        mat(2, 3, &[0.5, -1.0, 2.0, 0.25, 0.0, -0.75]),
        mat(2, 3, &[1.0, -0.5, 1.0, 0.0, 0.5, 0.25]),
        mat(2, 3, &[1.0, 2.0, 0.5, 0.0, 1.5, 3.0]),
        Tensor::vector(&[0.25, 2.0]),
    )
}

/// Evaluates a float-target loss at `(y, t)` with optional weights.
fn float_loss(loss: &Loss, y: &Tensor, t: &Tensor, w: Option<&Tensor>) -> f32 {
    let (ye, te) = (Expr::input("y", 2), Expr::input("t", 2));
    let mut inputs = vec![(ye.clone(), y.clone()), (te.clone(), t.clone())];
    let we = w.map(|w| {
        let we = Expr::input("w", w.rank());
        inputs.push((we.clone(), w.clone()));
        we
    });
    let cost = loss.build(&ye, &te, we.as_ref(), None).unwrap();
    eval(&cost, &inputs)
}

/// Evaluates a label-target loss at `(y, labels)` with optional `(batch,)` weights.
fn label_loss(loss: &Loss, y: &Tensor, labels: &[f32], w: Option<&[f32]>) -> f32 {
    let (ye, le) = (Expr::input("y", 2), Expr::labels("labels"));
    let mut inputs = vec![
        (ye.clone(), y.clone()),
        (le.clone(), Tensor::vector(labels)),
    ];
    let we = w.map(|w| {
        let we = Expr::input("w", 1);
        inputs.push((we.clone(), Tensor::vector(w)));
        we
    });
    let cost = loss.build(&ye, &le, we.as_ref(), None).unwrap();
    eval(&cost, &inputs)
}

/// Σ w·e / Σ w in f64, with `w` either shaped like `e` or one per row of `cols`.
fn weighted_mean(e: &[f64], w: &[f64], cols: usize) -> f64 {
    let wf = |i: usize| {
        if w.len() == e.len() {
            w[i]
        } else {
            w[i / cols]
        }
    };
    let num: f64 = e.iter().enumerate().map(|(i, v)| wf(i) * v).sum();
    let den: f64 = (0..e.len()).map(wf).sum();
    num / den
}

fn mean(e: &[f64]) -> f64 {
    e.iter().sum::<f64>() / e.len() as f64
}

// ---------------------------------------------------------------------------------------------
// Names and options

#[test]
fn every_alias_parses_in_any_case() {
    let expected = [
        LossKind::Mse,
        LossKind::Mse,
        LossKind::Mae,
        LossKind::Mae,
        LossKind::CrossEntropy,
        LossKind::CrossEntropy,
        LossKind::CrossEntropy,
        LossKind::Hinge,
        LossKind::Kl,
        LossKind::Kl,
        LossKind::Kl,
        LossKind::Gll,
        LossKind::Gll,
        LossKind::Mmd,
        LossKind::Mmd,
    ];
    for (name, kind) in ALL_NAMES.iter().zip(expected) {
        assert_eq!(name.parse::<LossKind>().unwrap(), kind, "{name}");
        assert_eq!(name.to_uppercase().parse::<LossKind>().unwrap(), kind);
    }
    assert_eq!(
        "CrossEntropy".parse::<LossKind>().unwrap(),
        LossKind::CrossEntropy
    );
    assert_eq!("KLD".parse::<LossKind>().unwrap(), LossKind::Kl);
    for kind in LossKind::ALL {
        assert_eq!(kind.name().parse::<LossKind>().unwrap(), kind);
        assert_eq!(kind.to_string(), kind.name());
    }
}

#[test]
fn an_unknown_name_is_a_config_error_listing_the_valid_names() {
    let err = "msee".parse::<LossKind>().unwrap_err();
    let Error::Config { what, problem } = &err else {
        panic!("expected a config error, got {err:?}");
    };
    assert!(what.contains("msee"), "{what}");
    for name in ALL_NAMES {
        assert!(problem.contains(name), "{name} missing from {problem}");
    }
    assert!("".parse::<LossKind>().is_err());
    assert!("cross_entropy".parse::<LossKind>().is_err());
}

#[test]
fn defaults_and_label_kinds() {
    let l = Loss::new(LossKind::Hinge);
    assert_eq!(
        (l.weight, l.weighted, l.margin, l.covar_eps, l.bandwidth),
        (1.0, false, 1.0, 1e-3, 1.0)
    );
    assert_eq!((l.hinge, l.gll), (HingeForm::BestOther, GllForm::Corrected));
    assert_eq!(GllForm::torch(), GllForm::Torch { eps: 1e-6 });
    for kind in LossKind::ALL {
        let labels = matches!(kind, LossKind::CrossEntropy | LossKind::Hinge);
        assert_eq!(Loss::new(kind).takes_labels(), labels, "{kind}");
    }
}

// ---------------------------------------------------------------------------------------------
// Values

#[test]
fn mse_and_mae_values() {
    let (y, t, w2, w1) = float_case();
    let (yd, td) = (f64s(&y), f64s(&t));
    let sq: Vec<f64> = yd.iter().zip(&td).map(|(a, b)| (a - b).powi(2)).collect();
    let ab: Vec<f64> = yd.iter().zip(&td).map(|(a, b)| (a - b).abs()).collect();

    assert_close(
        float_loss(&Loss::new(LossKind::Mse), &y, &t, None),
        mean(&sq),
    );
    assert_close(
        float_loss(&Loss::new(LossKind::Mae), &y, &t, None),
        mean(&ab),
    );
    for w in [&w2, &w1] {
        let wd = f64s(w);
        assert_close(
            float_loss(&weighted(LossKind::Mse), &y, &t, Some(w)),
            weighted_mean(&sq, &wd, 3),
        );
        assert_close(
            float_loss(&weighted(LossKind::Mae), &y, &t, Some(w)),
            weighted_mean(&ab, &wd, 3),
        );
    }
    // Constant weights give the unweighted value.
    let ones = Tensor::ones(&[2, 3]);
    assert_close(
        float_loss(&weighted(LossKind::Mse), &y, &t, Some(&ones)),
        mean(&sq),
    );
}

#[test]
fn cross_entropy_value_clips_tiny_probabilities() {
    // Row 2's true-class probability is below the 1e-8 clip, so its term is −log(1e-8).
    let y = mat(3, 3, &[0.2, 0.7, 0.1, 0.5, 0.25, 0.25, 1.0, 0.0, 0.0]);
    let labels = [1.0, 0.0, 2.0];
    let nll = [-(0.7f64).ln(), -(0.5f64).ln(), -(1e-8f64).ln()];
    let xe = Loss::new(LossKind::CrossEntropy);
    assert_close(label_loss(&xe, &y, &labels, None), mean(&nll));
    let w = [2.0, 0.5, 1.0];
    let expected = weighted_mean(&nll, &[2.0, 0.5, 1.0], 1);
    assert_close(
        label_loss(&weighted(LossKind::CrossEntropy), &y, &labels, Some(&w)),
        expected,
    );
}

#[test]
fn cross_entropy_from_logits_matches_cross_entropy_of_softmax() {
    let logits = mat(2, 3, &[1.0, 2.0, -1.0, 0.5, -0.5, 3.0]);
    let labels = [0.0, 2.0];
    let x = f64s(&logits);
    let nll: Vec<f64> = (0..2)
        .map(|i| {
            let row = &x[i * 3..i * 3 + 3];
            let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
            lse - row[labels[i] as usize]
        })
        .collect();
    let (ze, le) = (Expr::input("z", 2), Expr::labels("labels"));
    let inputs = vec![
        (ze.clone(), logits.clone()),
        (le.clone(), Tensor::vector(&labels)),
    ];
    let from_logits = Loss::cross_entropy_from_logits(&ze, &le, None).unwrap();
    assert_close(eval(&from_logits, &inputs), mean(&nll));
    let from_probs = Loss::new(LossKind::CrossEntropy)
        .build(&ze.softmax(), &le, None, None)
        .unwrap();
    assert_close(eval(&from_probs, &inputs), mean(&nll));

    let we = Expr::input("w", 1);
    let mut winputs = inputs.clone();
    winputs.push((we.clone(), Tensor::vector(&[3.0, 1.0])));
    let wl = Loss::cross_entropy_from_logits(&ze, &le, Some(&we)).unwrap();
    assert_close(eval(&wl, &winputs), weighted_mean(&nll, &[3.0, 1.0], 1));
}

/// Multiclass hinge with a margin, in f64.
fn hinge_ref(y: &[f64], labels: &[f32], cols: usize, margin: f64) -> Vec<f64> {
    labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let row = &y[i * cols..(i + 1) * cols];
            let truth = row[l as usize];
            let other = (0..cols)
                .filter(|&k| k != l as usize)
                .map(|k| row[k])
                .fold(f64::NEG_INFINITY, f64::max);
            (margin + other - truth).max(0.0)
        })
        .collect()
}

#[test]
fn hinge_values_with_and_without_margin() {
    // Row 0: correct by 1.5 (0 with margin 1); row 1: correct by 0.25 (0.75 with margin 1);
    // row 2: wrong by 0.5.
    let y = mat(3, 3, &[2.0, 0.5, -1.0, 0.0, 1.0, 1.25, 0.3, 0.8, -0.2]);
    let labels = [0.0, 2.0, 0.0];
    let yd = f64s(&y);
    for margin in [0.0, 1.0] {
        let loss = Loss {
            margin,
            ..Loss::new(LossKind::Hinge)
        };
        let errs = hinge_ref(&yd, &labels, 3, margin as f64);
        assert_close(label_loss(&loss, &y, &labels, None), mean(&errs));
        let w = [1.0, 2.0, 0.5];
        let wl = Loss {
            weighted: true,
            ..loss.clone()
        };
        assert_close(
            label_loss(&wl, &y, &labels, Some(&w)),
            weighted_mean(&errs, &[1.0, 2.0, 0.5], 1),
        );
    }
    // Margin 0 is theanets' hinge: 0.5 / 3 here.
    let theanets = Loss {
        margin: 0.0,
        ..Loss::new(LossKind::Hinge)
    };
    assert_close(label_loss(&theanets, &y, &labels, None), 0.5 / 3.0);
}

/// PyTorch's `multi_margin_loss` (p = 1) per sample, in f64: Σ_{j≠y} max(0, m − x_y + x_j) / C.
fn multi_margin_ref(x: &[f64], labels: &[f32], cols: usize, margin: f64) -> Vec<f64> {
    labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let row = &x[i * cols..(i + 1) * cols];
            let y = l as usize;
            let sum: f64 = (0..cols)
                .filter(|&j| j != y)
                .map(|j| (margin - row[y] + row[j]).max(0.0))
                .sum();
            sum / cols as f64
        })
        .collect()
}

fn multi_margin(margin: f32, weighted: bool) -> Loss {
    Loss {
        margin,
        weighted,
        hinge: HingeForm::MultiMargin,
        ..Loss::new(LossKind::Hinge)
    }
}

#[test]
fn multi_margin_hinge_follows_pytorch() {
    let y = mat(3, 3, &[2.0, 0.5, -1.0, 0.0, 1.0, 1.25, 0.3, 0.8, -0.2]);
    let labels = [0.0, 2.0, 0.0];
    // By hand, margin 1: row 0: (max(0, 1−2+0.5) + max(0, 1−2−1)) / 3 = 0; row 1:
    // (max(0, 1−1.25+0) + max(0, 1−1.25+1)) / 3 = (0 + 0.75) / 3 = 0.25; row 2:
    // (max(0, 1−0.3+0.8) + max(0, 1−0.3−0.2)) / 3 = (1.5 + 0.5) / 3 = 2/3. Mean: 0.30555…
    // (from PyTorch's documented formula; torch itself is not available here).
    assert_close(
        label_loss(&multi_margin(1.0, false), &y, &labels, None),
        (0.0 + 0.25 + 2.0 / 3.0) / 3.0,
    );
    let yd = f64s(&y);
    for margin in [0.0, 0.5, 2.0] {
        let errs = multi_margin_ref(&yd, &labels, 3, margin as f64);
        assert_close(
            label_loss(&multi_margin(margin, false), &y, &labels, None),
            mean(&errs),
        );
        let w = [1.0, 2.0, 0.5];
        assert_close(
            label_loss(&multi_margin(margin, true), &y, &labels, Some(&w)),
            weighted_mean(&errs, &[1.0, 2.0, 0.5], 1),
        );
    }
    // It differs from the best-other form when several classes violate the margin.
    let best_other = label_loss(&Loss::new(LossKind::Hinge), &y, &labels, None);
    assert!((best_other as f64 - 0.30555).abs() > 0.1, "{best_other}");
}

#[test]
fn hinge_reaches_zero_on_separated_scores_in_both_forms() {
    // Every true score beats every other by more than the margin 1.
    let y = mat(3, 3, &[3.0, 1.0, -1.0, 0.0, 0.5, 2.0, -2.0, 1.5, 0.4]);
    let labels = [0.0, 2.0, 1.0];
    for form in [HingeForm::BestOther, HingeForm::MultiMargin] {
        let loss = Loss {
            hinge: form,
            ..Loss::new(LossKind::Hinge)
        };
        assert_eq!(label_loss(&loss, &y, &labels, None), 0.0, "{form:?}");
    }
    // Probabilities can never be 1 apart with margin 1 unless they are exactly one-hot: the
    // reason a softmax classifier hands the hinge its logits.
    let p = mat(1, 2, &[0.99, 0.01]);
    assert!(label_loss(&Loss::new(LossKind::Hinge), &p, &[0.0], None) > 0.0);
}

#[test]
fn hinge_with_a_known_width_uses_the_same_formula() {
    // A static width takes the one_hot path, an unknown one the scatter path: same values.
    let y = mat(2, 4, &[0.1, 0.9, 0.3, -0.4, 1.2, 1.1, 0.0, 2.0]);
    let labels = [1.0, 3.0];
    let expected = mean(&hinge_ref(&f64s(&y), &labels, 4, 1.0));
    let ye = Expr::input_with_dims("y", &[None, Some(4)]);
    let le = Expr::labels("labels");
    let cost = Loss::new(LossKind::Hinge)
        .build(&ye, &le, None, None)
        .unwrap();
    let v = eval(&cost, &[(ye, y.clone()), (le, Tensor::vector(&labels))]);
    assert_close(v, expected);
    assert_close(
        label_loss(&Loss::new(LossKind::Hinge), &y, &labels, None),
        expected,
    );
}

/// Row KL divergences `Σ_k t log(t/y)` in f64 (no clipping needed for the fixtures).
fn kl_terms(y: &[f64], t: &[f64]) -> Vec<f64> {
    y.iter().zip(t).map(|(&y, &t)| t * (t / y).ln()).collect()
}

#[test]
fn kl_value_has_no_abs() {
    let y = mat(2, 2, &[0.5, 0.5, 0.9, 0.1]);
    let t = mat(2, 2, &[0.2, 0.8, 0.6, 0.4]);
    let terms = kl_terms(&f64s(&y), &f64s(&t));
    let rows = [terms[0] + terms[1], terms[2] + terms[3]];
    let ours = float_loss(&Loss::new(LossKind::Kl), &y, &t, None);
    assert_close(ours, mean(&rows));
    // theanets: the mean over elements of |t log(t/y)|, which differs here because some terms are
    // negative.
    let theanets = mean(&terms.iter().map(|v| v.abs()).collect::<Vec<_>>());
    assert!(
        (ours as f64 - theanets).abs() > 0.05,
        "{ours} vs {theanets}"
    );

    // (batch,) weights weigh row sums; (batch,k) weights weigh terms, rows by their mean weight.
    let w1 = Tensor::vector(&[3.0, 1.0]);
    assert_close(
        float_loss(&weighted(LossKind::Kl), &y, &t, Some(&w1)),
        weighted_mean(&rows, &[3.0, 1.0], 1),
    );
    let w2 = mat(2, 2, &[1.0, 3.0, 2.0, 2.0]);
    let num: f64 = terms.iter().zip(f64s(&w2)).map(|(a, b)| a * b).sum();
    let den = (1.0 + 3.0) / 2.0 + (2.0 + 2.0) / 2.0;
    assert_close(
        float_loss(&weighted(LossKind::Kl), &y, &t, Some(&w2)),
        num / den,
    );
    let ones = Tensor::ones(&[2, 2]);
    assert_close(
        float_loss(&weighted(LossKind::Kl), &y, &t, Some(&ones)),
        mean(&rows),
    );
}

/// Per-row diagonal-Gaussian negative log-likelihoods in f64.
fn gll_rows(mu: &[f64], covar: &[f64], t: &[f64], cols: usize, eps: f64) -> Vec<f64> {
    let terms: Vec<f64> = (0..mu.len())
        .map(|i| {
            let var = covar[i].abs() + eps;
            0.5 * ((2.0 * std::f64::consts::PI * var).ln() + (t[i] - mu[i]).powi(2) / var)
        })
        .collect();
    terms.chunks(cols).map(|r| r.iter().sum()).collect()
}

fn gll_value(loss: &Loss, mu: &Tensor, covar: &Tensor, t: &Tensor, w: Option<&Tensor>) -> f32 {
    let (me, ce, te) = (
        Expr::input("mu", 2),
        Expr::input("covar", 2),
        Expr::input("t", 2),
    );
    let mut inputs = vec![
        (me.clone(), mu.clone()),
        (ce.clone(), covar.clone()),
        (te.clone(), t.clone()),
    ];
    let we = w.map(|w| {
        let we = Expr::input("w", w.rank());
        inputs.push((we.clone(), w.clone()));
        we
    });
    let cost = loss.build(&me, &te, we.as_ref(), Some(&ce)).unwrap();
    eval(&cost, &inputs)
}

/// PyTorch's `gaussian_nll_loss(full=False)` per element, in f64: ½ [log v + (t−μ)²/v] with
/// v = max(|c|, eps).
fn torch_gll_terms(mu: &[f64], covar: &[f64], t: &[f64], eps: f64) -> Vec<f64> {
    (0..mu.len())
        .map(|i| {
            let v = covar[i].abs().max(eps);
            0.5 * (v.ln() + (t[i] - mu[i]).powi(2) / v)
        })
        .collect()
}

fn torch_gll(eps: f32, weighted: bool) -> Loss {
    Loss {
        gll: GllForm::Torch { eps },
        weighted,
        ..Loss::new(LossKind::Gll)
    }
}

#[test]
fn gll_torch_form_follows_pytorch() {
    // By hand, eps 1e-6: ½[log 1 + 0.25/1] = 0.125; ½[log 4 + 0] = 0.6931…; ½[log 0.5 + 1/0.5]
    // = 0.6534…; mean 0.49052… (PyTorch's documented formula; torch is not available here).
    let (mu, c, t) = (
        mat(1, 3, &[0.0, 1.0, -1.0]),
        mat(1, 3, &[1.0, 4.0, 0.5]),
        mat(1, 3, &[0.5, 1.0, 0.0]),
    );
    let by_hand = (0.125 + 0.5 * 4f64.ln() + 0.5 * (0.5f64.ln() + 2.0)) / 3.0;
    assert_close(
        gll_value(&torch_gll(1e-6, false), &mu, &c, &t, None),
        by_hand,
    );

    let mu = mat(2, 3, &[0.0, 1.0, -0.5, 2.0, 0.3, 0.0]);
    // A zero variance is floored at eps (with t = μ there, so the term is ½ log eps).
    let covar = mat(2, 3, &[1.0, 0.5, -2.0, 0.25, 0.0, 0.1]);
    let t = mat(2, 3, &[0.5, 1.0, 0.5, 1.0, 0.3, 0.05]);
    let (md, cd, td) = (f64s(&mu), f64s(&covar), f64s(&t));
    for eps in [1e-6, 0.3] {
        let terms = torch_gll_terms(&md, &cd, &td, eps as f64);
        assert_close(
            gll_value(&torch_gll(eps, false), &mu, &covar, &t, None),
            mean(&terms),
        );
        let w2 = mat(2, 3, &[1.0, 2.0, 0.5, 0.0, 1.5, 3.0]);
        assert_close(
            gll_value(&torch_gll(eps, true), &mu, &covar, &t, Some(&w2)),
            weighted_mean(&terms, &f64s(&w2), 3),
        );
        let w1 = Tensor::vector(&[0.25, 2.0]);
        assert_close(
            gll_value(&torch_gll(eps, true), &mu, &covar, &t, Some(&w1)),
            weighted_mean(&terms, &[0.25, 2.0], 3),
        );
    }
    // eps = 0 is allowed: nonzero variances are used as they are ...
    let nonzero = mat(2, 3, &[1.0, 0.5, -2.0, 0.25, 1e-7, 0.1]);
    let terms = torch_gll_terms(&md, &f64s(&nonzero), &td, 0.0);
    assert_close(
        gll_value(&torch_gll(0.0, false), &mu, &nonzero, &t, None),
        mean(&terms),
    );
    // ... and a zero one gives log 0.
    let v = gll_value(&torch_gll(0.0, false), &mu, &covar, &t, None);
    assert!(v == f32::NEG_INFINITY || v.is_nan(), "{v}");
    // The corrected form differs: it adds ½ log 2π per element and sums over a row.
    let corrected = gll_value(&Loss::new(LossKind::Gll), &mu, &nonzero, &t, None);
    assert!((corrected as f64 - mean(&terms)).abs() > 1.0);
}

#[test]
fn gll_torch_form_has_correct_gradients() {
    let mu = mat(2, 3, &[0.0, 1.0, -0.5, 2.0, 0.3, 0.0]);
    let covar = mat(2, 3, &[1.0, 0.5, -2.0, 0.75, 1.5, -0.6]);
    let t = mat(2, 3, &[0.5, 1.0, 0.5, 1.0, -0.2, 0.05]);
    let (me, ce, te) = (
        Expr::input("mu", 2),
        Expr::input("covar", 2),
        Expr::input("t", 2),
    );
    let inputs = vec![(me.clone(), mu), (ce.clone(), covar), (te.clone(), t)];
    let cost = torch_gll(1e-6, false)
        .build(&me, &te, None, Some(&ce))
        .unwrap();
    assert_gradient(&cost, &inputs, &[me, ce]);
}

#[test]
fn gll_is_the_diagonal_gaussian_negative_log_likelihood() {
    let mu = mat(2, 3, &[0.0, 1.0, -0.5, 2.0, 0.3, 0.0]);
    // A negative covariance counts by its absolute value.
    let covar = mat(2, 3, &[1.0, 0.5, -2.0, 0.25, 1.5, 0.1]);
    let t = mat(2, 3, &[0.5, 1.0, 0.5, 1.0, -0.2, 0.05]);
    let (md, cd, td) = (f64s(&mu), f64s(&covar), f64s(&t));
    let loss = Loss::new(LossKind::Gll);
    let rows = gll_rows(&md, &cd, &td, 3, 1e-3);
    assert_close(gll_value(&loss, &mu, &covar, &t, None), mean(&rows));

    // The closed form at t = μ, σ² = 1 − eps: ½ log 2π per element.
    let ones = Tensor::full(&[2, 3], 1.0 - 1e-3);
    let v = gll_value(&loss, &mu, &ones, &mu, None);
    assert_close(v, 3.0 * 0.5 * (2.0 * std::f64::consts::PI).ln());

    let w1 = Tensor::vector(&[1.0, 3.0]);
    assert_close(
        gll_value(&weighted(LossKind::Gll), &mu, &covar, &t, Some(&w1)),
        weighted_mean(&rows, &[1.0, 3.0], 1),
    );
    let eps = Loss {
        covar_eps: 0.5,
        ..Loss::new(LossKind::Gll)
    };
    assert_close(
        gll_value(&eps, &mu, &covar, &t, None),
        mean(&gll_rows(&md, &cd, &td, 3, 0.5)),
    );
}

/// Biased Gaussian-kernel MMD² between row sets, in f64.
fn mmd_ref(a: &[f64], b: &[f64], cols: usize, bw: f64) -> f64 {
    let k = |x: &[f64], y: &[f64]| {
        let mut s = 0.0;
        let (n, m) = (x.len() / cols, y.len() / cols);
        for i in 0..n {
            for j in 0..m {
                let d: f64 = (0..cols)
                    .map(|c| (x[i * cols + c] - y[j * cols + c]).powi(2))
                    .sum();
                s += (-d / bw).exp();
            }
        }
        s / (n * m) as f64
    };
    k(a, a) - 2.0 * k(a, b) + k(b, b)
}

#[test]
fn mmd_is_zero_for_identical_sets_and_positive_otherwise() {
    let (y, t, _, _) = float_case();
    let mmd = Loss::new(LossKind::Mmd);
    let same = float_loss(&mmd, &t, &t, None);
    assert!(same.abs() < 1e-5, "{same}");
    let v = float_loss(&mmd, &y, &t, None);
    let expected = mmd_ref(&f64s(&t), &f64s(&y), 3, 1.0);
    assert!(
        v > 0.0 && close(v, expected, 1e-4, 1e-4),
        "{v} vs {expected}"
    );
    // Rows in another order are the same set.
    let swapped = mat(2, 3, &[0.0, 0.5, 0.25, 1.0, -0.5, 1.0]);
    assert!(float_loss(&mmd, &swapped, &t, None).abs() < 1e-5);
    let wide = Loss {
        bandwidth: 4.0,
        ..mmd.clone()
    };
    let expected = mmd_ref(&f64s(&t), &f64s(&y), 3, 4.0);
    assert!(close(float_loss(&wide, &y, &t, None), expected, 1e-4, 1e-4));
    // Weights are accepted and ignored.
    let w = Tensor::full(&[2, 3], 7.0);
    assert!(close(
        float_loss(&weighted(LossKind::Mmd), &y, &t, Some(&w)),
        mmd_ref(&f64s(&t), &f64s(&y), 3, 1.0),
        1e-4,
        1e-4
    ));
}

#[test]
fn accuracy_counts_rows_whose_argmax_is_the_label() {
    let y = mat(
        4,
        3,
        &[0.1, 0.8, 0.1, 0.6, 0.3, 0.1, 0.2, 0.2, 0.6, 0.5, 0.4, 0.1],
    );
    let labels = [1.0, 0.0, 0.0, 2.0];
    let (ye, le, we) = (Expr::input("y", 2), Expr::labels("l"), Expr::input("w", 1));
    let inputs = vec![
        (ye.clone(), y.clone()),
        (le.clone(), Tensor::vector(&labels)),
    ];
    assert_close(eval(&Loss::accuracy(&ye, &le, None), &inputs), 0.5);
    let mut winputs = inputs.clone();
    winputs.push((we.clone(), Tensor::vector(&[1.0, 1.0, 2.0, 4.0])));
    assert_close(eval(&Loss::accuracy(&ye, &le, Some(&we)), &winputs), 0.25);
}

// ---------------------------------------------------------------------------------------------
// Validation

fn data_error(err: Error) -> String {
    match &err {
        Error::Data { .. } => err.to_string(),
        other => panic!("expected a data error, got {other:?}"),
    }
}

#[test]
fn incompatible_static_shapes_are_data_errors_naming_loss_and_shapes() {
    let y = Expr::input_with_dims("y", &[None, Some(3)]);
    let t = Expr::input_with_dims("t", &[None, Some(4)]);
    let msg = data_error(
        Loss::new(LossKind::Mse)
            .build(&y, &t, None, None)
            .unwrap_err(),
    );
    assert!(
        msg.contains("mse") && msg.contains("[?, 3]") && msg.contains("[?, 4]"),
        "{msg}"
    );

    // Rank mismatches, for every float kind.
    let t1 = Expr::input("t", 1);
    for kind in [LossKind::Mae, LossKind::Kl, LossKind::Mmd] {
        let msg = data_error(Loss::new(kind).build(&y, &t1, None, None).unwrap_err());
        assert!(msg.contains(kind.name()), "{msg}");
    }
    // Label kinds need one label per row.
    let labels = Expr::labels("l");
    let msg = data_error(
        Loss::new(LossKind::CrossEntropy)
            .build(&y, &t, None, None)
            .unwrap_err(),
    );
    assert!(msg.contains("xe") && msg.contains("[?, 4]"), "{msg}");
    let yk = Expr::input_with_dims("y", &[Some(5), Some(3)]);
    let l6 = Expr::input_with_dims("l", &[Some(6)]);
    assert!(Loss::new(LossKind::Hinge)
        .build(&yk, &l6, None, None)
        .is_err());
    assert!(Loss::cross_entropy_from_logits(&yk, &l6, None).is_err());
    // A rank-1 output cannot be a (batch, k) output.
    assert!(Loss::new(LossKind::Hinge)
        .build(&t1, &labels, None, None)
        .is_err());
    // Weights that fit nothing.
    let w = Expr::input_with_dims("w", &[None, Some(2)]);
    let msg = data_error(
        weighted(LossKind::Mse)
            .build(&y, &y, Some(&w), None)
            .unwrap_err(),
    );
    assert!(msg.contains("[?, 2]"), "{msg}");
    let w2 = Expr::input("w", 2);
    assert!(weighted(LossKind::CrossEntropy)
        .build(&y, &labels, Some(&w2), None)
        .is_err());
    // gll's covariance must be shaped like the mean.
    let c = Expr::input_with_dims("c", &[None, Some(2)]);
    assert!(Loss::new(LossKind::Gll)
        .build(&y, &y, None, Some(&c))
        .is_err());
}

#[test]
fn weights_must_match_the_weighted_flag_and_options_must_be_valid() {
    let (y, t, w) = (
        Expr::input("y", 2),
        Expr::input("t", 2),
        Expr::input("w", 2),
    );
    let is_config = |r: nets::Result<Expr>| matches!(r, Err(Error::Config { .. }));
    assert!(is_config(weighted(LossKind::Mse).build(&y, &t, None, None)));
    assert!(is_config(Loss::new(LossKind::Mse).build(
        &y,
        &t,
        Some(&w),
        None
    )));
    assert!(is_config(
        Loss::new(LossKind::Gll).build(&y, &t, None, None)
    ));
    let bad = [
        Loss {
            bandwidth: 0.0,
            ..Loss::new(LossKind::Mmd)
        },
        Loss {
            covar_eps: -1.0,
            ..Loss::new(LossKind::Gll)
        },
        Loss {
            margin: f32::NAN,
            ..Loss::new(LossKind::Hinge)
        },
        Loss {
            margin: f32::INFINITY,
            ..multi_margin(1.0, false)
        },
        torch_gll(-1e-6, false),
        torch_gll(f32::NAN, false),
    ];
    let labels = Expr::labels("l");
    for loss in bad {
        let target = if loss.takes_labels() { &labels } else { &t };
        assert!(
            is_config(loss.build(&y, target, None, Some(&y))),
            "{loss:?}"
        );
    }
}

#[test]
fn graph_errors_in_the_operands_come_back_as_tape_errors() {
    let a = Expr::input_with_dims("a", &[Some(2), Some(3)]);
    let b = Expr::input_with_dims("b", &[Some(4), Some(5)]);
    let broken = a.matmul(&b);
    let r = Loss::new(LossKind::Mse).build(&broken, &a, None, None);
    assert!(matches!(r, Err(Error::Tape(_))), "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// Gradients

fn assert_gradient(cost: &Expr, inputs: &[(Expr, Tensor)], wrt: &[Expr]) {
    let report = check::gradient(cost, inputs, wrt, &check::Options::default()).unwrap();
    assert!(report.ok(), "{report}");
    assert!(report.checked > 0);
}

#[test]
fn float_losses_have_correct_gradients() {
    let (y, t, w2, w1) = float_case();
    // Probabilities away from the clip bounds for kl.
    let py = mat(2, 3, &[0.2, 0.3, 0.5, 0.6, 0.25, 0.15]);
    let pt = mat(2, 3, &[0.3, 0.3, 0.4, 0.2, 0.5, 0.3]);
    for kind in [LossKind::Mse, LossKind::Mae, LossKind::Kl, LossKind::Mmd] {
        let (yv, tv) = if kind == LossKind::Kl {
            (&py, &pt)
        } else {
            (&y, &t)
        };
        for w in [None, Some(&w2), Some(&w1)] {
            let loss = Loss {
                weighted: w.is_some(),
                ..Loss::new(kind)
            };
            let (ye, te) = (Expr::input("y", 2), Expr::input("t", 2));
            let mut inputs = vec![(ye.clone(), yv.clone()), (te.clone(), tv.clone())];
            let we = w.map(|w| {
                let we = Expr::input("w", w.rank());
                inputs.push((we.clone(), w.clone()));
                we
            });
            let cost = loss.build(&ye, &te, we.as_ref(), None).unwrap();
            assert_gradient(&cost, &inputs, &[ye]);
        }
    }
}

#[test]
fn label_losses_have_correct_gradients() {
    // Probabilities away from the clip; hinge scores away from kinks and ties.
    let y = mat(3, 3, &[0.2, 0.7, 0.1, 0.5, 0.3, 0.2, 0.4, 0.45, 0.15]);
    let labels = Tensor::vector(&[1.0, 2.0, 0.0]);
    let w = Tensor::vector(&[1.0, 2.0, 0.5]);
    let kinds = [
        (LossKind::CrossEntropy, HingeForm::BestOther),
        (LossKind::Hinge, HingeForm::BestOther),
        (LossKind::Hinge, HingeForm::MultiMargin),
    ];
    for (kind, hinge) in kinds {
        for margin in [0.0, 1.0] {
            for weighted in [false, true] {
                let loss = Loss {
                    margin,
                    weighted,
                    hinge,
                    ..Loss::new(kind)
                };
                let (ye, le, we) = (Expr::input("y", 2), Expr::labels("l"), Expr::input("w", 1));
                let mut inputs = vec![(ye.clone(), y.clone()), (le.clone(), labels.clone())];
                if weighted {
                    inputs.push((we.clone(), w.clone()));
                }
                let cost = loss.build(&ye, &le, weighted.then_some(&we), None).unwrap();
                assert_gradient(&cost, &inputs, &[ye]);
            }
        }
    }
    let (ze, le) = (Expr::input("z", 2), Expr::labels("l"));
    let cost = Loss::cross_entropy_from_logits(&ze, &le, None).unwrap();
    assert_gradient(
        &cost,
        &[
            (
                ze.clone(),
                mat(3, 3, &[1.0, -2.0, 0.5, 0.0, 3.0, 1.0, 2.0, 2.5, -1.0]),
            ),
            (le, labels),
        ],
        &[ze],
    );
}

#[test]
fn hinge_gradient_pushes_the_truth_up_and_the_best_other_down() {
    // With margin 1 both rows are active: each moves its truth and its best other class by ±1/2.
    let y = mat(2, 3, &[2.0, 1.5, -1.0, 0.0, 1.0, 0.5]);
    let labels = Tensor::vector(&[0.0, 2.0]);
    let (ye, le) = (Expr::input("y", 2), Expr::labels("l"));
    let cost = Loss::new(LossKind::Hinge)
        .build(&ye, &le, None, None)
        .unwrap();
    let g = grad(&cost, std::slice::from_ref(&ye)).unwrap().remove(0);
    let mut f = Function::compile(&[ye, le], &[g]).unwrap();
    let out = f.call(&[&y, &labels]).unwrap();
    assert_eq!(out[0].data(), &[-0.5, 0.5, 0.0, 0.0, 0.5, -0.5]);
}

#[test]
fn gll_has_correct_gradients_for_mean_and_covariance() {
    let mu = mat(2, 3, &[0.0, 1.0, -0.5, 2.0, 0.3, 0.0]);
    let covar = mat(2, 3, &[1.0, 0.5, -2.0, 0.75, 1.5, -0.6]);
    let t = mat(2, 3, &[0.5, 1.0, 0.5, 1.0, -0.2, 0.05]);
    for w in [None, Some(mat(2, 3, &[1.0, 2.0, 0.5, 0.3, 1.0, 1.0]))] {
        let loss = Loss {
            weighted: w.is_some(),
            ..Loss::new(LossKind::Gll)
        };
        let (me, ce, te) = (
            Expr::input("mu", 2),
            Expr::input("covar", 2),
            Expr::input("t", 2),
        );
        let mut inputs = vec![
            (me.clone(), mu.clone()),
            (ce.clone(), covar.clone()),
            (te.clone(), t.clone()),
        ];
        let we = w.map(|w| {
            let we = Expr::input("w", 2);
            inputs.push((we.clone(), w));
            we
        });
        let cost = loss.build(&me, &te, we.as_ref(), Some(&ce)).unwrap();
        assert_gradient(&cost, &inputs, &[me, ce]);
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

fn pair_strategy() -> impl Strategy<Value = (usize, Vec<f32>, Vec<f32>)> {
    (1usize..4, 1usize..5).prop_flat_map(|(rows, cols)| {
        let n = rows * cols;
        (
            Just(cols),
            values(-2.0..2.0, n),
            // Zero or clearly nonzero offsets, so "y ≠ t" never rounds away.
            prop::collection::vec(prop_oneof![Just(0.0f32), -1.0f32..-0.01, 0.01f32..1.0], n),
        )
    })
}

/// Normalises each row of positive values into a probability distribution.
fn rows_to_probs(v: &[f32], cols: usize) -> Vec<f32> {
    v.chunks(cols)
        .flat_map(|r| {
            let s: f32 = r.iter().sum();
            r.iter().map(move |x| x / s).collect::<Vec<_>>()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn mse_mae_are_nonnegative_and_mse_vanishes_only_at_the_target(
        (cols, t, d) in pair_strategy()
    ) {
        let rows = t.len() / cols;
        let y: Vec<f32> = t.iter().zip(&d).map(|(a, b)| a + b).collect();
        let (yt, tt) = (mat(rows, cols, &y), mat(rows, cols, &t));
        let mse = float_loss(&Loss::new(LossKind::Mse), &yt, &tt, None);
        let mae = float_loss(&Loss::new(LossKind::Mae), &yt, &tt, None);
        prop_assert!(mse >= 0.0 && mae >= 0.0);
        prop_assert_eq!(mse == 0.0, d.iter().all(|&x| x == 0.0), "mse {}", mse);
        prop_assert_eq!(float_loss(&Loss::new(LossKind::Mse), &tt, &tt, None), 0.0);
    }

    #[test]
    fn kl_between_distributions_is_nonnegative(
        (cols, a, b) in (1usize..4, 1usize..5).prop_flat_map(|(rows, cols)| (
            Just(cols),
            values(0.05..1.0, rows * cols),
            values(0.05..1.0, rows * cols),
        ))
    ) {
        let rows = a.len() / cols;
        let (y, t) = (rows_to_probs(&a, cols), rows_to_probs(&b, cols));
        let kl = float_loss(&Loss::new(LossKind::Kl), &mat(rows, cols, &y), &mat(rows, cols, &t), None);
        prop_assert!(kl >= -1e-6, "kl {}", kl);
        let same = float_loss(&Loss::new(LossKind::Kl), &mat(rows, cols, &t), &mat(rows, cols, &t), None);
        prop_assert!(same.abs() <= 1e-6, "kl(t, t) {}", same);
    }
}

// ---------------------------------------------------------------------------------------------
// Training

/// Runs `steps` of `p ← p − lr·∂loss/∂p` and returns the loss before each step.
fn train(p: &Param, loss: &Expr, inputs: &[(Expr, Tensor)], lr: f32, steps: usize) -> Vec<f32> {
    let g = grad(loss, &[p.expr()]).unwrap().remove(0);
    let update = p.expr() - g * lr;
    let exprs: Vec<Expr> = inputs.iter().map(|(e, _)| e.clone()).collect();
    let mut f =
        Function::compile_with_updates(&exprs, std::slice::from_ref(loss), &[(p.clone(), update)])
            .unwrap();
    let args: Vec<&Tensor> = inputs.iter().map(|(_, t)| t).collect();
    (0..steps)
        .map(|_| f.call(&args).unwrap()[0].item().unwrap())
        .collect()
}

fn assert_trains(name: &str, history: &[f32]) {
    let (first, last) = (history[0], history[history.len() - 1]);
    assert!(
        history.iter().all(|v| v.is_finite()) && last < first - 1e-3,
        "{name} did not train: {history:?}"
    );
}

#[test]
fn every_loss_can_train_a_one_parameter_model() {
    let x = mat(3, 3, &[1.0, -0.5, 0.25, 0.0, 2.0, -1.0, 0.5, 0.5, 1.5]);
    let twice = mat(3, 3, &x.data().iter().map(|v| 2.0 * v).collect::<Vec<_>>());
    let labels = Tensor::vector(&[0.0, 1.0, 2.0]);
    let (xe, te, le, ce) = (
        Expr::input("x", 2),
        Expr::input("t", 2),
        Expr::labels("labels"),
        Expr::input("covar", 2),
    );
    for kind in LossKind::ALL {
        let p = Param::new("p", Tensor::scalar(0.0));
        let scaled = &xe * &p.expr();
        let loss = Loss::new(kind);
        let (cost, inputs, lr) = match kind {
            // Fit y = p·x to 2x.
            LossKind::Mse | LossKind::Mae => (
                loss.build(&scaled, &te, None, None).unwrap(),
                vec![(xe.clone(), x.clone()), (te.clone(), twice.clone())],
                0.05,
            ),
            // Sharpen softmax(p·x) towards each row's largest entry (the label).
            LossKind::CrossEntropy => (
                loss.build(&scaled.softmax(), &le, None, None).unwrap(),
                vec![(xe.clone(), x.clone()), (le.clone(), labels.clone())],
                0.5,
            ),
            LossKind::Hinge => (
                loss.build(&scaled, &le, None, None).unwrap(),
                vec![(xe.clone(), x.clone()), (le.clone(), labels.clone())],
                0.1,
            ),
            // Match softmax(p·x) to softmax(2x).
            LossKind::Kl => (
                loss.build(&scaled.softmax(), &te.softmax(), None, None)
                    .unwrap(),
                vec![(xe.clone(), x.clone()), (te.clone(), twice.clone())],
                0.5,
            ),
            LossKind::Gll => (
                loss.build(&scaled, &te, None, Some(&ce)).unwrap(),
                vec![
                    (xe.clone(), x.clone()),
                    (te.clone(), twice.clone()),
                    (ce.clone(), Tensor::full(&[3, 3], 2.0)),
                ],
                0.05,
            ),
            // Shift the rows of x towards those of x + 1.5.
            LossKind::Mmd => {
                let shifted = mat(3, 3, &x.data().iter().map(|v| v + 1.5).collect::<Vec<_>>());
                (
                    loss.build(&(&xe + &p.expr()), &te, None, None).unwrap(),
                    vec![(xe.clone(), x.clone()), (te.clone(), shifted)],
                    0.5,
                )
            }
        };
        let history = train(&p, &cost, &inputs, lr, 30);
        assert_trains(kind.name(), &history);
    }
}
