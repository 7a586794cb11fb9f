//! Soak: the digits classifier (64-100-10) trained for many optimizer steps, then asked to
//! predict at many distinct batch sizes, four times, while the process's resident memory is sampled
//! from `/proc/self/statm`. Memory must stay flat: after a warm-up (a tenth of the steps)
//! training may not grow it, nor trend upwards over its last half; predicting from the largest
//! batch to the smallest may not grow it once the plan cache is full of the largest plans, and a
//! second pass back up may not grow it either. Each compiled function keeps at most
//! `Function::PLAN_CACHE_SIZE` plans, so new batch sizes replace old plans instead of piling up;
//! with an unbounded cache the quick version fails (RSS grew 7.4 → 14.5 MB over its first pass).
//!
//! The full soak (1,000,000 steps, batch sizes 1..=1000) is ignored by default:
//!
//! ```text
//! cargo test --release -p nets --test soak -- --ignored --nocapture
//! ```
//!
//! `SOAK_STEPS`, `SOAK_BATCH_SIZES` and `SOAK_BATCH` (rows per step) change its length. A quick
//! version with a few thousand steps and 200 batch sizes runs with the ordinary tests.

use nets::tape::{Tensor, TensorView};
use nets::Classifier;
use std::sync::Mutex;
use std::time::Instant;

/// Bytes per page in `/proc/self/statm` (what `getconf PAGESIZE` reports on this platform).
const PAGE_SIZE: u64 = 4096;

/// The two tests measure the whole process, so they must not run at the same time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The resident set size in bytes: the second field of `/proc/self/statm`, in pages.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux)");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("statm's second field counts resident pages");
    pages * PAGE_SIZE
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The digits training split, read from the repository's CSV file (label, then 64 pixels).
fn digits() -> (Tensor, Tensor) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/digits/train.csv");
    let text = std::fs::read_to_string(path).expect("data/digits/train.csv");
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split(',').map(|f| f.trim().parse::<f32>().unwrap());
        ys.push(fields.next().unwrap());
        xs.extend(fields);
    }
    let rows = ys.len();
    assert_eq!(xs.len(), rows * 64);
    (Tensor::new(&[rows, 64], xs).unwrap(), Tensor::vector(&ys))
}

/// A setting from the environment, or its default.
fn setting(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a whole number")),
        Err(_) => default,
    }
}

/// How much the resident memory may grow, in bytes.
struct Limits {
    /// From the warm-up (a tenth of the steps) to the end of training.
    train: u64,
    /// Over the last half of training (a trend, not a one-off jump).
    train_last_half: u64,
    /// From the end of training to the peak: the plans of the largest batch sizes and their
    /// outputs.
    workspaces: u64,
    /// From the predict warm-up (the cache full of the largest plans) to the most seen over the
    /// rest of the first pass (largest to smallest).
    first_pass: u64,
    /// From the predict warm-up to the end of the second pass (smallest to largest), which
    /// leaves the cache as the warm-up had it.
    second_pass: u64,
    /// From the end of pass 2 to the end of pass 4, the same walk again.
    repeat: u64,
}

struct Figures {
    warm: u64,
    trained: u64,
    predict_warm: u64,
    first_pass: u64,
    second_pass: u64,
    end: u64,
    peak: u64,
    train_last_half: u64,
    seconds: f64,
}

