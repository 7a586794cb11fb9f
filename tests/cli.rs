//! The `theanets-rs` binary run as a user would: the `train` → `eval` → `predict` → `inspect`
//! round trip on a small CSV file, crash safety of `--save-progress` under SIGKILL at random
//! (seeded) moments, and one-line errors with the conventional exit codes.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_theanets-rs");

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A small generator so that the data and the kill moments are fixed by a seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.next() as f64 / (1u64 << 31) as f64
    }
}

/// `rows` rows of `features` values near their class (0, 1 or 2), the label last; returns
/// the labels too.
fn write_blobs(path: &Path, rows: usize, features: usize, spread: f64, seed: u64) -> Vec<usize> {
    let mut rng = Lcg(seed);
    let mut csv = String::new();
    let mut labels = Vec::new();
    for _ in 0..rows {
        let k = (rng.next() % 3) as usize;
        for _ in 0..features {
            csv.push_str(&format!("{:.4},", k as f64 + spread * (rng.unit() - 0.5)));
        }
        csv.push_str(&format!("{k}\n"));
        labels.push(k);
    }
    std::fs::write(path, csv).unwrap();
    labels
}

/// The value after `key` on the first line of `out` containing it.
fn value_after(out: &str, key: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.contains(key))
        .unwrap_or_else(|| panic!("no `{key}` in:\n{out}"));
    let rest = &line[line.find(key).unwrap() + key.len()..];
    rest.trim()
        .trim_end_matches('%')
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap()
}

#[test]
fn train_eval_predict_inspect_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let labels = write_blobs(&dir.path().join("blobs.csv"), 90, 4, 0.8, 5);
    let train = run(
        &[
            "train",
            "blobs.csv",
            "--target",
            "4",
            "--layers",
            "4,8:relu,3",
            "--out",
            "run",
            "--threads",
            "1",
            "--set",
            "learning_rate=0.01",
            "max_updates=40",
            "patience=1000",
        ],
        dir.path(),
    );
    assert!(train.status.success(), "{}", text(&train.stderr));
    assert!(
        train.stderr.is_empty(),
        "stderr stays clean off a terminal: {}",
        text(&train.stderr)
    );
    let run_dir = dir.path().join("run");
    // One monitors row per iteration, numbered 1..=40.
    let monitors = std::fs::read_to_string(run_dir.join("monitors.csv")).unwrap();
    let mut lines = monitors.lines();
    assert!(lines.next().unwrap().starts_with("iteration,train_loss,"));
    let iterations: Vec<usize> = lines
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(iterations, (1..=40).collect::<Vec<_>>());
    let svg = std::fs::read_to_string(run_dir.join("curves.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("valid loss"));

    let eval = run(
        &["eval", "run/model.theanets", "blobs.csv", "-t", "4"],
        dir.path(),
    );
    assert!(eval.status.success(), "{}", text(&eval.stderr));
    let eval_out = text(&eval.stdout);
    let accuracy = value_after(&eval_out, "accuracy");

    let predict = run(
        &[
            "predict",
            "run/model.theanets",
            "blobs.csv",
            "-t",
            "4",
            "-o",
            "pred.csv",
        ],
        dir.path(),
    );
    assert!(predict.status.success(), "{}", text(&predict.stderr));
    let pred = std::fs::read_to_string(dir.path().join("pred.csv")).unwrap();
    let predicted: Vec<usize> = pred.lines().skip(1).map(|l| l.parse().unwrap()).collect();
    assert_eq!(predicted.len(), labels.len());
    let right = predicted
        .iter()
        .zip(&labels)
        .filter(|(p, t)| p == t)
        .count();
    // eval's accuracy is the share of predictions equal to the file's labels.
    assert!((accuracy - 100.0 * right as f64 / labels.len() as f64).abs() < 0.006);
    assert!(accuracy > 90.0, "well separated blobs: {eval_out}");
    // Each confusion row sums to that class's count in the file.
    for class in 0..3 {
        let row = eval_out
            .lines()
            .find(|l| {
                l.split_whitespace().next() == Some(&class.to_string())
                    && l.split_whitespace().count() == 4
            })
            .unwrap();
        let sum: usize = row
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse::<usize>().unwrap())
            .sum();
        assert_eq!(sum, labels.iter().filter(|&&l| l == class).count());
    }

    let inspect = run(&["inspect", "run/model.theanets"], dir.path());
    assert!(inspect.status.success(), "{}", text(&inspect.stderr));
    let info = text(&inspect.stdout);
    assert!(info.contains("Classifier"));
    assert!(info.contains("hid1.w               [4, 8] 32"), "{info}");
    assert!(info.contains("out.w                [8, 3] 24"), "{info}");
    // 4·8 + 8 + 8·3 + 3
    assert!(info.contains("parameters 67"), "{info}");
    assert!(info.contains("seed 13"));
}

