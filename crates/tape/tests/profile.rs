//! `tape::profile`: per-kind wall time of compiled functions, only while enabled. Its own test
//! binary, since the totals are process-wide.

use tape::{profile, Expr, Function, Tensor};

#[test]
fn counts_each_kind_while_enabled_and_nothing_otherwise() {
    let x = Expr::input("x", 2);
    let y = x.matmul(&x).relu().sum();
    let mut f = Function::compile(std::slice::from_ref(&x), &[y]).unwrap();
    let a = Tensor::ones(&[64, 64]);

    profile::reset();
    f.run(&[a.view()]).unwrap();
    assert_eq!(profile::take(), vec![], "disabled: nothing recorded");

    profile::set_enabled(true);
    assert!(profile::is_enabled());
    for _ in 0..3 {
        f.run(&[a.view()]).unwrap();
    }
    profile::set_enabled(false);
    let entries = profile::take();
    let gemm = entries.iter().find(|e| e.kind == "gemm").unwrap();
    // One product per run, three runs.
    assert_eq!(gemm.calls, 3, "{entries:?}");
    assert!(gemm.time.as_nanos() > 0);
    assert!(entries.iter().any(|e| e.kind == "reduce"), "{entries:?}");
    assert!(
        entries.windows(2).all(|w| w[0].time >= w[1].time),
        "longest first: {entries:?}"
    );
    // `take` reset the totals.
    assert_eq!(profile::take(), vec![]);
}
