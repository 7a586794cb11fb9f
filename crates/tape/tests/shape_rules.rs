//! Shape rules refuse every operand they cannot serve, at build time where the dims are known
//! and at plan time where they are not, with a shape error naming the op, the shapes and the
//! user's line; nothing here may panic or return a value computed from mismatched operands.
//! Expected values are worked out by hand.

use std::panic::{catch_unwind, AssertUnwindSafe};
use tape::{Dims, Error, Expr, Function, Op, Tensor};

/// What a shape error says, as data: op name, operand shapes, what was expected, line built.
#[derive(Debug)]
struct ShapeErr {
    op: String,
    shapes: Vec<Dims>,
    expected: String,
    line: u32,
}

/// The shape error in `result`; fails the test on a value, another error or a panic.
#[track_caller]
fn shape_err<T>(result: impl FnOnce() -> tape::Result<T>) -> ShapeErr {
    match catch_unwind(AssertUnwindSafe(result)) {
        Err(_) => panic!("panicked instead of returning a shape error"),
        Ok(Ok(_)) => panic!("expected a shape error, got a value"),
        Ok(Err(Error::Shape {
            op,
            shapes,
            expected,
            at,
        })) => ShapeErr {
            op,
            shapes,
            expected,
            line: at.line(),
        },
        Ok(Err(other)) => panic!("expected a shape error, got: {other}"),
    }
}

/// Compiles `outs` from `ins` and calls it once with `args`.
fn run(ins: &[Expr], outs: &[Expr], args: &[&Tensor]) -> tape::Result<Vec<Tensor>> {
    let mut f = Function::compile(ins, outs)?;
    Ok(f.call(args)?.to_vec())
}

fn t(shape: &[usize], data: Vec<f32>) -> Tensor {
    Tensor::new(shape, data).unwrap()
}

fn c(shape: &[usize], data: Vec<f32>) -> Expr {
    Expr::constant(t(shape, data))
}

fn known(d: &[usize]) -> Dims {
    Dims::known(d)
}

#[test]
fn broadcast_like_needs_the_operand_to_broadcast_to_the_target() {
    // Known at build time: [3] does not fit into [1] although the two broadcast together.
    let (u, v) = (c(&[3], vec![1., 2., 3.]), c(&[1], vec![0.]));
    let line = line!() + 1;
    let e = shape_err(|| Function::compile(&[], &[u.broadcast_like(&v)]));
    assert_eq!(e.op, "broadcast_like");
    assert_eq!(e.shapes, [known(&[3]), known(&[1])]);
    assert_eq!(e.expected, "an operand that broadcasts to the target");
    assert_eq!(e.line, line);
    // Crossed dims: [3, 1] and [1, 3] broadcast together to [3, 3], but neither fits the other.
    let (p, q) = (c(&[3, 1], vec![0.; 3]), c(&[1, 3], vec![0.; 3]));
    shape_err(|| Function::compile(&[], &[p.broadcast_like(&q)]));
    // Known only at run time: the plan refuses the call instead of panicking.
    let (x, y) = (Expr::input("x", 1), Expr::input("y", 1));
    let line = line!() + 1;
    let out = x.broadcast_like(&y);
    let e = shape_err(|| {
        run(
            &[x.clone(), y.clone()],
            std::slice::from_ref(&out),
            &[&t(&[3], vec![1., 2., 3.]), &t(&[1], vec![0.])],
        )
    });
    assert_eq!(e.shapes, [known(&[3]), known(&[1])]);
    assert_eq!(e.line, line);
    // The right direction still works: [1] → [3] repeats the value.
    let got = run(
        &[x, y],
        &[out],
        &[&t(&[1], vec![5.]), &t(&[3], vec![0., 0., 0.])],
    )
    .unwrap();
    assert_eq!(got[0].data(), &[5., 5., 5.]);
}

#[test]
fn sum_like_needs_the_target_to_broadcast_to_the_operand() {
    let (g, like) = (c(&[1], vec![2.]), c(&[3], vec![0.; 3]));
    let line = line!() + 1;
    let e = shape_err(|| Function::compile(&[], &[g.sum_like(&like)]));
    assert_eq!(e.op, "sum_like");
    assert_eq!(e.shapes, [known(&[1]), known(&[3])]);
    assert_eq!(e.expected, "a target that broadcasts to the summed operand");
    assert_eq!(e.line, line);
    let (x, y) = (Expr::input("x", 2), Expr::input("y", 2));
    let out = x.sum_like(&y);
    shape_err(|| {
        run(
            &[x.clone(), y.clone()],
            std::slice::from_ref(&out),
            &[&t(&[1, 3], vec![0.; 3]), &t(&[2, 1], vec![0.; 2])],
        )
    });
    // [2, 3] summed down to [1, 3]: column sums.
    let got = run(
        &[x, y],
        &[out],
        &[
            &t(&[2, 3], vec![1., 2., 3., 10., 20., 30.]),
            &t(&[1, 3], vec![0.; 3]),
        ],
    )
    .unwrap();
    assert_eq!(got[0].shape(), &[1, 3]);
    assert_eq!(got[0].data(), &[11., 22., 33.]);
}

