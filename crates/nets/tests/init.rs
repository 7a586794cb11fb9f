//! Weight and bias initialisation: the statistics theanets' own tests check (sparsity, diagonal,
//! spectral radius, bias moments), the Glorot default, determinism of the streams, and the errors.

use nets::init::{random_matrix, random_vector, BiasInit, WeightInit};
use nets::Error;
use tape::{Rng, Tensor};

fn rng(name: &str) -> Rng {
    Rng::from_name(5, name)
}

/// Mean and (population) standard deviation, in f64.
fn moments(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

fn zero_fraction(t: &Tensor) -> f64 {
    t.data().iter().filter(|&&x| x == 0.0).count() as f64 / t.len() as f64
}

fn at(t: &Tensor, i: usize, j: usize) -> f32 {
    t.data()[i * t.shape()[1] + j]
}

/// Bounds on the largest singular value of `t` that do not use power iteration: with `G = AᵀA`
/// (n × n) and `m = 2^s`, `λ₁ᵐ ≤ tr(Gᵐ) ≤ n·λ₁ᵐ`. `tr(Gᵐ)` comes from `s` squarings, each
/// normalised by its trace (the logarithm of the scale is carried separately), so nothing
/// overflows. With s = 16 the bracket is `n^(1/2^17)`, under 4e-5 relative for n ≤ 200.
fn singular_value_bracket(t: &Tensor) -> (f64, f64) {
    let (rows, cols) = (t.shape()[0], t.shape()[1]);
    let a: Vec<f64> = t.data().iter().map(|&x| f64::from(x)).collect();
    let n = cols;
    let mut g = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            g[i * n + j] = (0..rows).map(|r| a[r * cols + i] * a[r * cols + j]).sum();
        }
    }
    let trace = |m: &[f64]| (0..n).map(|i| m[i * n + i]).sum::<f64>();
    // Invariant: tr(G^(2^k)) = exp(log_tr) and g = G^(2^k) / tr(G^(2^k)).
    let tr0 = trace(&g);
    let mut log_tr = tr0.ln();
    g.iter_mut().for_each(|x| *x /= tr0);
    let s = 16;
    for _ in 0..s {
        let mut h = vec![0.0f64; n * n];
        for i in 0..n {
            for k in 0..n {
                let gik = g[i * n + k];
                for j in 0..n {
                    h[i * n + j] += gik * g[k * n + j];
                }
            }
        }
        let tr = trace(&h);
        log_tr = 2.0 * log_tr + tr.ln();
        g = h.into_iter().map(|x| x / tr).collect();
    }
    let m = f64::from(1u32 << s);
    let hi = (log_tr / m).exp();
    let lo = ((log_tr - (n as f64).ln()) / m).exp();
    // Bounds on λ₁ = σ₁².
    (lo.sqrt(), hi.sqrt())
}

/// A lower bound on the largest singular value, independent of the library: the best `‖Av‖/‖v‖`
/// over a few hundred steps of plain power iteration from a ones vector.
fn singular_value_lower_bound(t: &Tensor) -> f64 {
    let (rows, cols) = (t.shape()[0], t.shape()[1]);
    let a: Vec<f64> = t.data().iter().map(|&x| f64::from(x)).collect();
    let mut v = vec![1.0f64; cols];
    let mut best = 0.0f64;
    for _ in 0..300 {
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        let av: Vec<f64> = (0..rows)
            .map(|r| (0..cols).map(|c| a[r * cols + c] * v[c]).sum())
            .collect();
        best = best.max(av.iter().map(|x| x * x).sum::<f64>().sqrt());
        v = (0..cols)
            .map(|c| (0..rows).map(|r| a[r * cols + c] * av[r]).sum())
            .collect();
    }
    best
}

fn glorot(rows: usize, cols: usize) -> f64 {
    1.0 / ((rows + cols) as f64).sqrt()
}

