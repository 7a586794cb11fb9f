//! `Function::run_staged`: stages are handed over in the middle of a run, only once their
//! outputs are final and their parameter is read by no remaining instruction, so a receiver that
//! overwrites the parameter then changes none of the run's results.

use tape::{grad, Error, Expr, Function, Param, Stage, Tensor, TensorView};

/// `x·a` for row-major `x` (r×k) and `a` (k×c).
fn matmul(x: &[f32], a: &[f32], r: usize, k: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            out[i * c + j] = (0..k).map(|l| x[i * k + l] * a[l * c + j]).sum();
        }
    }
    out
}

/// The transpose of row-major `x` (r×c).
fn transpose(x: &[f32], r: usize, c: usize) -> Vec<f32> {
    (0..c * r).map(|t| x[(t % r) * c + t / r]).collect()
}

/// A two-layer net, loss = Σ (relu(x·w1)·w2)², with its gradients by hand: the backward pass
/// needs w2 (for the gradient below it) after w2's own gradient is final.
struct Net {
    x: Vec<f32>,
    w1: Vec<f32>,
    w2: Vec<f32>,
}

const R: usize = 2;
const K: usize = 3;
const H: usize = 4;
const C: usize = 2;

impl Net {
    fn new() -> Net {
        let v = |n: usize, s: f32| (0..n).map(|i| ((i * 7 % 11) as f32 - 5.0) * s).collect();
        Net {
            x: v(R * K, 0.3),
            w1: v(K * H, 0.2),
            w2: v(H * C, 0.25),
        }
    }

    /// (loss, ∂loss/∂w1, ∂loss/∂w2), by the chain rule written out.
    fn by_hand(&self) -> (f32, Vec<f32>, Vec<f32>) {
        let z = matmul(&self.x, &self.w1, R, K, H);
        let h: Vec<f32> = z.iter().map(|&v| v.max(0.0)).collect();
        let out = matmul(&h, &self.w2, R, H, C);
        let loss = out.iter().map(|v| v * v).sum();
        let d_out: Vec<f32> = out.iter().map(|v| 2.0 * v).collect();
        let g2 = matmul(&transpose(&h, R, H), &d_out, H, R, C);
        let dh = matmul(&d_out, &transpose(&self.w2, H, C), R, C, H);
        let dz: Vec<f32> = dh
            .iter()
            .zip(&z)
            .map(|(&d, &z)| if z > 0.0 { d } else { 0.0 })
            .collect();
        let g1 = matmul(&transpose(&self.x, R, K), &dz, K, R, H);
        (loss, g1, g2)
    }
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-5 * (1.0 + y.abs()))
}

#[test]
fn a_stage_is_handed_over_before_the_end_of_the_run() {
    let net = Net::new();
    let x = Expr::input("x", 2);
    let w1 = Param::new("w1", Tensor::new(&[K, H], net.w1.clone()).unwrap());
    let w2 = Param::new("w2", Tensor::new(&[H, C], net.w2.clone()).unwrap());
    let out = x.matmul(&w1.expr()).relu().matmul(&w2.expr());
    let loss = out.square().sum();
    let grads = grad(&loss, &[w1.expr(), w2.expr()]).unwrap();
    let mut f = Function::compile(&[x], &[loss, grads[0].clone(), grads[1].clone()]).unwrap();
    // w2's stage first: if w1's comes back before it, it was handed over strictly earlier (the
    // backward pass makes w1's gradient first, w2's last).
    let stages = [
        Stage {
            outputs: vec![2],
            overwrites: Some(w2.clone()),
        },
        Stage {
            outputs: vec![1, 0],
            overwrites: Some(w1.clone()),
        },
    ];
    let xs = Tensor::new(&[R, K], net.x.clone()).unwrap();
    let (loss_ref, g1_ref, g2_ref) = net.by_hand();
    for _ in 0..2 {
        w1.set(Tensor::new(&[K, H], net.w1.clone()).unwrap())
            .unwrap();
        let mut order = Vec::new();
        let mut ready = |s: usize, views: &[TensorView<'_>]| {
            order.push(s);
            if s == 1 {
                assert!(close(views[0].data(), &g1_ref), "w1's gradient");
                assert!(close(views[1].data(), &[loss_ref]), "the loss");
                // Spoil w1: nothing still to run may see it.
                w1.update(|d| d.iter_mut().for_each(|v| *v = 100.0));
            }
        };
        f.run_staged(&[xs.view()], &stages, &mut ready).unwrap();
        assert_eq!(order, [1, 0], "w1 is handed over before the end of the run");
        let g2 = f.output(2).unwrap().to_tensor();
        assert!(
            close(g2.data(), &g2_ref),
            "w2's gradient {:?}, by hand {g2_ref:?}",
            g2.data()
        );
        assert!(close(&f.output(0).unwrap().data()[..1], &[loss_ref]));
    }
}

