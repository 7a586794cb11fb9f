//! Tests of `optim::Dataset`: batch sizes and coverage, shuffling, seeding, saved state, callables
//! and every error case.

use optim::dataset::DatasetState;
use optim::tape::{Tensor, TensorView};
use optim::{Dataset, DatasetOptions, Error};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Values per row of `x`.
const D: usize = 3;

/// `x[r, j] = r*D + j` and `y[r] = r`, so each row says which row it is.
fn xy(rows: usize) -> Vec<Tensor> {
    vec![
        Tensor::from_fn(&[rows, D], |i| (i[0] * D + i[1]) as f32),
        Tensor::from_fn(&[rows], |i| i[0] as f32),
    ]
}

fn opts(batch_size: usize) -> DatasetOptions {
    DatasetOptions {
        batch_size,
        ..Default::default()
    }
}

/// The original row indices in a batch, read from `x`, after checking that `x` rows are intact
/// and that `y` (if present) names the same rows.
fn rows_of(batch: &[TensorView<'_>]) -> Vec<usize> {
    let x = batch[0];
    let n = x.shape()[0];
    assert_eq!(x.shape(), &[n, D]);
    let rows: Vec<usize> = (0..n)
        .map(|i| {
            let row = &x.data()[i * D..(i + 1) * D];
            let r = row[0] as usize / D;
            let want: Vec<f32> = (0..D).map(|j| (r * D + j) as f32).collect();
            assert_eq!(row, &want[..], "row {i} of x is not an intact row");
            r
        })
        .collect();
    if let Some(y) = batch.get(1) {
        assert_eq!(y.shape(), &[n]);
        let ys: Vec<usize> = y.data().iter().map(|&v| v as usize).collect();
        assert_eq!(ys, rows, "y is not aligned with x");
    }
    rows
}

/// The rows of the next `n` batches.
fn take(ds: &mut Dataset, n: usize) -> Vec<Vec<usize>> {
    (0..n).map(|_| rows_of(&ds.next_batch().unwrap())).collect()
}

fn message(r: Result<Dataset, Error>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            assert!(matches!(e, Error::Data { .. }), "not a Data error: {e:?}");
            e.to_string()
        }
    }
}

fn assert_contains(msg: &str, fragments: &[&str]) {
    for f in fragments {
        assert!(msg.contains(f), "message {msg:?} lacks {f:?}");
    }
}

#[test]
fn forty_rows_in_batches_of_eleven() {
    let mut ds = Dataset::new("train", xy(40), opts(11)).unwrap();
    assert_eq!(ds.len(), Some(40));
    assert!(!ds.is_empty());
    assert_eq!(ds.num_arrays(), 2);
    assert_eq!(ds.num_batches(), Some(4));
    assert_eq!(ds.iteration_size(), 4);
    for _pass in 0..5 {
        let batches = take(&mut ds, 4);
        let mut sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, vec![7, 11, 11, 11]);
        let mut all: Vec<usize> = batches.concat();
        all.sort_unstable();
        assert_eq!(all, (0..40).collect::<Vec<_>>());
    }
}

#[test]
fn batch_size_zero_or_too_large_gives_one_batch() {
    for b in [0, 40, 41, 1000] {
        let mut ds = Dataset::new("one", xy(40), opts(b)).unwrap();
        assert_eq!(ds.num_batches(), Some(1), "batch_size {b}");
        assert_eq!(ds.iteration_size(), 1);
        for _ in 0..3 {
            assert_eq!(take(&mut ds, 1), vec![(0..40).collect::<Vec<_>>()]);
        }
    }
}

#[test]
fn default_batch_size_is_32() {
    let o = DatasetOptions::default();
    assert_eq!(
        (
            o.batch_size,
            o.iteration_size,
            o.shuffle_samples,
            o.check_finite,
            o.seed
        ),
        (32, None, false, true, 0)
    );
    let ds = Dataset::new("d", xy(100), o).unwrap();
    assert_eq!(ds.num_batches(), Some(4));
}