#[test]
fn sparse_matrix_has_theanets_statistics() {
    // theanets' util test: random_matrix(1000, 200, sparsity=0.1) with its std of 1.
    let init = WeightInit {
        std: Some(1.0),
        sparsity: 0.1,
        ..WeightInit::default()
    };
    let w = random_matrix(1000, 200, &init, &mut rng("sparse")).unwrap();
    assert_eq!(w.shape(), &[1000, 200]);
    let (mean, std) = moments(w.data());
    assert!(mean.abs() < 1e-2, "mean {mean}");
    // The 200 diagonal entries are always kept: 0.1 · (1 − 200/200000) of entries are zeroed
    // in expectation, so the second moment is 0.9001 · std².
    let zeros = zero_fraction(&w);
    assert!((zeros - 0.0999).abs() < 0.01, "zero fraction {zeros}");
    assert!((std - 0.9001f64.sqrt()).abs() < 1e-2, "std {std}");
}

#[test]
fn sparse_matrix_with_the_glorot_default() {
    let init = WeightInit {
        sparsity: 0.1,
        ..WeightInit::default()
    };
    let w = random_matrix(1000, 200, &init, &mut rng("sparse-glorot")).unwrap();
    let (mean, std) = moments(w.data());
    assert!(mean.abs() < 1e-2, "mean {mean}");
    let zeros = zero_fraction(&w);
    assert!((zeros - 0.0999).abs() < 0.01, "zero fraction {zeros}");
    let expected = glorot(1000, 200) * 0.9001f64.sqrt();
    assert!(
        (std / expected - 1.0).abs() < 0.01,
        "std {std} vs {expected}"
    );
}

#[test]
fn sparsity_keeps_the_leading_diagonal() {
    for (rows, cols) in [(50, 80), (80, 50)] {
        let init = WeightInit {
            sparsity: 0.95,
            ..WeightInit::default()
        };
        let w = random_matrix(rows, cols, &init, &mut rng("very-sparse")).unwrap();
        assert!((0..rows.min(cols)).all(|i| at(&w, i, i) != 0.0));
        let zeros = zero_fraction(&w);
        assert!((zeros - 0.95).abs() < 0.02, "zero fraction {zeros}");
    }
}

#[test]
fn no_sparsity_means_no_zeros() {
    let w = random_matrix(100, 100, &WeightInit::default(), &mut rng("dense")).unwrap();
    assert_eq!(zero_fraction(&w), 0.0);
}

#[test]
fn glorot_is_the_default_std() {
    let w = random_matrix(400, 600, &WeightInit::default(), &mut rng("glorot")).unwrap();
    let (mean, std) = moments(w.data());
    let expected = glorot(400, 600); // 1/√1000
    assert!(mean.abs() < 1e-3, "mean {mean}");
    assert!(
        (std / expected - 1.0).abs() < 0.01,
        "std {std} vs {expected}"
    );
}

#[test]
fn mean_and_std_are_applied() {
    let init = WeightInit {
        mean: 3.0,
        std: Some(0.5),
        ..WeightInit::default()
    };
    let w = random_matrix(300, 300, &init, &mut rng("shifted")).unwrap();
    let (mean, std) = moments(w.data());
    assert!((mean - 3.0).abs() < 1e-2, "mean {mean}");
    assert!((std - 0.5).abs() < 1e-2, "std {std}");
}