#[test]
fn a_slice_whose_end_overflows_is_refused() {
    // Known dims: refused at build time.
    let k = c(&[4], vec![1., 2., 3., 4.]);
    let line = line!() + 1;
    let e = shape_err(|| Function::compile(&[], &[k.slice(0, usize::MAX, 2)]));
    assert_eq!(e.op, format!("slice(axis=0, {}..+2)", usize::MAX));
    assert_eq!(e.expected, format!("{}+2 to lie within 0..4", usize::MAX));
    assert_eq!(e.line, line);
    // Unknown dims: no size can hold it, so it is refused at build time too.
    let x = Expr::input("x", 1);
    shape_err(|| Function::compile(std::slice::from_ref(&x), &[x.slice(0, 2, usize::MAX)]));
    // `split` with sizes whose running sum overflows.
    let parts = k.split(0, &[1, usize::MAX, 1]);
    assert_eq!(parts.len(), 3);
    shape_err(|| Function::compile(&[], &parts[1..]));
    shape_err(|| Function::compile(&[], &parts[2..]));
    // In range it still slices.
    let got = run(&[], &[k.slice(0, 1, 2)], &[]).unwrap();
    assert_eq!(got[0].data(), &[2., 3.]);
}

#[test]
fn scatter_checks_the_targets_rows_and_the_label_count() {
    let (g, labels) = (c(&[2], vec![5., 7.]), c(&[2], vec![1., 0.]));
    // More rows in the target than labels (used to fill only the first rows).
    let wide = c(&[3, 2], vec![0.; 6]);
    let line = line!() + 1;
    let node = Expr::apply(Op::Scatter, &[g.clone(), labels.clone(), wide]);
    let e = shape_err(|| Function::compile(&[], &[node]));
    assert_eq!(e.op, "scatter");
    assert_eq!(e.shapes, [known(&[2]), known(&[2]), known(&[3, 2])]);
    assert_eq!(
        e.expected,
        "one value and one label per row of the target matrix"
    );
    assert_eq!(e.line, line);
    // Fewer rows (used to panic).
    let narrow = c(&[1, 2], vec![0.; 2]);
    let node = Expr::apply(Op::Scatter, &[g.clone(), labels.clone(), narrow]);
    shape_err(|| Function::compile(&[], &[node]));
    // Known only at run time.
    let (gi, li, like) = (
        Expr::input("g", 1),
        Expr::labels("l"),
        Expr::input("like", 2),
    );
    let node = Expr::apply(Op::Scatter, &[gi.clone(), li.clone(), like.clone()]);
    let ins = [gi, li, like];
    shape_err(|| {
        run(
            &ins,
            std::slice::from_ref(&node),
            &[
                &t(&[2], vec![5., 7.]),
                &t(&[2], vec![1., 0.]),
                &t(&[3, 2], vec![0.; 6]),
            ],
        )
    });
    let got = run(
        &ins,
        &[node],
        &[
            &t(&[2], vec![5., 7.]),
            &t(&[2], vec![1., 0.]),
            &t(&[2, 2], vec![0.; 4]),
        ],
    )
    .unwrap();
    assert_eq!(got[0].data(), &[0., 5., 7., 0.]);
}

