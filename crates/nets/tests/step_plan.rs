//! The compiled training step of a softmax classifier (the digits workload W3 of issue 13,
//! 64-100-10): which instructions it runs. Exponentials are the costly part of the loss path, so
//! the plan must not exponentiate the logits more often than the outputs need.

use nets::{Classifier, LayerSpec, ModelOptions, Regularizers};
use tape::testing::{count_ops, labels, normal};
use tape::{grad, Function};

/// The step function as `optim::Trainer` compiles it: loss, monitors, then every gradient.
fn step_plan() -> String {
    let net = Classifier::build(
        vec![
            LayerSpec::input(64),
            LayerSpec::dense(100),
            LayerSpec::classifier(10),
        ],
        ModelOptions::default(),
    )
    .expect("classifier");
    let g = net.graph(&Regularizers::default()).expect("graph");
    let params: Vec<_> = net.params().iter().map(|p| p.expr()).collect();
    let mut outputs = vec![g.loss.clone()];
    outputs.extend(g.monitors.iter().map(|(_, e)| e.clone()));
    outputs.extend(grad(&g.loss, &params).expect("grad"));
    let mut f = Function::compile(&g.inputs, &outputs).expect("compile");
    // Plans are made for the shapes of a call: run one batch of 32 first.
    let (x, y) = (normal(&[32, 64], 1), labels(32, 10));
    f.run(&[x.view(), y.view()]).expect("run");
    f.debug_plan()
}

/// The loss path runs two passes of `exp` over the logits (the log-softmax of the loss and the
/// softmax that accuracy reads), and the gradient reuses that softmax in one instruction instead
/// of exponentiating the log-softmax again and scattering, summing, multiplying, subtracting;
/// the ReLU derivative is one pass too.
#[test]
fn classifier_step_exponentiates_the_logits_twice() {
    let plan = step_plan();
    println!("{plan}");
    assert_eq!(count_ops(plan.lines(), "log_softmax"), 1, "{plan}");
    assert_eq!(count_ops(plan.lines(), "softmax"), 1, "{plan}");
    assert_eq!(count_ops(plan.lines(), "softmax_xent_grad"), 1, "{plan}");
    assert_eq!(count_ops(plan.lines(), "relu_grad"), 1, "{plan}");
    for gone in ["exp", "scatter", "sub", "gt", "mul"] {
        assert_eq!(
            count_ops(plan.lines(), gone),
            0,
            "no `{gone}` expected:\n{plan}"
        );
    }
}
