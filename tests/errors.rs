//! Bad graphs and bad data give errors that name the op or input, the shapes and the user's
//! line; errors from below `nets` and `optim` arrive with one line of context each (which layer,
//! which phase, which iteration and batch) and every cause shows once. Nothing here panics.
//!
//! Every message is compared whole with an inline snapshot by [`check_error`];
//! `UPDATE_EXPECT=1 cargo test --test errors` rewrites the snapshots after a deliberate change
//! (run it, then `cargo fmt`, until nothing changes: the messages hold this file's line numbers,
//! which move when a snapshot above grows or shrinks). The updater does not find a literal that
//! rustfmt has put alone on the line after `expect![`; `expect![[r#"..."#]]` is always found.

use expect_test::{expect, Expect};
use nets::{Layer, LayerContext, LayerSpec, ModelOptions, Regressor};
use optim::{Dataset, DatasetOptions};
use std::error::Error as StdError;
use std::sync::Arc;
use tape::{grad, CustomOp, Dims, Error, Expr, Function, Param, Tensor, TensorView};

/// An error as a chain printer shows it: its message, then one `caused by:` line per source.
fn render(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(&format!("\ncaused by: {c}"));
        cause = c.source();
    }
    text
}

/// Checks that `result` is an error whose rendering (see [`render`]) is the snapshot.
#[track_caller]
fn check_error<T, E: StdError>(result: Result<T, E>, expect: Expect) {
    match result {
        Ok(_) => panic!("expected an error, got a value"),
        Err(e) => expect.assert_eq(&render(&e)),
    }
}

/// Each error of the chain must add its own line: no message may be repeated by a wrapper that
/// both prints its inner error and returns it as its source.
fn assert_each_cause_once(err: &dyn StdError) {
    let text = render(err);
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let body = line.trim_start_matches("caused by: ");
        let seen = lines.iter().filter(|l| l.ends_with(body)).count();
        assert_eq!(seen, 1, "line {i} appears {seen} times in:\n{text}");
    }
}

#[test]
fn a_shape_error_at_build_time_surfaces_at_compile_with_the_users_line() {
    let x = Expr::input_with_dims("x", &[None, Some(3)]);
    let w = Param::new("w", Tensor::zeros(&[4, 2]));
    let y = x.matmul(&w.expr()).relu(); // the bad node is the matmul; relu carries its error on
    let result = Function::compile(&[x], &[y]);
    check_error(
        result.as_ref().map(|_| ()),
        expect!["matmul at tests/errors.rs:54:15: operands of shapes [?, 3], [4, 2] but inner dimensions to agree (3 vs 4)"],
    );
    // The shapes are data, unknown dims included, not text to parse.
    let Err(Error::Shape { shapes, .. }) = result else {
        panic!("a shape error was expected");
    };
    assert_eq!(shapes, [Dims::from([None, Some(3)]), Dims::known(&[4, 2])]);
    assert_eq!(shapes[0].to_string(), "[?, 3]");
}

#[test]
fn a_shape_error_only_known_at_run_time_names_op_and_shapes() {
    let x = Expr::input("x", 2);
    let w = Param::new("w", Tensor::zeros(&[4, 2]));
    let mut f = Function::compile(std::slice::from_ref(&x), &[x.matmul(&w.expr())]).unwrap();
    let result = f.call(&[&Tensor::zeros(&[2, 3])]);
    check_error(
        result.as_ref().map(|_| ()),
        expect!["matmul at tests/errors.rs:72:65: operands of shapes [2, 3], [4, 2] but inner dimensions to agree (3 vs 4)"],
    );
    let Err(Error::Shape { shapes, .. }) = result else {
        panic!("a shape error was expected");
    };
    assert_eq!(shapes, [Dims::known(&[2, 3]), Dims::known(&[4, 2])]);
    // The function is still usable with good data afterwards.
    assert_eq!(
        f.call(&[&Tensor::ones(&[1, 4])]).unwrap()[0].shape(),
        &[1, 2]
    );
}