#[test]
fn slice_grad_checks_every_dim_off_its_axis() {
    let op = Op::SliceGrad { axis: 1, start: 1 };
    // g [2, 1] placed at column 1 of a [3, 3] target: the rows disagree.
    let g = c(&[2, 1], vec![5., 7.]);
    let like = c(&[3, 3], vec![0.; 9]);
    let line = line!() + 1;
    let node = Expr::apply(op.clone(), &[g.clone(), like]);
    let e = shape_err(|| Function::compile(&[], &[node]));
    assert_eq!(e.op, "slice_grad(axis=1, at=1)");
    assert_eq!(e.shapes, [known(&[2, 1]), known(&[3, 3])]);
    assert_eq!(
        e.expected,
        "a slice with the target's dims off axis 1 that fits the target along it"
    );
    assert_eq!(e.line, line);
    // More rows in g than in the target (used to panic).
    let like = c(&[1, 3], vec![0.; 3]);
    shape_err(|| Function::compile(&[], &[Expr::apply(op.clone(), &[g.clone(), like])]));
    // The slice would end past the target.
    let like = c(&[2, 1], vec![0.; 2]);
    shape_err(|| Function::compile(&[], &[Expr::apply(op.clone(), &[g.clone(), like])]));
    // An overflowing start.
    let far = Op::SliceGrad {
        axis: 1,
        start: usize::MAX,
    };
    let like = c(&[2, 3], vec![0.; 6]);
    shape_err(|| Function::compile(&[], &[Expr::apply(far, &[g.clone(), like])]));
    // Known only at run time.
    let (gi, li) = (Expr::input("g", 2), Expr::input("like", 2));
    let node = Expr::apply(op, &[gi.clone(), li.clone()]);
    let ins = [gi, li];
    shape_err(|| {
        run(
            &ins,
            std::slice::from_ref(&node),
            &[&t(&[2, 1], vec![5., 7.]), &t(&[3, 3], vec![0.; 9])],
        )
    });
    let got = run(
        &ins,
        &[node],
        &[&t(&[2, 1], vec![5., 7.]), &t(&[2, 3], vec![0.; 6])],
    )
    .unwrap();
    assert_eq!(got[0].data(), &[0., 5., 0., 0., 7., 0.]);
}

#[test]
fn max_and_mean_of_nothing_are_errors_and_sum_of_nothing_is_zero() {
    let empty = c(&[0], vec![]);
    let line = line!() + 1;
    let e = shape_err(|| Function::compile(&[], &[empty.max()]));
    assert_eq!(e.op, "max");
    assert_eq!(
        e.expected,
        "a non-empty operand (max and mean of nothing are undefined)"
    );
    assert_eq!(e.line, line);
    shape_err(|| Function::compile(&[], &[empty.mean()]));
    // Over an axis, known at build time.
    let rows = c(&[2, 0], vec![]);
    shape_err(|| Function::compile(&[], &[rows.max_axis(1, false)]));
    shape_err(|| Function::compile(&[], &[rows.mean_axis(-1, true)]));
    // Known only at run time: an empty batch.
    let x = Expr::input("x", 2);
    let zero_rows = t(&[0, 3], vec![]);
    for out in [
        x.max(),
        x.mean(),
        x.max_axis(0, false),
        x.mean_axis(0, false),
    ] {
        shape_err(|| run(std::slice::from_ref(&x), &[out], &[&zero_rows]));
    }
    // Sum of nothing is 0; reducing a non-empty axis of an empty batch gives an empty result.
    let got = run(
        std::slice::from_ref(&x),
        &[x.sum(), x.sum_axis(0, false), x.max_axis(1, false)],
        &[&zero_rows],
    )
    .unwrap();
    assert_eq!(got[0].data(), &[0.]);
    assert_eq!(got[1].data(), &[0., 0., 0.]);
    assert_eq!(got[2].shape(), &[0]);
}

#[test]
fn clip_bounds_must_be_ordered_numbers() {
    let x = Expr::input("x", 1);
    let line = line!() + 1;
    let bad = x.clip(1.0, -1.0);
    let e = shape_err(|| bad.ty().cloned()); // refused while building
    assert_eq!(e.op, "clip(1, -1)");
    assert_eq!(e.expected, "bounds with lo <= hi, got lo = 1, hi = -1");
    assert_eq!(e.line, line);
    shape_err(|| x.clip(f32::NAN, 1.0).ty().cloned());
    shape_err(|| x.clip(0.0, f32::NAN).ty().cloned());
    // Equal and infinite bounds are fine.
    let outs = [x.clip(2.0, 2.0), x.clip(f32::NEG_INFINITY, 0.5)];
    let got = run(std::slice::from_ref(&x), &outs, &[&t(&[2], vec![-3., 4.])]).unwrap();
    assert_eq!(got[0].data(), &[2., 2.]);
    assert_eq!(got[1].data(), &[-3., 0.5]);
}

#[test]
fn element_counts_that_overflow_are_refused_by_the_rules() {
    let x = Expr::input_with_dims("x", &[Some(1 << 40), Some(1 << 40)]);
    let e = shape_err(|| x.reshape(&[-1]).ty().cloned());
    assert_eq!(e.expected, "an operand whose element count fits in memory");
    let half = 1usize << 63;
    let y = Expr::input_with_dims("y", &[Some(half)]);
    shape_err(|| Expr::concat(&[y.clone(), y.clone()], 0).ty().cloned());
    shape_err(|| y.reshape(&[1 << 62, 1 << 62]).ty().cloned());
}