/// Runs the soak and prints a table of resident memory along the way.
fn soak(steps: usize, sizes: usize, batch: usize) -> Figures {
    let start = rss();
    let clock = Instant::now();
    let (x, y) = digits();
    let rows = x.shape()[0];
    assert!(
        sizes <= rows,
        "at most {rows} batch sizes (the digits rows)"
    );
    let net = Classifier::new(&[64, 100, 10]).unwrap();
    let mut trainer = net.trainer("adam", &["learning_rate=0.001"]).unwrap();
    // The batches, made once: full ones and the short last one, so training alternates shapes.
    let batches: Vec<(Tensor, Tensor)> = (0..rows)
        .step_by(batch)
        .map(|s| {
            let e = rows.min(s + batch);
            (x.rows(s, e).unwrap(), y.rows(s, e).unwrap())
        })
        .collect();
    println!("{:<26} {:>10} {:>9}", "phase", "at", "RSS MB");
    println!("{:<26} {:>10} {:>9.1}", "start", 0, mb(start));
    let every = (steps / 100).max(1);
    let mut samples: Vec<(usize, u64)> = Vec::new();
    let mut peak = start;
    let mut last_loss = f32::NAN;
    for step in 1..=steps {
        let (bx, by) = &batches[step % batches.len()];
        let views: [TensorView<'_>; 2] = [bx.view(), by.view()];
        last_loss = trainer.step(&views).unwrap();
        if step % every == 0 || step == steps {
            let now = rss();
            peak = peak.max(now);
            samples.push((step, now));
            if step % (every * 10) == 0 || step == steps {
                println!("{:<26} {:>10} {:>9.1}", "train step", step, mb(now));
            }
        }
    }
    assert!(last_loss.is_finite(), "training diverged: loss {last_loss}");
    let at = |fraction: f64| {
        let target = (steps as f64 * fraction) as usize;
        samples
            .iter()
            .find(|(s, _)| *s >= target)
            .map_or(start, |&(_, r)| r)
    };
    let warm = at(0.1);
    let mid = at(0.5);
    let trained = samples.last().map_or(start, |&(_, r)| r);
    let train_last_half = samples
        .iter()
        .filter(|(s, _)| *s >= steps / 2)
        .map(|&(_, r)| r.saturating_sub(mid))
        .max()
        .unwrap_or(0);
    let acc = net.score(&x, &y, None).unwrap();
    let train_seconds = clock.elapsed().as_secs_f64();
    println!(
        "training accuracy {acc:.4}, last loss {last_loss:.5}; {steps} steps in {train_seconds:.1} \
         s ({:.1} µs per step)",
        train_seconds * 1e6 / steps as f64
    );
    assert!(acc > 0.8, "the classifier did not learn: accuracy {acc}");
    // Pass 1 goes from the largest batch to the smallest. Once the plan cache is full of the
    // largest plans (the warm-up), each new size replaces a larger plan, so memory must not
    // grow; with an unbounded cache it would grow with every size. Pass 2 goes back up and ends
    // with the cache holding the same largest plans as at the warm-up, so it must end where the
    // warm-up was, give or take what the allocator keeps. Passes 3 and 4 repeat 1 and 2: pass 4
    // must end where pass 2 did, or memory grows with the number of predictions.
    let warm_up_sizes = nets::tape::Function::PLAN_CACHE_SIZE.min(sizes);
    let mut predict_warm = trained;
    let mut first_pass = 0;
    let mut second_pass = 0;
    for pass in 1..=4 {
        for k in 1..=sizes {
            let n = if pass % 2 == 1 { sizes + 1 - k } else { k };
            let batch = x.rows(0, n).unwrap();
            let labels = net.predict(&batch).unwrap();
            assert_eq!(labels.shape(), &[n]);
            let now = rss();
            peak = peak.max(now);
            if pass == 1 && k == warm_up_sizes {
                predict_warm = now;
            } else if pass == 1 && k > warm_up_sizes {
                first_pass = first_pass.max(now);
            }
            if k % (sizes / 10).max(1) == 0 || k == warm_up_sizes && pass == 1 {
                println!(
                    "{:<26} {:>10} {:>9.1}",
                    format!("predict pass {pass}, rows"),
                    n,
                    mb(now)
                );
            }
        }
        if pass == 2 {
            second_pass = rss();
        }
    }
    let end = rss();
    peak = peak.max(end);
    let seconds = clock.elapsed().as_secs_f64();
    println!(
        "start {:.1} MB, warm-up {:.1} MB, trained {:.1} MB, predict warm-up {:.1} MB, most in \
         the rest of pass 1 {:.1} MB, after pass 2 {:.1} MB, end {:.1} MB, peak {:.1} MB; \
         {steps} steps of {batch} rows and 4×{sizes} batch sizes in {seconds:.1} s",
        mb(start),
        mb(warm),
        mb(trained),
        mb(predict_warm),
        mb(first_pass),
        mb(second_pass),
        mb(end),
        mb(peak)
    );
    Figures {
        warm,
        trained,
        predict_warm,
        first_pass,
        second_pass,
        end,
        peak,
        train_last_half,
        seconds,
    }
}

/// Asserts the figures stay within the limits, naming the phase that grew.
fn check(f: &Figures, limits: &Limits) {
    let grew = |from: u64, to: u64| to.saturating_sub(from);
    assert!(
        grew(f.warm, f.trained) <= limits.train,
        "training grew RSS from {:.1} MB (warm-up) to {:.1} MB",
        mb(f.warm),
        mb(f.trained)
    );
    assert!(
        f.train_last_half <= limits.train_last_half,
        "RSS grew by {:.1} MB over the last half of training",
        mb(f.train_last_half)
    );
    assert!(
        grew(f.trained, f.peak) <= limits.workspaces,
        "predicting grew RSS from {:.1} MB (trained) to a peak of {:.1} MB",
        mb(f.trained),
        mb(f.peak)
    );
    assert!(
        grew(f.predict_warm, f.first_pass) <= limits.first_pass,
        "the first pass over the batch sizes grew RSS from {:.1} MB (warm-up) to {:.1} MB",
        mb(f.predict_warm),
        mb(f.first_pass)
    );
    assert!(
        grew(f.predict_warm, f.second_pass) <= limits.second_pass,
        "two passes over the batch sizes left RSS at {:.1} MB, up from {:.1} MB with the same \
         plans cached",
        mb(f.second_pass),
        mb(f.predict_warm)
    );
    assert!(
        grew(f.second_pass, f.end) <= limits.repeat,
        "RSS went on growing: {:.1} MB after two passes over the batch sizes, {:.1} MB after four",
        mb(f.second_pass),
        mb(f.end)
    );
    assert!(f.seconds > 0.0);
}

const MB: u64 = 1024 * 1024;

#[test]
#[ignore = "soak: ~1 min in release, run with --ignored"]
fn soak_a_million_steps_then_a_thousand_batch_sizes() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let figures = soak(
        setting("SOAK_STEPS", 1_000_000),
        setting("SOAK_BATCH_SIZES", 1000),
        setting("SOAK_BATCH", 16),
    );
    check(
        &figures,
        &Limits {
            train: 2 * MB,
            train_last_half: MB,
            workspaces: 32 * MB,
            first_pass: MB,
            second_pass: 4 * MB,
            repeat: MB,
        },
    );
}

#[test]
fn quick_soak_stays_flat() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let figures = soak(4000, 200, 16);
    check(
        &figures,
        &Limits {
            train: 4 * MB,
            train_last_half: 4 * MB,
            workspaces: 16 * MB,
            first_pass: MB,
            second_pass: 2 * MB,
            repeat: MB,
        },
    );
}