#[test]
fn diagonal_overrides_everything() {
    // theanets: diagonal=0.9 gives 0.9 on the diagonal and a sum of 180 for 200 rows.
    for (rows, cols) in [(200, 300), (300, 200), (200, 200)] {
        let init = WeightInit {
            mean: 1.0,
            std: Some(2.0),
            sparsity: 0.5,
            radius: 3.0,
            diagonal: 0.9,
        };
        let mut r = rng("diagonal");
        let before = r.state();
        let w = random_matrix(rows, cols, &init, &mut r).unwrap();
        assert_eq!(w.shape(), &[rows, cols]);
        for i in 0..rows {
            for j in 0..cols {
                let expected = if i == j { 0.9f32 } else { 0.0 };
                assert_eq!(at(&w, i, j), expected, "({i}, {j}) of {rows}x{cols}");
            }
        }
        let sum: f64 = w.data().iter().map(|&x| f64::from(x)).sum();
        assert_eq!(sum, 200.0 * f64::from(0.9f32));
        assert!((sum - 180.0).abs() < 1e-4);
        assert_eq!(r.state(), before, "a diagonal matrix draws nothing");
    }
    let neg = WeightInit {
        diagonal: -2.0,
        ..WeightInit::default()
    };
    let w = random_matrix(3, 2, &neg, &mut rng("neg")).unwrap();
    assert_eq!(w.data(), &[-2.0, 0.0, 0.0, -2.0, 0.0, 0.0]);
}

#[test]
fn radius_sets_the_largest_singular_value() {
    // Tall, square, wide (the library iterates on the smaller side, so both orientations), and
    // sparse with a mean.
    let cases = [
        (200, 100, WeightInit::default()),
        (64, 64, WeightInit::default()),
        (60, 150, WeightInit::default()),
        (
            120,
            120,
            WeightInit {
                mean: 0.3,
                sparsity: 0.5,
                ..WeightInit::default()
            },
        ),
    ];
    for (rows, cols, base) in cases {
        let init = WeightInit {
            radius: 2.0,
            ..base.clone()
        };
        let w = random_matrix(rows, cols, &init, &mut rng("radius")).unwrap();
        // Bracket on the square side for the trace bound: use Aᵀ for the wide case.
        let t = if cols > rows {
            transpose(&w)
        } else {
            w.clone()
        };
        let (lo, hi) = singular_value_bracket(&t);
        assert!(hi / lo - 1.0 < 1e-4, "bracket [{lo}, {hi}] too wide");
        assert!(
            (lo - 2.0).abs() < 2e-4 && (hi - 2.0).abs() < 2e-4,
            "{rows}x{cols}: largest singular value in [{lo}, {hi}], wanted 2"
        );
        let below = singular_value_lower_bound(&w);
        assert!(below <= hi * (1.0 + 1e-6), "{below} > {hi}");
        assert!(below > 1.99, "{rows}x{cols}: lower bound {below}");

        // Rescaling is a single factor on the same draws (theanets scales every singular value
        // by radius/s₀).
        let plain = random_matrix(rows, cols, &base, &mut rng("radius")).unwrap();
        let first = plain.data().iter().position(|&x| x != 0.0).unwrap();
        let ratio = f64::from(w.data()[first]) / f64::from(plain.data()[first]);
        for (a, b) in w.data().iter().zip(plain.data()) {
            if *b != 0.0 {
                let r = f64::from(*a) / f64::from(*b);
                assert!((r / ratio - 1.0).abs() < 1e-5, "{r} vs {ratio}");
            } else {
                assert_eq!(*a, 0.0);
            }
        }
    }
}

fn transpose(t: &Tensor) -> Tensor {
    let (rows, cols) = (t.shape()[0], t.shape()[1]);
    Tensor::from_fn(&[cols, rows], |i| at(t, i[1], i[0]))
}

#[test]
fn same_stream_same_bits_other_stream_other_values() {
    let init = WeightInit {
        sparsity: 0.3,
        radius: 1.5,
        ..WeightInit::default()
    };
    let draw = |master: u64, name: &str| {
        random_matrix(40, 30, &init, &mut Rng::from_name(master, name)).unwrap()
    };
    let bits = |t: &Tensor| t.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&draw(7, "hid1.w")), bits(&draw(7, "hid1.w")));
    assert_ne!(bits(&draw(7, "hid1.w")), bits(&draw(7, "hid2.w")));
    assert_ne!(bits(&draw(7, "hid1.w")), bits(&draw(8, "hid1.w")));

    let bias = BiasInit {
        mean: 0.0,
        std: 1.0,
    };
    let vec = |name: &str| random_vector(20, &bias, &mut Rng::from_name(7, name)).unwrap();
    assert_eq!(bits(&vec("hid1.b")), bits(&vec("hid1.b")));
    assert_ne!(bits(&vec("hid1.b")), bits(&vec("out.b")));
}