/// The training command of the crash test, writing its model to `out`.
fn crash_args<'a>(snapshot: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "data.csv",
        "-t",
        "6",
        "-l",
        "6,16:relu,3",
        "--threads",
        "1",
        "--save-progress",
        snapshot,
        "--save-every",
        "1",
        "--out",
        out,
        "max_updates=500",
        "patience=100000",
        "validate_every=2",
        "batch_size=16",
    ]
}

#[test]
fn sigkilled_training_resumes_from_its_snapshot_exactly() {
    let dir = tempfile::tempdir().unwrap();
    write_blobs(&dir.path().join("data.csv"), 300, 6, 1.6, 11);
    let reference = run(&crash_args("ref.snapshot", "ref"), dir.path());
    assert!(reference.status.success(), "{}", text(&reference.stderr));
    let expected = std::fs::read(dir.path().join("ref/model.theanets")).unwrap();

    let mut rng = Lcg(2026);
    let start = Instant::now();
    let mut resumed = 0;
    for round in 0..8 {
        if start.elapsed() > Duration::from_secs(4) && round >= 2 {
            break;
        }
        let (snapshot, out) = (format!("r{round}.snapshot"), format!("r{round}"));
        let mut child = Command::new(BIN)
            .args(crash_args(&snapshot, &out))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 + (rng.unit() * 400.0) as u64));
        child.kill().ok(); // SIGKILL; the run may also have finished already.
        child.wait().unwrap();
        if !dir.path().join(&snapshot).exists() {
            continue; // killed before the first snapshot: nothing to resume, nothing partial
        }
        // The snapshot loads and the run continues from it to the very parameters of an
        // uninterrupted run.
        let again = run(&crash_args(&snapshot, &out), dir.path());
        assert!(
            again.status.success(),
            "round {round}: {}",
            text(&again.stderr)
        );
        let stdout = text(&again.stdout);
        assert!(
            stdout.contains(&format!("resuming from snapshot {snapshot}")),
            "{stdout}"
        );
        if let Some(first) = stdout.lines().find(|l| l.starts_with("iteration")) {
            let it: usize = first.split_whitespace().nth(1).unwrap().parse().unwrap();
            assert!(
                it >= 2,
                "round {round} resumed at iteration {it}, not after the snapshot"
            );
            resumed += 1;
        }
        let model = std::fs::read(dir.path().join(&out).join("model.theanets")).unwrap();
        assert!(
            model == expected,
            "round {round}: resumed model differs from the uninterrupted one"
        );
    }
    assert!(
        resumed >= 1,
        "no round was killed mid-run with a snapshot to resume"
    );
}