#[test]
fn cursor_persists_across_iterations_and_wraps_with_a_reshuffle() {
    // 64 rows in batches of 8: batch b is rows 8b..8b+8, so its first row names it.
    let options = DatasetOptions {
        batch_size: 8,
        iteration_size: Some(3),
        ..Default::default()
    };
    let mut ds = Dataset::new("train", xy(64), options).unwrap();
    assert_eq!(ds.iteration_size(), 3);
    let first_order = ds.state().batch_order;
    let mut seen = Vec::new();
    let mut cursors = Vec::new();
    for _ in 0..3 {
        let n = ds.iteration_size();
        for rows in take(&mut ds, n) {
            seen.push(rows[0] / 8);
        }
        cursors.push(ds.state().cursor);
    }
    assert_eq!(cursors, vec![3, 6, 1]);
    assert_eq!(&seen[..8], &first_order[..]);
    let second_order = ds.state().batch_order;
    assert_eq!(seen[8], second_order[0]);
    assert_ne!(first_order, second_order);
    // Pinned for seed 0 and name "train": changing either shuffle breaks saved runs.
    assert_eq!(first_order, vec![0, 1, 2, 4, 6, 5, 7, 3]);
    assert_eq!(second_order, vec![0, 2, 1, 6, 5, 4, 3, 7]);
}

#[test]
fn batches_are_contiguous_row_ranges_without_shuffle_samples() {
    let mut ds = Dataset::new("c", xy(50), opts(7)).unwrap();
    for rows in take(&mut ds, 30) {
        let start = rows[0];
        assert_eq!(start % 7, 0);
        assert_eq!(rows, (start..(start + 7).min(50)).collect::<Vec<_>>());
    }
}

#[test]
fn shuffle_samples_permutes_rows_every_pass() {
    let options = DatasetOptions {
        batch_size: 8,
        shuffle_samples: true,
        ..Default::default()
    };
    let mut ds = Dataset::new("s", xy(60), options).unwrap();
    assert_eq!(ds.num_batches(), Some(8));
    let mut passes = Vec::new();
    for _ in 0..4 {
        let batches = take(&mut ds, 8);
        let mut sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, vec![4, 8, 8, 8, 8, 8, 8, 8]);
        let flat = batches.concat();
        let mut sorted = flat.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..60).collect::<Vec<_>>());
        // Rows are mixed: some batch is not a contiguous range.
        assert!(batches
            .iter()
            .any(|b| b.windows(2).any(|w| w[1] != w[0] + 1)));
        passes.push(flat);
    }
    for i in 0..passes.len() {
        for j in i + 1..passes.len() {
            assert_ne!(passes[i], passes[j], "passes {i} and {j} are identical");
        }
    }
}

#[test]
fn same_seed_and_name_repeat_and_others_differ() {
    let make = |name: &str, seed: u64, shuffle_samples: bool| {
        let options = DatasetOptions {
            batch_size: 5,
            seed,
            shuffle_samples,
            ..Default::default()
        };
        let mut ds = Dataset::new(name, xy(97), options).unwrap();
        take(&mut ds, 60)
    };
    for shuffle in [false, true] {
        let a = make("train", 7, shuffle);
        assert_eq!(a, make("train", 7, shuffle));
        assert_ne!(a, make("valid", 7, shuffle));
        assert_ne!(a, make("train", 8, shuffle));
    }
}

/// Runs `before` batches, saves the state through MessagePack, runs `after` more; then restores
/// the saved state into a fresh dataset (built with another seed, so only the state can make
/// it agree) and checks that it produces the same `after` batches.
fn check_restore(shuffle_samples: bool, before: usize, after: usize) {
    let options = |seed| DatasetOptions {
        batch_size: 6,
        iteration_size: Some(4),
        shuffle_samples,
        seed,
        ..Default::default()
    };
    let mut ds = Dataset::new("r", xy(45), options(3)).unwrap();
    take(&mut ds, before);
    let bytes = rmp_serde::to_vec(&ds.state()).unwrap();
    let expected = take(&mut ds, after);
    let state: DatasetState = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(state.sample_order.is_some(), shuffle_samples);
    let mut fresh = Dataset::new("r", xy(45), options(99)).unwrap();
    fresh.set_state(state.clone()).unwrap();
    assert_eq!(fresh.state(), state);
    assert_eq!(take(&mut fresh, after), expected);
    assert_eq!(fresh.state(), ds.state());
}