#[test]
fn a_negative_axis_out_of_range_is_reported_as_written_with_the_rank() {
    let x = Expr::input("x", 2);
    let bad = x.sum_axis(-5, true);
    check_error(
        Function::compile(std::slice::from_ref(&x), &[bad]),
        expect!["sum(axis=-5, keepdims) at tests/errors.rs:92:17: operands of shapes [?, ?] but an axis in -2..2 (the rank is 2)"],
    );
    check_error(
        Function::compile(std::slice::from_ref(&x), &[x.max_axis(2, false)]),
        expect!["max(axis=2) at tests/errors.rs:98:57: operands of shapes [?, ?] but an axis in -2..2 (the rank is 2)"],
    );
    // In range, a negative axis counts from the end.
    let mut f = Function::compile(std::slice::from_ref(&x), &[x.sum_axis(-2, false)]).unwrap();
    let out = f.call(&[&Tensor::new(&[2, 2], vec![1., 2., 3., 4.]).unwrap()]);
    assert_eq!(out.unwrap()[0].data(), &[4.0, 6.0]);
}

#[test]
fn wrong_arguments_are_named() {
    let x = Expr::input_with_dims("x", &[None, Some(2)]);
    let y = Expr::input("y", 1);
    let mut f = Function::compile(&[x.clone(), y.clone()], &[x.sum() + y.sum()]).unwrap();
    check_error(
        f.call(&[&Tensor::zeros(&[1, 2])]).map(|_| ()),
        expect![[r#"input `arguments`: expected 2 (x, y), found 1"#]],
    );
    check_error(
        f.call(&[&Tensor::zeros(&[2]), &Tensor::zeros(&[2])])
            .map(|_| ()),
        expect![[r#"input `x`: expected shape [?, 2], found shape [2]"#]],
    );
    let result = f.call(&[&Tensor::zeros(&[3, 3]), &Tensor::zeros(&[2])]);
    let Err(Error::ValueShape(v)) = &result else {
        panic!("a value-shape error was expected");
    };
    assert_eq!(v.expected, Dims::from([None, Some(2)]));
    assert_eq!(v.found, [3, 3]);
    check_error(
        result.map(|_| ()),
        expect![[r#"input `x`: expected shape [?, 2], found shape [3, 3]"#]],
    );
    let nan = Tensor::vector(&[1.0, f32::NAN]);
    check_error(
        f.call(&[&Tensor::zeros(&[1, 2]), &nan]).map(|_| ()),
        expect![[r#"input `y`: value NaN at flat index 1 is not finite"#]],
    );
}

#[test]
fn labels_out_of_range_or_not_integers_name_the_row() {
    let x = Expr::input("x", 2);
    let y = Expr::labels("y");
    let loss = -x.log_softmax().pick(&y).mean();
    let mut f = Function::compile(&[x, y], &[loss]).unwrap();
    let xs = Tensor::zeros(&[3, 4]);
    check_error(
        f.call(&[&xs, &Tensor::vector(&[0., 7., 1.])]).map(|_| ()),
        expect!["pick at tests/errors.rs:142:33: label 7 in row 1 is not an integer in 0..4"],
    );
    check_error(
        f.call(&[&xs, &Tensor::vector(&[0., 1., 2.5])]).map(|_| ()),
        expect!["pick at tests/errors.rs:142:33: label 2.5 in row 2 is not an integer in 0..4"],
    );
    check_error(
        f.call(&[&xs, &Tensor::vector(&[-1., 1., 2.])]).map(|_| ()),
        expect!["pick at tests/errors.rs:142:33: label -1 in row 0 is not an integer in 0..4"],
    );
    assert!(f.call(&[&xs, &Tensor::vector(&[0., 1., 3.])]).is_ok());
}

#[test]
fn gradient_requests_without_an_answer_are_errors() {
    let x = Expr::input("x", 2);
    let y = Expr::labels("y");
    let loss = -x.log_softmax().pick(&y).mean();
    check_error(grad(&loss, &[y]), expect!["grad (node built at tests/errors.rs:163:13): input `y` holds integer labels, which have no gradient"]);
    let unrelated = Expr::input("unrelated", 1);
    check_error(grad(&loss, &[unrelated]), expect!["grad (node built at tests/errors.rs:166:21): the cost does not depend on input `unrelated`"]);
    check_error(grad(&x.exp(), std::slice::from_ref(&x)), expect!["grad (node built at tests/errors.rs:168:25): the cost must be a scalar (rank 0), but `exp` has shape [?, ?]"]);
    // Reached only through ops without a gradient: zeros, not an error.
    let g = grad(&x.sign().sum(), std::slice::from_ref(&x))
        .unwrap()
        .remove(0);
    let out = Function::compile(&[x], &[g])
        .unwrap()
        .call(&[&Tensor::ones(&[1, 2])])
        .unwrap();
    assert_eq!(out[0].data(), &[0.0, 0.0]);
}

#[test]
fn compile_checks_its_inputs_and_updates() {
    let x = Expr::input("x", 1);
    let z = Expr::input("z", 1);
    check_error(
        Function::compile(std::slice::from_ref(&x), &[(&x + &z).sum()]),
        expect!["input `z`: expected to be among the function's inputs (built at tests/errors.rs:183:13), found it missing"],
    );
    check_error(Function::compile(&[x.exp()], &[x.sum()]), expect!["input `exp`: expected a graph input made by Expr::input or Expr::labels, found a exp node"]);
    let x2 = Expr::input("x", 1);
    check_error(
        Function::compile(&[x.clone(), x2.clone()], &[(&x + &x2).sum()]),
        expect!["input `x`: expected inputs with distinct names, each listed once, found the name twice"],
    );
    let w = Param::new("w", Tensor::zeros(&[3]));
    check_error(
        Function::compile_with_updates(
            &[],
            &[],
            &[(w.clone(), Expr::constant(Tensor::zeros(&[4])))],
        ),
        expect!["input `w`: expected an update of shape [3], found shape [4]"],
    );
    // An update whose shape is only known at run time is checked when the function runs.
    let mut f =
        Function::compile_with_updates(std::slice::from_ref(&x), &[], &[(w.clone(), x.clone())])
            .unwrap();
    check_error(
        f.call(&[&Tensor::zeros(&[5])]).map(|_| ()),
        expect!["input `w`: expected an update of shape [3], found shape [5]"],
    );
    assert!(f.call(&[&Tensor::ones(&[3])]).is_ok());
    assert_eq!(w.value().data(), &[1.0, 1.0, 1.0]);
}

#[test]
fn bad_op_arguments_are_errors_not_panics() {
    let x = Expr::input("x", 2);
    let compile = |bad: Expr| Function::compile(std::slice::from_ref(&x), &[bad]);
    check_error(compile(x.reshape(&[-1, -1])), expect!["reshape[-1, -1] at tests/errors.rs:219:27: operands of shapes [?, ?] but target dims that are sizes or a single -1"]);
    check_error(compile(x.sum_axis(5, false)), expect!["sum(axis=5) at tests/errors.rs:220:27: operands of shapes [?, ?] but an axis in -2..2 (the rank is 2)"]);
    check_error(compile(x.sum_axis(-3, false)), expect!["sum(axis=-3) at tests/errors.rs:221:27: operands of shapes [?, ?] but an axis in -2..2 (the rank is 2)"]);
    check_error(compile(x.dropout_mask(1.5, 0)), expect!["dropout_mask(p=1.5) at tests/errors.rs:222:27: operands of shapes [?, ?] but a drop probability in [0, 1), got 1.5"]);
    check_error(compile(x.noise(-1.0, 0)), expect!["noise(std=-1) at tests/errors.rs:223:27: operands of shapes [?, ?] but a finite, non-negative standard deviation, got -1"]);
    check_error(
        compile(x.slice(0, 0, 0).t().t().unsqueeze(9)),
        expect!["unsqueeze(9) at tests/errors.rs:225:42: operands of shapes [0, ?] but an axis at most 2 (the rank)"],
    );
    check_error(
        compile(Expr::concat(&[], 0)),
        expect!["concat(axis=0) at tests/errors.rs:229:17: no operands but at least one operand"],
    );
    check_error(compile(x.pick(&x)), expect!["pick at tests/errors.rs:232:27: operands of shapes [?, ?], [?, ?] but a matrix (rows × classes) and one label per row"]);
    check_error(
        compile(x.t().matmul(&Expr::input("v", 1))),
        expect!["matmul at tests/errors.rs:234:23: operands of shapes [?, ?], [?] but two matrices (rank 2)"],
    );
    check_error(
        Tensor::new(&[2, 2], vec![1.0; 3]),
        expect!["Tensor::new: shape [2, 2] needs 4 values, got 3"],
    );
    let p = Param::new("p", Tensor::zeros(&[2]));
    check_error(
        p.set(Tensor::zeros(&[3])),
        expect!["input `p`: expected a value of shape [2], found shape [3]"],
    );
}

/// A custom op that always fails when run.
struct Failing;

impl CustomOp for Failing {
    fn name(&self) -> &str {
        "failing"
    }
    fn forward(&self, _inputs: &[TensorView], _out: &mut [f32]) -> Result<(), String> {
        Err("refuses to compute".into())
    }
    fn grad(&self, _: &[Expr], _: &Expr, _: &Expr) -> tape::Result<Vec<Option<Expr>>> {
        Ok(vec![None])
    }
}

#[test]
fn a_custom_ops_own_failure_is_reported_with_its_name_and_line() {
    let x = Expr::input("x", 1);
    let y = Expr::custom(Arc::new(Failing), std::slice::from_ref(&x));
    let mut f = Function::compile(&[x], &[y]).unwrap();
    check_error(
        f.call(&[&Tensor::vector(&[1.0])]).map(|_| ()),
        expect!["failing at tests/errors.rs:266:13: refuses to compute"],
    );
}

/// A user's layer whose weight matrix has 3 rows, whatever the width of its input.
struct Misfit {
    name: String,
    inputs: Vec<(String, usize)>,
    w: Param,
}

impl Misfit {
    fn spec() -> LayerSpec {
        LayerSpec::custom(4, |ctx: &LayerContext| {
            let w = Param::new(&format!("{}.w", ctx.name), Tensor::zeros(&[3, 4]));
            let layer = Misfit {
                name: ctx.name.clone(),
                inputs: ctx.inputs.clone(),
                w,
            };
            Ok(Box::new(layer) as Box<dyn Layer>)
        })
        .name("misfit")
    }
}

impl Layer for Misfit {
    fn name(&self) -> &str {
        &self.name
    }
    fn size(&self) -> usize {
        4
    }
    fn inputs(&self) -> &[(String, usize)] {
        &self.inputs
    }
    fn params(&self) -> Vec<Param> {
        vec![self.w.clone()]
    }
    fn connect(&self, inputs: &[Expr]) -> nets::Result<Vec<(String, Expr)>> {
        Ok(vec![("out".into(), inputs[0].matmul(&self.w.expr()))])
    }
}

#[test]
fn a_layers_shape_error_names_the_layer_and_shows_each_cause_once() {
    let specs = vec![LayerSpec::from(2), Misfit::spec(), LayerSpec::from(1)];
    // The model connects its layers when it is built, so the shape error shows there.
    let err = Regressor::build(specs, ModelOptions::default())
        .err()
        .expect("the graph must fail");
    assert_each_cause_once(&err);
    check_error(
        Err::<(), _>(err),
        expect![[r#"
            layer `misfit`: building its graph
            caused by: matmul at tests/errors.rs:310:42: operands of shapes [?, 2], [3, 4] but inner dimensions to agree (2 vs 3)"#]],
    );
}

/// A two-column regression set of `rows` rows, with targets of one column.
fn arrays(name: &str, rows: usize, width: usize) -> Dataset {
    let xs = Tensor::zeros(&[rows, width]);
    let ys = Tensor::zeros(&[rows, 1]);
    let options = DatasetOptions {
        batch_size: 2,
        ..Default::default()
    };
    Dataset::new(name, vec![xs, ys], options).unwrap()
}

/// Batches from a function: good ones (`[2, 2]` inputs) until call `bad_call`, whose inputs
/// have a third column.
fn batches(bad_call: usize) -> Dataset {
    let mut calls = 0;
    let f = move || {
        calls += 1;
        let width = if calls == bad_call { 3 } else { 2 };
        vec![Tensor::zeros(&[2, width]), Tensor::zeros(&[2, 1])]
    };
    let options = DatasetOptions {
        iteration_size: Some(2),
        ..Default::default()
    };
    Dataset::from_fn("batches", f, options).unwrap()
}

#[test]
fn a_data_error_during_training_names_the_iteration_and_batch() {
    let net = Regressor::new(&[2, 1]).unwrap();
    let mut trainer = net.trainer("sgd", &[]).unwrap();
    let mut valid = arrays("valid", 4, 2);
    // The dataset refuses the fourth call's batch: iteration 2, its second batch.
    let err = trainer
        .train(&mut batches(4), Some(&mut valid))
        .unwrap_err();
    assert_each_cause_once(&err);
    check_error(
        Err::<(), _>(err.clone()),
        expect![[r#"
        training: iteration 2, batch 2 of 2
        caused by: dataset `batches`: call 4 of the batch function returned arrays[0] of shape [2, 3], but the first call's had shape [2, 2] (only axis 0, the batch size, may change)"#]],
    );
    // Through `nets` the chain reads the same: its wrapper of `optim` errors is transparent.
    let through_nets = nets::Error::from(err);
    assert_each_cause_once(&through_nets);
    check_error(
        Err::<(), _>(through_nets),
        expect![[r#"
        training: iteration 2, batch 2 of 2
        caused by: dataset `batches`: call 4 of the batch function returned arrays[0] of shape [2, 3], but the first call's had shape [2, 2] (only axis 0, the batch size, may change)"#]],
    );
}

#[test]
fn an_engine_error_during_training_or_validation_says_which_phase() {
    let net = Regressor::new(&[2, 1]).unwrap();
    let mut trainer = net.trainer("sgd", &[]).unwrap();
    // The first batch is already too wide for the model: the engine refuses it.
    let err = trainer
        .train(&mut batches(1), Some(&mut arrays("valid", 4, 2)))
        .unwrap_err();
    assert_each_cause_once(&err);
    check_error(
        Err::<(), _>(err),
        expect![[r#"
        training: iteration 1, batch 1 of 2
        caused by: input `in`: expected shape [?, 2], found shape [2, 3]"#]],
    );
    let err = trainer
        .train(&mut batches(0), Some(&mut arrays("valid", 4, 3)))
        .unwrap_err();
    assert_each_cause_once(&err);
    check_error(
        Err::<(), _>(nets::Error::from(err)),
        expect![[r#"
        validating: before the first iteration
        caused by: input `in`: expected shape [?, 2], found shape [2, 3]"#]],
    );
}

#[test]
fn a_loss_the_trainer_cannot_compile_says_so_once() {
    let x = Expr::input("x", 2);
    let w = Param::new("w", Tensor::zeros(&[2, 1]));
    let not_scalar = x.matmul(&w.expr());
    let rule = optim::RuleOptions::new(optim::Algorithm::Sgd);
    let lp = optim::LoopOptions::default();
    let result = optim::Trainer::new(&not_scalar, &[w], &[x], &[], rule, lp);
    let err = result.err().expect("a non-scalar loss must be refused");
    assert_each_cause_once(&err);
    check_error(
        Err::<(), _>(err),
        expect![[r#"
        trainer: compiling the training functions
        caused by: grad (node built at tests/errors.rs:415:24): the cost must be a scalar (rank 0), but `matmul` has shape [?, 1]"#]],
    );
}
