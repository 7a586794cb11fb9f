//! How a scan's step body is planned: instructions that read only non-sequences (weights) and
//! constants are hoisted out of the loop and run once per scan run, and so is the packing of
//! the products' loop-invariant B operands, with the same values as when every step computed
//! them (checked bit for bit against the hand-unrolled graph, where each step is an ordinary
//! part of one flat plan).

use tape::scan::{scan, Scan};
use tape::testing::count_ops;
use tape::{Expr, Function, Rng, Tensor};

const BATCH: usize = 2;
const TIME: usize = 5;
const D: usize = 3;

/// A step whose weights go through a slice, a transpose and a sigmoid before use: all three
/// depend on the non-sequences only.
fn step(x_t: &Expr, h: &Expr, v: &Expr, u: &Expr, b: &Expr) -> Expr {
    let first = v.slice(0, 0, D); // the first D rows of v (2D × D)
    let ut = u.t().relu();
    let gate = b.sigmoid();
    ((x_t + h.matmul(&first)) * gate + h.matmul(&ut) * 0.5).tanh()
}

/// The inputs, the scan's final state, and the same loop written out step by step.
fn rnn() -> (Vec<Expr>, Expr, Expr) {
    let x = Expr::input_with_dims("x", &[Some(BATCH), Some(TIME), Some(D)]);
    let h0 = Expr::input_with_dims("h0", &[Some(BATCH), Some(D)]);
    let v = Expr::input_with_dims("v", &[Some(2 * D), Some(D)]);
    let u = Expr::input_with_dims("u", &[Some(D), Some(D)]);
    let b = Expr::input_with_dims("b", &[Some(D)]);
    let out = scan(
        Scan {
            sequences: std::slice::from_ref(&x),
            states: std::slice::from_ref(&h0),
            non_sequences: &[v.clone(), u.clone(), b.clone()],
            ..Scan::default()
        },
        |s| Ok(vec![step(&s[0], &s[1], &s[2], &s[3], &s[4])]),
    )
    .unwrap();
    let mut h = h0.clone();
    for t in 0..TIME {
        let x_t = x.slice(1, t, 1).reshape(&[BATCH as isize, D as isize]);
        h = step(&x_t, &h, &v, &u, &b);
    }
    (vec![x, h0, v, u, b], out.finals[0].clone(), h)
}

fn normal(shape: &[usize], seed: u64) -> Tensor {
    let mut t = Tensor::zeros(shape);
    Rng::new(seed).fill_normal(t.data_mut(), 0.0, 1.0);
    t
}

fn args() -> Vec<Tensor> {
    vec![
        normal(&[BATCH, TIME, D], 1),
        normal(&[BATCH, D], 2),
        normal(&[2 * D, D], 3),
        normal(&[D, D], 4),
        normal(&[D], 5),
    ]
}

/// The lines of a nested body's plan between `from` and the next heading (or the body's end).
fn section<'a>(plan: &'a str, from: &str) -> Vec<&'a str> {
    plan.lines()
        .skip_while(|l| !l.ends_with(from))
        .skip(1)
        .take_while(|l| l.starts_with("    │ buf"))
        .collect()
}

#[test]
fn weight_only_instructions_run_once_per_scan_with_the_same_bits() {
    let (inputs, scanned, unrolled) = rnn();
    let args = args();
    let refs: Vec<&Tensor> = args.iter().collect();
    let mut f = Function::compile(&inputs, &[scanned]).unwrap();
    let got = f.call(&refs).unwrap();
    let mut g = Function::compile(&inputs, &[unrolled]).unwrap();
    let want = g.call(&refs).unwrap();
    let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got[0]), bits(&want[0]));

    let plan = f.debug_plan();
    let once = section(&plan, "once per scan run:");
    let every = section(&plan, "every step:");
    for op in ["slice", "transpose", "relu", "sigmoid"] {
        assert_eq!(count_ops(once.iter().copied(), op), 1, "{op} once\n{plan}");
        assert_eq!(
            count_ops(every.iter().copied(), op),
            0,
            "{op} per step\n{plan}"
        );
    }
    // Both products read a weight: their B is packed once, and the steps read it packed.
    let packs = once.iter().filter(|l| l.contains("<- pack B 3x3")).count();
    assert_eq!(packs, 2, "{plan}");
    let packed = every.iter().filter(|l| l.contains("gemm 2x3x3 (")).count();
    let read_packed = every.iter().filter(|l| l.contains(", packed buf")).count();
    assert_eq!((packed, read_packed), (2, 2), "{plan}");
    // Left per step: two products, the sum, the gate product, the scaled product, their
    // sum and the tanh, at most (rewrites may fuse some of them).
    assert!(!every.is_empty() && every.len() <= 7, "{plan}");
    // A second call recomputes the hoisted values from the new weights.
    let mut args2 = args.clone();
    args2[2] = normal(&[2 * D, D], 6);
    args2[4] = normal(&[D], 7);
    let refs: Vec<&Tensor> = args2.iter().collect();
    let got = f.call(&refs).unwrap();
    let want = g.call(&refs).unwrap();
    assert_eq!(bits(&got[0]), bits(&want[0]));
}