#[test]
fn saved_state_resumes_identically() {
    // 45 rows in batches of 6 = 8 batches; save mid-pass, at a pass end (before the lazy wrap)
    // and right after construction.
    for shuffle in [false, true] {
        for before in [0, 3, 8, 13, 16] {
            check_restore(shuffle, before, 20);
        }
    }
}

#[test]
fn set_state_rejects_states_of_other_datasets() {
    let mut ds = Dataset::new("a", xy(45), opts(6)).unwrap();
    let good = ds.state();
    let err = |ds: &mut Dataset, s: DatasetState| ds.set_state(s).unwrap_err().to_string();

    let mut s = good.clone();
    s.batch_order.pop();
    assert_contains(
        &err(&mut ds, s),
        &["cannot restore", "permutation", "8 batches"],
    );
    let mut s = good.clone();
    s.batch_order[0] = s.batch_order[1];
    assert_contains(&err(&mut ds, s), &["permutation"]);
    let mut s = good.clone();
    s.cursor = 9;
    assert_contains(&err(&mut ds, s), &["cursor 9"]);
    let mut s = good.clone();
    s.sample_order = Some((0..45).collect());
    assert_contains(&err(&mut ds, s), &["shuffle_samples is off"]);
    let mut s = good.clone();
    s.rng = [0; 4];
    assert_contains(&err(&mut ds, s), &["all zeros"]);
    // A failed restore leaves the dataset as it was.
    assert_eq!(ds.state(), good);

    let options = DatasetOptions {
        batch_size: 6,
        shuffle_samples: true,
        ..Default::default()
    };
    let mut shuffled = Dataset::new("a", xy(45), options).unwrap();
    assert_contains(
        &err(&mut shuffled, good.clone()),
        &["shuffle_samples is on"],
    );
    let mut s = shuffled.state();
    s.sample_order.as_mut().unwrap().push(45);
    assert_contains(&err(&mut shuffled, s), &["45 rows"]);

    let mut callable = Dataset::from_fn("f", || xy(4), DatasetOptions::default()).unwrap();
    assert_contains(&err(&mut callable, good), &["callable"]);
    let s = callable.state();
    callable.set_state(s).unwrap();
}

#[test]
fn pairs_stay_aligned_in_both_modes() {
    // rows_of checks y against x for every batch.
    for shuffle_samples in [false, true] {
        let options = DatasetOptions {
            batch_size: 9,
            shuffle_samples,
            ..Default::default()
        };
        let mut ds = Dataset::new("p", xy(83), options).unwrap();
        take(&mut ds, 50);
    }
}

#[test]
fn higher_rank_arrays_split_by_rows() {
    let x = Tensor::from_fn(&[10, 2, 3], |i| (i[0] * 100 + i[1] * 10 + i[2]) as f32);
    let w = Tensor::from_fn(&[10, 1], |i| i[0] as f32);
    let mut ds = Dataset::new("h", vec![x, w], opts(4)).unwrap();
    for _ in 0..6 {
        let batch = ds.next_batch().unwrap();
        let n = batch[0].shape()[0];
        assert_eq!(batch[0].shape(), &[n, 2, 3]);
        assert_eq!(batch[1].shape(), &[n, 1]);
        for (i, &r) in batch[1].data().iter().enumerate() {
            let r = r as usize;
            let want: Vec<f32> = (0..6)
                .map(|k| (r * 100 + k / 3 * 10 + k % 3) as f32)
                .collect();
            assert_eq!(&batch[0].data()[i * 6..i * 6 + 6], &want[..]);
        }
    }
}