#[test]
fn corrupt_or_wrong_shaped_data_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.csv"), "a,b,label\n1,2,0\n3,oops,1\n").unwrap();
    let out = run(
        &["train", "bad.csv", "-t", "label", "-l", "2,3"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("bad.csv") && err.contains("line 3"),
        "{err}"
    );
    assert!(!err.contains("panicked") && !err.contains("backtrace"));

    // A model for 4 features evaluated on a file with 2.
    write_blobs(&dir.path().join("blobs.csv"), 30, 4, 0.5, 1);
    let train = run(
        &[
            "train",
            "blobs.csv",
            "-t",
            "4",
            "-l",
            "4,3",
            "--out",
            "m",
            "max_updates=2",
        ],
        dir.path(),
    );
    assert!(train.status.success(), "{}", text(&train.stderr));
    std::fs::write(dir.path().join("narrow.csv"), "0.5,1\n0.25,2\n").unwrap();
    let out = run(
        &["eval", "m/model.theanets", "narrow.csv", "-t", "1"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains("narrow.csv"),
        "{err}"
    );
    assert!(
        lines[1..].iter().all(|l| l.starts_with("  caused by: ")),
        "{err}"
    );
    assert!(
        err.contains("[1, 2]") || err.contains("[2, 1]"),
        "names the shape: {err}"
    );

    // A damaged model file.
    std::fs::write(dir.path().join("junk.model"), b"not a model").unwrap();
    let out = run(&["inspect", "junk.model"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("junk.model"),
        "{err}"
    );
}

#[test]
fn a_bad_output_folder_fails_before_training() {
    let dir = tempfile::tempdir().unwrap();
    write_blobs(&dir.path().join("blobs.csv"), 30, 4, 0.5, 1);
    std::fs::write(dir.path().join("file"), "").unwrap();
    let out = run(
        &[
            "train",
            "blobs.csv",
            "-t",
            "4",
            "-l",
            "4,3",
            "--out",
            "file/run",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: output folder file/run: cannot create"),
        "{err}"
    );
    assert!(
        text(&out.stdout).is_empty(),
        "nothing trained: {}",
        text(&out.stdout)
    );

    // A read-only folder (root may write anyway, so only checked where the mode holds).
    use std::os::unix::fs::PermissionsExt;
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(ro.join("probe"), "").is_err() {
        let out = run(
            &["train", "blobs.csv", "-t", "4", "-l", "4,3", "--out", "ro"],
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).starts_with("error: output folder ro: cannot write in it"));
        assert!(text(&out.stdout).is_empty());
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn usage_errors_exit_2_and_help_covers_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["train", "--no-such-flag"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let expected: [(&str, &[&str]); 5] = [
        (
            "",
            &["train", "eval", "predict", "inspect", "--seed", "--out"],
        ),
        (
            "train",
            &[
                "--target",
                "--layers",
                "--kind",
                "--algorithm",
                "--set",
                "--valid-fraction",
                "--seed",
                "--save-progress",
                "--save-every",
                "--threads",
                "--out",
                "--header",
            ],
        ),
        ("eval", &["<MODEL>", "<DATA>", "--target"]),
        ("predict", &["<MODEL>", "<DATA>", "--output"]),
        ("inspect", &["<MODEL>"]),
    ];
    for (sub, flags) in expected {
        let args: Vec<&str> = [sub, "--help"]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        let out = run(&args, dir.path());
        assert!(out.status.success());
        let help = text(&out.stdout);
        for flag in flags {
            assert!(help.contains(flag), "`{sub} --help` lacks {flag}:\n{help}");
        }
    }
}

#[test]
fn string_class_names_are_kept_in_the_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["cat", "dog", "bird"];
    // Training data with string labels; the evaluation file lists the classes in another order
    // of first appearance, so its own numbering differs from the model's.
    let mut rng = Lcg(9);
    let mut rows = |n: usize, first: Option<usize>| {
        let mut csv = String::from("a,b,kind\n");
        let mut labels = Vec::new();
        for i in 0..n {
            let k = match (i, first) {
                (0, Some(k)) => k,
                _ => (rng.next() % 3) as usize,
            };
            let x = k as f64 + 0.3 * (rng.unit() - 0.5);
            csv.push_str(&format!("{x:.4},{:.4},{}\n", -x, names[k]));
            labels.push(names[k]);
        }
        (csv, labels)
    };
    let (train_csv, _) = rows(120, Some(0));
    std::fs::write(dir.path().join("train.csv"), train_csv).unwrap();
    let (test_csv, test_labels) = rows(30, Some(2));
    std::fs::write(dir.path().join("test.csv"), test_csv).unwrap();
    let train = run(
        &[
            "train",
            "train.csv",
            "--target",
            "kind",
            "--layers",
            "2,8:relu,3",
            "--out",
            "run",
            "--set",
            "learning_rate=0.05",
            "max_updates=60",
            "patience=1000",
        ],
        dir.path(),
    );
    assert!(train.status.success(), "{}", text(&train.stderr));
    let inspect = run(&["inspect", "run/model.theanets"], dir.path());
    // Numbered by first appearance in the training file, which starts with a cat.
    let shown = text(&inspect.stdout);
    let line = shown
        .lines()
        .find(|l| l.contains("classes"))
        .unwrap_or_default();
    assert!(line.trim().starts_with("classes cat, "), "{shown}");
    assert!(names.iter().all(|n| line.contains(n)), "{shown}");
    // Predictions come out as names, and match the test file's labels (the classes are far apart).
    let predict = run(
        &[
            "predict",
            "run/model.theanets",
            "test.csv",
            "--target",
            "kind",
        ],
        dir.path(),
    );
    assert!(predict.status.success(), "{}", text(&predict.stderr));
    let out = text(&predict.stdout);
    let predicted: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(predicted, test_labels, "{out}");
    // eval renumbers the file's names into the model's classes: perfect accuracy here.
    let eval = run(
        &["eval", "run/model.theanets", "test.csv", "--target", "kind"],
        dir.path(),
    );
    assert!(eval.status.success(), "{}", text(&eval.stderr));
    let acc = value_after(&text(&eval.stdout), "accuracy");
    assert!(
        (acc - 100.0).abs() < 1e-9 || (acc - 1.0).abs() < 1e-9,
        "{}",
        text(&eval.stdout)
    );
    // A name the model never saw is an error naming it.
    std::fs::write(dir.path().join("odd.csv"), "a,b,kind\n0,0,fish\n").unwrap();
    let odd = run(
        &["eval", "run/model.theanets", "odd.csv", "--target", "kind"],
        dir.path(),
    );
    assert_eq!(odd.status.code(), Some(1));
    let message = text(&odd.stderr);
    assert!(
        message.contains("class `fish` is not one of the model's classes: cat, "),
        "{message}"
    );
}