#[test]
fn pick_and_one_hot_check_their_dims() {
    let x = c(&[2, 3], vec![0.; 6]);
    // Labels for three rows of a two-row matrix.
    shape_err(|| x.pick(&c(&[3], vec![0.; 3])).ty().cloned());
    // A one-hot of one row per label; a matrix of labels is refused.
    shape_err(|| c(&[2, 1], vec![0.; 2]).one_hot(3).ty().cloned());
    let got = run(&[], &[x.pick(&c(&[2], vec![2., 0.]))], &[]).unwrap();
    assert_eq!(got[0].data(), &[0., 0.]);
}

mod random {
    //! Random shape pairs against an independent reference of numpy's broadcasting rule: a
    //! pair that the reference accepts gives the reference's values, any other pair a shape
    //! error, and neither ever panics, whether the dims are known at build time (constants)
    //! or only at run time (inputs).

    use super::*;
    use proptest::prelude::*;

    /// Whether `from` broadcasts to `to`, written from numpy's definition.
    fn fits(from: &[usize], to: &[usize]) -> bool {
        from.len() <= to.len()
            && (0..from.len()).all(|i| {
                let (f, t) = (from[from.len() - 1 - i], to[to.len() - 1 - i]);
                f == 1 || f == t
            })
    }

    /// For each flat index of `to`, the flat index of `from` it reads when broadcast.
    fn source_index(from: &[usize], to: &[usize]) -> Vec<usize> {
        let n: usize = to.iter().product();
        (0..n)
            .map(|flat| {
                let (mut rest, mut src, mut stride) = (flat, 0, 1);
                for d in (0..to.len()).rev() {
                    let i = rest % to[d];
                    rest /= to[d];
                    if let Some(fd) = (d + from.len()).checked_sub(to.len()).map(|k| from[k]) {
                        src += if fd == 1 { 0 } else { i * stride };
                        stride *= fd;
                    }
                }
                src
            })
            .collect()
    }

    fn shape() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(0usize..4, 0..4)
    }

    /// A tensor of `shape` holding 1, 2, 3, …
    fn counting(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        t(shape, (1..=n).map(|v| v as f32).collect())
    }

    /// Builds `op(a, b)` from constants or from inputs and runs it.
    fn apply(op: Op, a: &Tensor, b: &Tensor, as_inputs: bool) -> tape::Result<Vec<Tensor>> {
        if as_inputs {
            let (x, y) = (Expr::input("a", a.rank()), Expr::input("b", b.rank()));
            let out = Expr::apply(op, &[x.clone(), y.clone()]);
            run(&[x, y], &[out], &[a, b])
        } else {
            let out = Expr::apply(op, &[Expr::constant(a.clone()), Expr::constant(b.clone())]);
            run(&[], &[out], &[])
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn broadcast_like_matches_numpy(a in shape(), b in shape(), as_inputs: bool) {
            let (x, like) = (counting(&a), counting(&b));
            let op = Op::BroadcastLike { mean: false };
            let got = catch_unwind(AssertUnwindSafe(|| apply(op, &x, &like, as_inputs)));
            let got = got.map_err(|_| TestCaseError::fail("panicked"))?;
            if fits(&a, &b) {
                let want: Vec<f32> = source_index(&a, &b).iter().map(|&i| x.data()[i]).collect();
                let got = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got[0].shape(), b.as_slice());
                prop_assert_eq!(got[0].data(), want.as_slice());
            } else {
                prop_assert!(matches!(got, Err(Error::Shape { .. })), "{:?}", got.map(|_| ()));
            }
        }

        #[test]
        fn sum_like_matches_numpy(g in shape(), l in shape(), as_inputs: bool) {
            let (gt, like) = (counting(&g), counting(&l));
            let op = Op::SumLike { mean: false };
            let got = catch_unwind(AssertUnwindSafe(|| apply(op, &gt, &like, as_inputs)));
            let got = got.map_err(|_| TestCaseError::fail("panicked"))?;
            if fits(&l, &g) {
                let mut want = vec![0.0f64; l.iter().product()];
                for (k, &i) in source_index(&l, &g).iter().enumerate() {
                    want[i] += f64::from(gt.data()[k]);
                }
                let got = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got[0].shape(), l.as_slice());
                let got: Vec<f64> = got[0].data().iter().map(|&v| f64::from(v)).collect();
                prop_assert_eq!(got, want);
            } else {
                prop_assert!(matches!(got, Err(Error::Shape { .. })), "{:?}", got.map(|_| ()));
            }
        }
    }
}