#[test]
fn for_each_batch_covers_a_pass_without_touching_the_state() {
    for shuffle_samples in [false, true] {
        let options = DatasetOptions {
            batch_size: 11,
            shuffle_samples,
            ..Default::default()
        };
        let mut ds = Dataset::new("v", xy(40), options).unwrap();
        take(&mut ds, 2);
        let before = ds.state();
        let mut seen = Vec::new();
        ds.for_each_batch(|b| {
            seen.push(rows_of(b));
            Ok(())
        })
        .unwrap();
        assert_eq!(ds.state(), before);
        let expected: Vec<Vec<usize>> = (0..40)
            .step_by(11)
            .map(|s| (s..(s + 11).min(40)).collect())
            .collect();
        assert_eq!(seen, expected);
    }
    // Errors from the callback stop the pass and come back.
    let mut ds = Dataset::new("v", xy(40), opts(11)).unwrap();
    let mut calls = 0;
    let r = ds.for_each_batch(|_| {
        calls += 1;
        Err(Error::Config {
            what: "test".into(),
            problem: "stop".into(),
        })
    });
    assert!(r.is_err());
    assert_eq!(calls, 1);
}

#[test]
fn check_finite_false_allows_nan() {
    let x = Tensor::vector(&[1.0, f32::NAN, 3.0]);
    let options = DatasetOptions {
        check_finite: false,
        ..Default::default()
    };
    let mut ds = Dataset::new("nan", vec![x], options).unwrap();
    assert!(ds.next_batch().unwrap()[0].data()[1].is_nan());
}

#[test]
fn array_errors_are_clear() {
    let m = message(Dataset::new("e", vec![], opts(4)));
    assert_contains(&m, &["dataset `e`", "no arrays"]);

    let m = message(Dataset::new(
        "e",
        vec![Tensor::vector(&[1.0]), Tensor::scalar(1.0)],
        opts(4),
    ));
    assert_contains(&m, &["arrays[1]", "rank 0"]);

    let m = message(Dataset::new(
        "e",
        vec![Tensor::zeros(&[40, 2]), Tensor::zeros(&[39])],
        opts(4),
    ));
    assert_contains(&m, &["arrays[0] has 40 rows", "arrays[1] has 39"]);

    let m = message(Dataset::new("e", vec![Tensor::zeros(&[0, 2])], opts(4)));
    assert_contains(&m, &["no rows"]);

    let mut y = Tensor::zeros(&[5, 2]);
    y.data_mut()[7] = f32::INFINITY;
    let m = message(Dataset::new("e", vec![Tensor::zeros(&[5]), y], opts(4)));
    assert_contains(&m, &["arrays[1]", "row 3", "inf", "check_finite"]);

    let x = Tensor::vector(&[0.0, 1.0, f32::NAN]);
    let m = message(Dataset::new("e", vec![x], opts(4)));
    assert_contains(&m, &["arrays[0]", "row 2", "NaN"]);

    let options = DatasetOptions {
        iteration_size: Some(0),
        ..Default::default()
    };
    let m = message(Dataset::new("e", xy(4), options));
    assert_contains(&m, &["iteration_size"]);
}

/// A callable that returns `batches[i]` on its i-th call (then repeats the last one).
fn scripted(batches: Vec<Vec<Tensor>>) -> impl FnMut() -> Vec<Tensor> + Send + 'static {
    let mut i = 0;
    move || {
        let b = batches[i.min(batches.len() - 1)].clone();
        i += 1;
        b
    }
}

#[test]
fn callable_hands_out_its_batches() {
    // Each call returns 3 rows starting where the previous call stopped.
    let mut next = 0;
    let f = move || {
        let start = next;
        next += 3;
        vec![
            Tensor::from_fn(&[3, D], |i| ((start + i[0]) * D + i[1]) as f32),
            Tensor::from_fn(&[3], |i| (start + i[0]) as f32),
        ]
    };
    let options = DatasetOptions {
        iteration_size: Some(5),
        ..Default::default()
    };
    let mut ds = Dataset::from_fn("gen", f, options).unwrap();
    assert_eq!(ds.len(), None);
    assert_eq!(ds.num_batches(), None);
    assert_eq!(ds.num_arrays(), 2);
    assert_eq!(ds.iteration_size(), 5);
    // The probing call's batch comes first.
    assert_eq!(take(&mut ds, 2), vec![vec![0, 1, 2], vec![3, 4, 5]]);
    let mut seen = Vec::new();
    ds.for_each_batch(|b| {
        seen.push(rows_of(b)[0]);
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, vec![6, 9, 12, 15, 18]);
    assert_eq!(ds.state().cursor, 7);

    let default = Dataset::from_fn("gen", || xy(2), DatasetOptions::default()).unwrap();
    assert_eq!(default.iteration_size(), 100);
}

#[test]
fn callable_batch_size_may_change_along_axis_0() {
    let f = scripted(vec![xy(3), xy(5), xy(1)]);
    let mut ds = Dataset::from_fn("var", f, DatasetOptions::default()).unwrap();
    let sizes: Vec<usize> = take(&mut ds, 3).iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![3, 5, 1]);
}

