//! A compiled function called again on shapes it has seen performs no heap allocation at all.
//! Counted with a global allocator that tallies allocations made by the current thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use tape::testing::normal_from;
use tape::{grad, Expr, Function, Param, Rng, Tensor};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn a_training_step_on_seen_shapes_allocates_nothing() {
    let mut rng = Rng::new(5);
    let x = Expr::input("x", 2);
    let y = Expr::labels("y");
    let w1 = Param::new("hid1.w", normal_from(&mut rng, &[20, 16], 0.1));
    let b1 = Param::new("hid1.b", Tensor::zeros(&[16]));
    let w2 = Param::new("out.w", normal_from(&mut rng, &[16, 4], 0.1));
    let b2 = Param::new("out.b", Tensor::zeros(&[4]));
    // Dropout and a sigmoid/tanh branch too, so random streams and several kernels are covered.
    let h = (x.matmul(&w1.expr()) + b1.expr()).relu().dropout(0.2, 11);
    let h = &h + &(h.tanh() * 0.1);
    let logits = h.matmul(&w2.expr()) + b2.expr();
    let loss = -logits.log_softmax().pick(&y).mean() + w1.expr().square().sum() * 1e-4;
    let params = [w1, b1, w2, b2];
    let exprs: Vec<Expr> = params.iter().map(Param::expr).collect();
    let grads = grad(&loss, &exprs).unwrap();
    let updates: Vec<(Param, Expr)> = params
        .iter()
        .zip(&exprs)
        .zip(&grads)
        .map(|((p, e), g)| (p.clone(), e - &(g * 0.05)))
        .collect();
    let mut f =
        Function::compile_with_updates(&[x, y], &[loss, logits.softmax()], &updates).unwrap();

    let xs = normal_from(&mut rng, &[8, 20], 0.1);
    let ys = Tensor::vector(&[0., 1., 2., 3., 3., 2., 1., 0.]);
    let args = [xs.view(), ys.view()];
    f.run(&args).unwrap(); // first call on these shapes: plans and allocates its workspace
    let before = allocations();
    for _ in 0..10 {
        f.run(&args).unwrap();
    }
    let during = allocations() - before;
    assert_eq!(
        during,
        0,
        "{during} allocations in 10 calls on seen shapes\n{}",
        f.debug_plan()
    );
    assert!(f.output(0).unwrap().data()[0].is_finite());
}

#[test]
fn a_scan_training_step_on_seen_shapes_allocates_nothing() {
    // An RNN over masked sequences, trained by its BPTT gradient: the loop's nested plans
    // and step buffers are made with the plan, so repeated calls reuse them.
    use tape::scan::{scan, Scan};
    let mut rng = Rng::new(6);
    let x = Expr::input("x", 3);
    let m = Expr::input("m", 2);
    let h0 = Expr::input("h0", 2);
    let w = Param::new("rnn.w", normal_from(&mut rng, &[4, 5], 0.3));
    let u = Param::new("rnn.u", normal_from(&mut rng, &[5, 5], 0.3));
    let b = Param::new("rnn.b", Tensor::zeros(&[5]));
    let params = [w, u, b];
    let exprs: Vec<Expr> = params.iter().map(Param::expr).collect();
    let out = scan(
        Scan {
            sequences: std::slice::from_ref(&x),
            states: std::slice::from_ref(&h0),
            non_sequences: &exprs,
            mask: Some(&m),
            ..Scan::default()
        },
        |s| {
            Ok(vec![
                (s[0].matmul(&s[2]) + s[1].matmul(&s[3]) + &s[4]).tanh()
            ])
        },
    )
    .unwrap();
    let loss = out.states[0].square().mean() + out.finals[0].sum();
    let grads = grad(&loss, &exprs).unwrap();
    let updates: Vec<(Param, Expr)> = params
        .iter()
        .zip(&exprs)
        .zip(&grads)
        .map(|((p, e), g)| (p.clone(), e - &(g * 0.05)))
        .collect();
    let mut f = Function::compile_with_updates(&[x, m, h0], &[loss], &updates).unwrap();

    let xs = normal_from(&mut rng, &[3, 6, 4], 1.0);
    let ms = Tensor::from_fn(&[3, 6], |i| if i[1] < 6 - i[0] { 1.0 } else { 0.0 });
    let hs = Tensor::zeros(&[3, 5]);
    let args = [xs.view(), ms.view(), hs.view()];
    f.run(&args).unwrap();
    let before = allocations();
    for _ in 0..10 {
        f.run(&args).unwrap();
    }
    let during = allocations() - before;
    assert_eq!(
        during,
        0,
        "{during} allocations in 10 calls on seen shapes\n{}",
        f.debug_plan()
    );
    assert!(f.output(0).unwrap().data()[0].is_finite());
    // The steps' products read their weights packed once per scan run, into buffers of the
    // plan: `w` and `u` forward, and `uᵀ` in the backward step.
    let plan = f.debug_plan();
    let packs = plan.lines().filter(|l| l.contains("<- pack B ")).count();
    let packed = plan.lines().filter(|l| l.contains(", packed buf")).count();
    assert!(packs >= 3 && packed >= packs, "{plan}");
    let transposed = |l: &&str| l.contains("<- pack B 5x5 (arg:#") && l.ends_with("matmul(Bᵀ)");
    assert!(plan.lines().any(|l| transposed(&l)), "{plan}");
}