#[test]
fn a_parameter_is_handed_over_only_after_its_last_reader() {
    // loss = Σ (v·w·x)²: ∂/∂v = 2(vwx)·w·x reads w and ∂/∂w = 2(vwx)·v·x reads v, so whichever
    // gradient is made first, its parameter is still read by the other one.
    let (xv, vv, wv) = (
        [1.0f32, -2.0, 0.5],
        [0.5f32, 1.5, -1.0],
        [2.0f32, 0.25, 3.0],
    );
    let x = Expr::input("x", 1);
    let v = Param::new("v", Tensor::vector(&vv));
    let w = Param::new("w", Tensor::vector(&wv));
    let loss = (&(&v.expr() * &w.expr()) * &x).square().sum();
    let grads = grad(&loss, &[v.expr(), w.expr()]).unwrap();
    let mut f = Function::compile(&[x], &[grads[0].clone(), grads[1].clone()]).unwrap();
    let by_hand = |of: &[f32; 3]| -> Vec<f32> {
        (0..3)
            .map(|i| 2.0 * vv[i] * wv[i] * xv[i] * of[i] * xv[i])
            .collect()
    };
    let (gv_ref, gw_ref) = (by_hand(&wv), by_hand(&vv));
    let stages = [
        Stage {
            outputs: vec![0],
            overwrites: Some(v.clone()),
        },
        Stage {
            outputs: vec![1],
            overwrites: Some(w.clone()),
        },
    ];
    let xs = Tensor::vector(&xv);
    let mut ready = |s: usize, _: &[TensorView<'_>]| {
        // Spoil the parameter handed over: a later reader would compute with it.
        [&v, &w][s].update(|d| d.iter_mut().for_each(|e| *e = 1e3));
    };
    f.run_staged(&[xs.view()], &stages, &mut ready).unwrap();
    let (gv, gw) = (f.output(0).unwrap(), f.output(1).unwrap());
    assert!(close(gv.data(), &gv_ref), "{:?} vs {gv_ref:?}", gv.data());
    assert!(close(gw.data(), &gw_ref), "{:?} vs {gw_ref:?}", gw.data());
    assert_eq!(v.value().data(), &[1e3; 3]);
}

#[test]
fn a_stage_of_a_parameter_the_function_updates_is_refused() {
    let x = Expr::input("x", 1);
    let w = Param::new("w", Tensor::vector(&[1.0, 2.0]));
    let loss = (&w.expr() * &x).sum();
    let step = &w.expr() * 0.5;
    let mut f = Function::compile_with_updates(&[x], &[loss], &[(w.clone(), step)]).unwrap();
    let xs = Tensor::vector(&[3.0, 4.0]);
    let stages = [Stage {
        outputs: vec![0],
        overwrites: Some(w.clone()),
    }];
    let err = f
        .run_staged(&[xs.view()], &stages, &mut |_, _| {})
        .unwrap_err();
    assert!(matches!(err, Error::Input { .. }), "{err}");
    assert!(
        err.to_string().contains("`w`, which the function updates"),
        "{err}"
    );
    let out_of_range = [Stage {
        outputs: vec![1],
        overwrites: None,
    }];
    let err = f
        .run_staged(&[xs.view()], &out_of_range, &mut |_, _| {})
        .unwrap_err();
    assert!(err.to_string().contains("output indices below 1"), "{err}");
    assert_eq!(w.value().data(), &[1.0, 2.0], "nothing ran");
}