#[test]
fn callable_errors_name_the_call() {
    let call_err = |batches: Vec<Vec<Tensor>>, calls: usize| -> String {
        let mut ds = Dataset::from_fn("cb", scripted(batches), DatasetOptions::default()).unwrap();
        for _ in 0..calls - 1 {
            ds.next_batch().unwrap();
        }
        let e = ds.next_batch().unwrap_err();
        assert!(matches!(e, Error::Data { .. }));
        e.to_string()
    };

    // Arity changes on the second call.
    let m = call_err(vec![xy(3), vec![xy(3).remove(0)]], 2);
    assert_contains(
        &m,
        &[
            "dataset `cb`",
            "call 2",
            "returned 1 arrays",
            "first call returned 2",
        ],
    );

    // Trailing shape changes on the third call.
    let m = call_err(
        vec![
            xy(3),
            xy(3),
            vec![Tensor::zeros(&[3, 4]), Tensor::zeros(&[3])],
        ],
        3,
    );
    assert_contains(&m, &["call 3", "arrays[0]", "[3, 4]", "[3, 3]", "axis 0"]);

    // Rank changes.
    let m = call_err(
        vec![xy(3), vec![Tensor::zeros(&[3, 3]), Tensor::zeros(&[3, 1])]],
        2,
    );
    assert_contains(&m, &["call 2", "arrays[1]"]);

    // Arrays of different lengths within one batch.
    let m = call_err(
        vec![xy(3), vec![Tensor::zeros(&[3, 3]), Tensor::zeros(&[2])]],
        2,
    );
    assert_contains(
        &m,
        &["call 2", "different lengths", "3 rows", "arrays[1] has 2"],
    );

    // Non-finite values.
    let mut bad = xy(3);
    bad[1].data_mut()[2] = f32::NAN;
    let m = call_err(vec![xy(3), bad], 2);
    assert_contains(&m, &["call 2", "arrays[1]", "row 2", "NaN"]);

    // Empty batches and no arrays.
    let m = call_err(vec![xy(3), xy(0)], 2);
    assert_contains(&m, &["call 2", "no rows"]);
    let m = call_err(vec![xy(3), vec![]], 2);
    assert_contains(&m, &["call 2", "no arrays"]);

    // Problems with the very first call surface from from_fn.
    let m = message(Dataset::from_fn("cb", Vec::new, DatasetOptions::default()));
    assert_contains(&m, &["call 1", "no arrays"]);
    let m = message(Dataset::from_fn(
        "cb",
        || vec![Tensor::scalar(1.0)],
        DatasetOptions::default(),
    ));
    assert_contains(&m, &["call 1", "rank 0"]);
    let m = message(Dataset::from_fn(
        "cb",
        || vec![Tensor::vector(&[f32::INFINITY])],
        DatasetOptions::default(),
    ));
    assert_contains(&m, &["call 1", "inf"]);

    // Errors during validation passes too.
    let mut ds = Dataset::from_fn(
        "cb",
        scripted(vec![xy(3), xy(3), vec![]]),
        DatasetOptions::default(),
    )
    .unwrap();
    let e = ds.for_each_batch(|_| Ok(())).unwrap_err().to_string();
    assert_contains(&e, &["call 3", "no arrays"]);
}