#[test]
fn biases_default_to_zero_and_draw_nothing() {
    let mut r = rng("bias");
    let before = r.state();
    let b = random_vector(10, &BiasInit::default(), &mut r).unwrap();
    assert_eq!(b.shape(), &[10]);
    assert!(b.data().iter().all(|&x| x == 0.0));
    assert_eq!(r.state(), before);

    let constant = random_vector(
        4,
        &BiasInit {
            mean: 2.0,
            std: 0.0,
        },
        &mut r,
    )
    .unwrap();
    assert_eq!(constant.data(), &[2.0; 4]);
}

#[test]
fn gaussian_biases_have_the_asked_moments() {
    // theanets' util test: random_vector(10000) has mean ≈ 0 and std ≈ 1 (its default std).
    let init = BiasInit {
        mean: 0.0,
        std: 1.0,
    };
    let b = random_vector(10000, &init, &mut rng("bias-gauss")).unwrap();
    let (mean, std) = moments(b.data());
    assert!(mean.abs() < 3e-2, "mean {mean}");
    assert!((std - 1.0).abs() < 3e-2, "std {std}");

    let shifted = BiasInit {
        mean: -1.0,
        std: 0.1,
    };
    let b = random_vector(10000, &shifted, &mut rng("bias-shifted")).unwrap();
    let (mean, std) = moments(b.data());
    assert!((mean + 1.0).abs() < 1e-2, "mean {mean}");
    assert!((std - 0.1).abs() < 1e-2, "std {std}");
}