#[test]
fn random_ops_on_weights_stay_in_the_step() {
    // A dropout mask of a non-sequence draws anew at each step: hoisting it would repeat one
    // mask. With p = 0.5 over 64 values, two steps share a mask with probability 2⁻⁶⁴.
    let x = Expr::input_with_dims("x", &[Some(1), Some(2), Some(1)]);
    let w = Expr::input_with_dims("w", &[Some(1), Some(64)]);
    let h0 = Expr::input_with_dims("h0", &[Some(1), Some(1)]);
    let out = scan(
        Scan {
            sequences: std::slice::from_ref(&x),
            states: std::slice::from_ref(&h0),
            non_sequences: std::slice::from_ref(&w),
            ..Scan::default()
        },
        |s| Ok(vec![s[1].clone(), s[2].dropout(0.5, 3)]),
    )
    .unwrap();
    let mut f = Function::compile(&[x, h0, w], &[out.outputs[0].clone()]).unwrap();
    let r = f
        .call(&[
            &Tensor::zeros(&[1, 2, 1]),
            &Tensor::zeros(&[1, 1]),
            &Tensor::ones(&[1, 64]),
        ])
        .unwrap();
    let (first, second) = r[0].data().split_at(64);
    assert_ne!(first, second, "{}", f.debug_plan());
}

/// The gradients (with respect to `x` and `w`) of an LSTM-like scan, its gates slices of
/// z = x_t + h·w, compiled through the scan and through the loop written out step by step,
/// both run on the same arguments: (scan's function, its results, unrolled results).
fn gated_gradients() -> (Function, Vec<Tensor>, Vec<Tensor>) {
    let x = Expr::input_with_dims("x", &[Some(BATCH), Some(TIME), Some(2 * D)]);
    let h0 = Expr::input_with_dims("h0", &[Some(BATCH), Some(D)]);
    let w = Expr::input_with_dims("w", &[Some(D), Some(2 * D)]);
    let step = |x_t: &Expr, h: &Expr, w: &Expr| {
        let z = (x_t + h.matmul(w)).split(1, &[D, D]);
        z[0].tanh() * z[1].sigmoid()
    };
    let out = scan(
        Scan {
            sequences: std::slice::from_ref(&x),
            states: std::slice::from_ref(&h0),
            non_sequences: std::slice::from_ref(&w),
            ..Scan::default()
        },
        |s| Ok(vec![step(&s[0], &s[1], &s[2])]),
    )
    .unwrap();
    let mut h = h0.clone();
    for t in 0..TIME {
        let x_t = x.slice(1, t, 1).reshape(&[BATCH as isize, 2 * D as isize]);
        h = step(&x_t, &h, &w);
    }
    let inputs = [x.clone(), h0.clone(), w.clone()];
    let wrt = [x.clone(), w.clone()];
    let scanned = tape::grad(&(out.finals[0].clone() * 1.5).sum(), &wrt).unwrap();
    let unrolled = tape::grad(&(h * 1.5).sum(), &wrt).unwrap();
    let args = [
        normal(&[BATCH, TIME, 2 * D], 11),
        normal(&[BATCH, D], 12),
        normal(&[D, 2 * D], 13),
    ];
    let refs: Vec<&Tensor> = args.iter().collect();
    let mut f = Function::compile(&inputs, &scanned).unwrap();
    let got = f.call(&refs).unwrap();
    let want = Function::compile(&inputs, &unrolled)
        .unwrap()
        .call(&refs)
        .unwrap();
    (f, got, want)
}

fn assert_near(got: &[Tensor], want: &[Tensor]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.shape(), w.shape());
        for (a, b) in g.data().iter().zip(w.data()) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}

/// The plan's scan loops: (forward, reverse).
fn scan_lines(plan: &str) -> (&str, &str) {
    let scans: Vec<&str> = plan.lines().filter(|l| l.contains("<- scan ")).collect();
    assert_eq!(scans.len(), 2, "{plan}");
    let reverse = scans.iter().find(|l| l.contains("reversed")).unwrap();
    let forward = scans.iter().find(|l| !l.contains("reversed")).unwrap();
    (forward, reverse)
}

#[test]
fn a_sequence_the_reverse_scan_reads_only_for_its_shape_is_not_copied_per_step() {
    // The reverse step reads the kept gates, and x_t only as the shape of z's gradient (it
    // stands in for z), so that loop copies no slice of x.
    let (f, got, want) = gated_gradients();
    assert_near(&got, &want);
    let plan = f.debug_plan();
    let (forward, reverse) = scan_lines(&plan);
    assert!(reverse.contains("arg:x (shape only)"), "{plan}");
    assert!(!forward.contains("(shape only)"), "{plan}");
}

#[test]
fn the_reverse_scan_reads_the_kept_values_in_place() {
    // The values the forward loop keeps (its gates, its entering states) are ranges of its
    // packed output, which the reverse loop reads there: no copy of each out of the pack.
    let (f, got, want) = gated_gradients();
    assert_near(&got, &want);
    let plan = f.debug_plan();
    assert!(!plan.contains("scan part"), "{plan}");
    let (_, reverse) = scan_lines(&plan);
    let ranges = reverse.matches("..").count();
    assert!(ranges >= 2, "{plan}");
}