#[test]
fn dataset_is_send() {
    fn is_send<T: Send>() {}
    is_send::<Dataset>();
    is_send::<DatasetState>();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever L and B, every pass is a set of row ranges of size B (one shorter last) that covers
    /// each row exactly once.
    #[test]
    fn every_row_once_per_pass(rows in 1usize..200, batch in 0usize..70, shuffle_samples: bool, seed: u64) {
        let options = DatasetOptions { batch_size: batch, shuffle_samples, seed, ..Default::default() };
        let mut ds = Dataset::new("prop", xy(rows), options).unwrap();
        let b = if batch == 0 || batch > rows { rows } else { batch };
        let n = rows.div_ceil(b);
        prop_assert_eq!(ds.num_batches(), Some(n));
        let mut want_sizes = vec![b; rows / b];
        if rows % b != 0 {
            want_sizes.push(rows % b);
        }
        want_sizes.sort_unstable();
        for _pass in 0..3 {
            let batches = take(&mut ds, n);
            let mut sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
            sizes.sort_unstable();
            prop_assert_eq!(&sizes, &want_sizes);
            let mut count = BTreeMap::new();
            for r in batches.concat() {
                *count.entry(r).or_insert(0) += 1;
            }
            prop_assert_eq!(count.len(), rows);
            prop_assert!(count.iter().enumerate().all(|(i, (&r, &c))| i == r && c == 1));
        }
    }
}

/// A batch function that is deterministic from its construction: call k (from 0) returns rows
/// 3k, 3k+1, 3k+2.
fn counting() -> impl FnMut() -> Vec<Tensor> + Send + 'static {
    let mut next = 0;
    move || {
        let start = next;
        next += 3;
        vec![
            Tensor::from_fn(&[3, D], |i| ((start + i[0]) * D + i[1]) as f32),
            Tensor::from_fn(&[3], |i| (start + i[0]) as f32),
        ]
    }
}

#[test]
fn a_restored_callable_resumes_exactly() {
    let options = || DatasetOptions {
        iteration_size: Some(2),
        ..Default::default()
    };
    // Saved after 4 batches (2 for training, 2 for a validation pass).
    let mut original = Dataset::from_fn("gen", counting(), options()).unwrap();
    take(&mut original, 2);
    original.for_each_batch(|_| Ok(())).unwrap();
    let saved = original.state();
    assert_eq!(saved.cursor, 4);
    let expected = take(&mut original, 3);
    assert_eq!(expected[0], vec![12, 13, 14]);

    let mut resumed = Dataset::from_fn("gen", counting(), options()).unwrap();
    resumed.set_state(saved).unwrap();
    assert_eq!(take(&mut resumed, 3), expected);

    // A state saved before anything was handed out starts with the probe batch.
    let fresh = Dataset::from_fn("gen", counting(), options())
        .unwrap()
        .state();
    assert_eq!(fresh.cursor, 0);
    let mut again = Dataset::from_fn("gen", counting(), options()).unwrap();
    again.set_state(fresh.clone()).unwrap();
    assert_eq!(take(&mut again, 1), vec![vec![0, 1, 2]]);

    // A function cannot be rewound: restoring an earlier state than what was handed out fails
    // and leaves the dataset as it was.
    let err = again.set_state(fresh).unwrap_err().to_string();
    assert_contains(&err, &["rewound", "1"]);
    assert_eq!(take(&mut again, 1), vec![vec![3, 4, 5]]);
}

/// With `shuffle_batches` off every pass hands out the batches in natural row order (what
/// stateful training over consecutive chunks needs), and the dataset says where passes start.
#[test]
fn unshuffled_batches_come_in_row_order_every_pass() {
    let options = DatasetOptions {
        shuffle_batches: false,
        ..opts(4)
    };
    let mut ds = Dataset::new("ordered", xy(12), options.clone()).unwrap();
    assert!(!ds.is_shuffled());
    let mut starts = Vec::new();
    let mut firsts = Vec::new();
    for _ in 0..7 {
        starts.push(ds.at_pass_start());
        firsts.push(rows_of(&ds.next_batch().unwrap())[0]);
    }
    assert_eq!(firsts, vec![0, 4, 8, 0, 4, 8, 0]);
    assert_eq!(starts, vec![true, false, false, true, false, false, true]);
    assert!(Dataset::new("s", xy(12), opts(4)).unwrap().is_shuffled());
    let samples = DatasetOptions {
        shuffle_samples: true,
        ..options
    };
    assert!(Dataset::new("s", xy(12), samples).unwrap().is_shuffled());
}