fn config_problem(r: nets::Result<Tensor>) -> String {
    match r {
        Err(Error::Config { what, problem }) => format!("{what}: {problem}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn bad_weight_options_are_errors() {
    let bad = |init: WeightInit, rows: usize, cols: usize| {
        config_problem(random_matrix(rows, cols, &init, &mut rng("bad")))
    };
    let d = WeightInit::default;
    for (sparsity, shown) in [(-0.1, "-0.1"), (1.0, "1"), (1.5, "1.5")] {
        let msg = bad(WeightInit { sparsity, ..d() }, 3, 3);
        assert!(msg.contains("sparsity") && msg.contains(shown), "{msg}");
    }
    let msg = bad(
        WeightInit {
            sparsity: f32::NAN,
            ..d()
        },
        3,
        3,
    );
    assert!(msg.contains("sparsity must be finite"), "{msg}");
    let msg = bad(
        WeightInit {
            std: Some(-1.0),
            ..d()
        },
        3,
        3,
    );
    assert!(msg.contains("std must be >= 0"), "{msg}");
    let msg = bad(
        WeightInit {
            std: Some(f32::INFINITY),
            ..d()
        },
        3,
        3,
    );
    assert!(msg.contains("std must be finite"), "{msg}");
    let msg = bad(
        WeightInit {
            mean: f32::NAN,
            ..d()
        },
        3,
        3,
    );
    assert!(msg.contains("mean must be finite"), "{msg}");
    let msg = bad(
        WeightInit {
            diagonal: f32::NEG_INFINITY,
            ..d()
        },
        3,
        3,
    );
    assert!(msg.contains("diagonal must be finite"), "{msg}");
    let msg = bad(
        WeightInit {
            radius: -1.0,
            ..d()
        },
        3,
        3,
    );
    assert!(msg.contains("radius must be >= 0"), "{msg}");
    let msg = bad(d(), 0, 3);
    assert!(
        msg.contains("0x3") && msg.contains("at least one row"),
        "{msg}"
    );
    let msg = bad(d(), 3, 0);
    assert!(msg.contains("at least one"), "{msg}");
    // A radius cannot be reached from an all-zero matrix.
    let msg = bad(
        WeightInit {
            std: Some(0.0),
            radius: 1.0,
            ..d()
        },
        4,
        4,
    );
    assert!(msg.contains("cannot rescale"), "{msg}");
    // Finite options whose draws overflow f32.
    let msg = bad(
        WeightInit {
            mean: 3e38,
            std: Some(3e38),
            ..d()
        },
        10,
        10,
    );
    assert!(msg.contains("too large"), "{msg}");
}

#[test]
fn bad_bias_options_are_errors() {
    let bad = |size: usize, mean: f32, std: f32| {
        config_problem(random_vector(
            size,
            &BiasInit { mean, std },
            &mut rng("bad"),
        ))
    };
    assert!(bad(0, 0.0, 0.0).contains("at least one entry"));
    assert!(bad(3, 0.0, -1.0).contains("std must be >= 0"));
    assert!(bad(3, f32::NAN, 1.0).contains("must be finite"));
    assert!(bad(3, 0.0, f32::INFINITY).contains("must be finite"));
    assert!(bad(100, 3e38, 3e38).contains("too large"));
}

#[test]
fn sparsity_zero_and_radius_zero_are_off() {
    let (rows, cols) = (40, 30);
    let off = WeightInit {
        sparsity: 0.0,
        radius: 0.0,
        diagonal: 0.0,
        ..WeightInit::default()
    };
    // Off means the matrix is exactly the stream's Gaussian draws at Glorot's std, drawn here
    // straight from the stream: nothing zeroed, nothing rescaled.
    let mut raw = vec![0.0f32; rows * cols];
    rng("off").fill_normal(&mut raw, 0.0, 1.0 / ((rows + cols) as f32).sqrt());
    let explicit = random_matrix(rows, cols, &off, &mut rng("off")).unwrap();
    assert_eq!(explicit.data(), &raw[..]);
    let default = random_matrix(rows, cols, &WeightInit::default(), &mut rng("off")).unwrap();
    assert_eq!(default, explicit);

    // Sparsity 0.5 does act: about half the off-diagonal entries are zero (binomial std 0.015
    // over 1200 entries), the diagonal is kept and every kept entry is the raw draw.
    let half = WeightInit {
        sparsity: 0.5,
        ..off.clone()
    };
    let sparse = random_matrix(rows, cols, &half, &mut rng("off")).unwrap();
    let expected = 0.5 * (1.0 - cols as f64 / (rows * cols) as f64);
    let zeros = zero_fraction(&sparse);
    assert!((zeros - expected).abs() < 0.05, "zero fraction {zeros}");
    assert!((0..cols).all(|i| at(&sparse, i, i) != 0.0));
    for (s, r) in sparse.data().iter().zip(&raw) {
        assert!(*s == 0.0 || s == r, "{s} is neither 0 nor the draw {r}");
    }

    // Radius 1 does act: the largest singular value, measured here without the library, is 1
    // (the raw draws' is about 1/√70 · (√40 + √30) ≈ 1.41), and the matrix is the raw one scaled.
    let unit = WeightInit {
        radius: 1.0,
        ..off.clone()
    };
    let scaled = random_matrix(rows, cols, &unit, &mut rng("off")).unwrap();
    let (lo, hi) = singular_value_bracket(&scaled);
    assert!(
        (lo - 1.0).abs() < 1e-3 && (hi - 1.0).abs() < 1e-3,
        "largest singular value in [{lo}, {hi}], wanted 1"
    );
    let power = singular_value_lower_bound(&scaled);
    assert!((power - 1.0).abs() < 1e-3, "power iteration gives {power}");
    let raw_sigma = singular_value_lower_bound(&Tensor::new(&[rows, cols], raw.clone()).unwrap());
    assert!(raw_sigma > 1.1, "raw largest singular value {raw_sigma}");
    for (s, r) in scaled.data().iter().zip(&raw) {
        let want = f64::from(*r) / raw_sigma;
        assert!(
            (f64::from(*s) - want).abs() < 1e-3 * want.abs().max(1e-3),
            "{s} vs {want}"
        );
    }
}
