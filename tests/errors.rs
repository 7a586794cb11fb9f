//! Bad graphs and bad data give errors that name the op or input, the shapes and the user's
//! line; nothing here panics.

use tape::{grad, Error, Expr, Function, Param, Tensor};

#[test]
fn a_shape_error_at_build_time_surfaces_at_compile_with_the_users_line() {
    let x = Expr::input_with_dims("x", &[None, Some(3)]);
    let w = Param::new("w", Tensor::zeros(&[4, 2]));
    let y = x.matmul(&w.expr()).relu(); // the bad node is the matmul; relu carries its error on
    let err = Function::compile(&[x], &[y])
        .err()
        .expect("compile must fail");
    let text = err.to_string();
    assert!(matches!(err, Error::Shape { .. }), "{err:?}");
    assert!(text.contains("matmul"), "{text}");
    assert!(text.contains("[?, 3]") && text.contains("[4, 2]"), "{text}");
    assert!(text.contains("tests/errors.rs:10"), "{text}");
}

#[test]
fn a_shape_error_only_known_at_run_time_names_op_and_shapes() {
    let x = Expr::input("x", 2);
    let w = Param::new("w", Tensor::zeros(&[4, 2]));
    let mut f = Function::compile(std::slice::from_ref(&x), &[x.matmul(&w.expr())]).unwrap();
    let err = f.call(&[&Tensor::zeros(&[2, 3])]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("matmul") && text.contains("[2, 3]") && text.contains("[4, 2]"),
        "{text}"
    );
    assert!(text.contains("inner dimensions"), "{text}");
    // The function is still usable with good data afterwards.
    assert_eq!(
        f.call(&[&Tensor::ones(&[1, 4])]).unwrap()[0].shape(),
        &[1, 2]
    );
}

#[test]
fn wrong_arguments_are_named() {
    let x = Expr::input_with_dims("x", &[None, Some(2)]);
    let y = Expr::input("y", 1);
    let mut f = Function::compile(&[x.clone(), y.clone()], &[x.sum() + y.sum()]).unwrap();
    let e = f.call(&[&Tensor::zeros(&[1, 2])]).unwrap_err();
    assert!(e.to_string().contains("expected 2 (x, y), found 1"), "{e}");
    let e = f
        .call(&[&Tensor::zeros(&[2]), &Tensor::zeros(&[2])])
        .unwrap_err();
    assert!(
        matches!(&e, Error::Input { input, .. } if input == "x"),
        "{e}"
    );
    let e = f
        .call(&[&Tensor::zeros(&[3, 3]), &Tensor::zeros(&[2])])
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("input `x`: expected shape [?, 2], found shape [3, 3]"),
        "{e}"
    );
    let nan = Tensor::vector(&[1.0, f32::NAN]);
    let e = f.call(&[&Tensor::zeros(&[1, 2]), &nan]).unwrap_err();
    assert!(
        matches!(&e, Error::NonFinite { input, index: 1, value } if input == "y" && value.is_nan()),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("input `y`") && e.to_string().contains("index 1"),
        "{e}"
    );
}

#[test]
fn labels_out_of_range_or_not_integers_name_the_row() {
    let x = Expr::input("x", 2);
    let y = Expr::labels("y");
    let loss = -x.log_softmax().pick(&y).mean();
    let mut f = Function::compile(&[x, y], &[loss]).unwrap();
    let xs = Tensor::zeros(&[3, 4]);
    let e = f.call(&[&xs, &Tensor::vector(&[0., 7., 1.])]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Label {
                row: 1,
                classes: 4,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("label 7 in row 1"), "{e}");
    let e = f.call(&[&xs, &Tensor::vector(&[0., 1., 2.5])]).unwrap_err();
    assert!(matches!(e, Error::Label { row: 2, .. }), "{e:?}");
    let e = f.call(&[&xs, &Tensor::vector(&[-1., 1., 2.])]).unwrap_err();
    assert!(matches!(e, Error::Label { row: 0, .. }), "{e:?}");
    assert!(f.call(&[&xs, &Tensor::vector(&[0., 1., 3.])]).is_ok());
}

#[test]
fn gradient_requests_without_an_answer_are_errors() {
    let x = Expr::input("x", 2);
    let y = Expr::labels("y");
    let loss = -x.log_softmax().pick(&y).mean();
    let e = grad(&loss, &[y]).unwrap_err();
    assert!(e.to_string().contains("integer labels"), "{e}");
    let unrelated = Expr::input("z", 1);
    let e = grad(&loss, &[unrelated]).unwrap_err();
    assert!(
        e.to_string().contains("does not depend on input `z`"),
        "{e}"
    );
    let e = grad(&x.exp(), std::slice::from_ref(&x)).unwrap_err();
    assert!(e.to_string().contains("must be a scalar"), "{e}");
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
    let e = Function::compile(std::slice::from_ref(&x), &[(&x + &z).sum()])
        .err()
        .unwrap();
    assert!(e.to_string().contains("input `z`"), "{e}");
    let e = Function::compile(&[x.exp()], &[x.sum()]).err().unwrap();
    assert!(e.to_string().contains("graph input"), "{e}");
    let x2 = Expr::input("x", 1);
    let e = Function::compile(&[x.clone(), x2.clone()], &[(&x + &x2).sum()])
        .err()
        .unwrap();
    assert!(e.to_string().contains("distinct names"), "{e}");
    let w = Param::new("w", Tensor::zeros(&[3]));
    let e = Function::compile_with_updates(
        &[],
        &[],
        &[(w.clone(), Expr::constant(Tensor::zeros(&[4])))],
    )
    .err()
    .unwrap();
    assert!(
        e.to_string().contains("`w`") && e.to_string().contains("[3]"),
        "{e}"
    );
    // An update whose shape is only known at run time is checked when the function runs.
    let mut f =
        Function::compile_with_updates(std::slice::from_ref(&x), &[], &[(w.clone(), x.clone())])
            .unwrap();
    assert!(f.call(&[&Tensor::zeros(&[5])]).is_err());
    assert!(f.call(&[&Tensor::ones(&[3])]).is_ok());
    assert_eq!(w.value().data(), &[1.0, 1.0, 1.0]);
}

#[test]
fn bad_op_arguments_are_errors_not_panics() {
    let x = Expr::input("x", 2);
    for bad in [
        x.reshape(&[-1, -1]),
        x.sum_axis(5, false),
        x.sum_axis(-3, false),
        x.dropout_mask(1.5, 0),
        x.noise(-1.0, 0),
        x.slice(0, 0, 0).t().t().unsqueeze(9),
        Expr::concat(&[], 0),
        x.pick(&x),
        x.t().matmul(&Expr::input("v", 1)),
    ] {
        let e = Function::compile(std::slice::from_ref(&x), std::slice::from_ref(&bad)).err();
        let e = e.unwrap_or_else(|| panic!("{} should not compile", bad.debug_print()));
        assert!(e.to_string().contains("tests/errors.rs"), "{e}");
    }
    assert!(Tensor::new(&[2, 2], vec![1.0; 3]).is_err());
    let p = Param::new("p", Tensor::zeros(&[2]));
    assert!(p.set(Tensor::zeros(&[3])).is_err());
}
