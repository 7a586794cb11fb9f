//! Fuzzing the option parsers: random, mostly invalid `key=value` text for every entry point
//! (`RuleOptions::set`/`set_all`, `LoopOptions::set`, `configure`, `split_pair`, `parse_bool`,
//! `Algorithm::from_str`, `closest`); and datasets: random arrays (ranks 0..2, 0..6 rows,
//! lengths that disagree, NaN) and options, then damaged saved states.
//!
//! Each case runs under `catch_unwind`: a parser must return `Ok` or an `Error::Config` whose
//! text names the option, never panic. Values the strategy built from a known number or boolean
//! are also checked against this file's own model of each option (its type and valid range, as
//! `docs/options.md` states them), so a value accepted out of range, or stored as something other
//! than what was written, fails too.
//!
//! Cases per property: proptest's default budget below, or `PROPTEST_CASES` for a long campaign
//! (`PROPTEST_CASES=100000 cargo test --release -p optim --test fuzz`).

use optim::options::{closest, configure, parse_bool, split_pair};
use optim::{Algorithm, Dataset, DatasetOptions, DatasetState, Error, LoopOptions, RuleOptions};
use proptest::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tape::Tensor;

/// Cases per property when `PROPTEST_CASES` is not set: small, so CI stays fast.
const CI_CASES: u32 = 1000;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(CI_CASES);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Runs `f`, turning a panic into a test failure that shows the input.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| TestCaseError::fail(format!("panic on {what}")))
}

/// What the test knows an option accepts, written from the option reference, not the code.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A finite f32 ≥ 0.
    NonNeg,
    /// A finite f32 > 0.
    Positive,
    /// An f32 in [0, 1).
    Unit,
    /// A finite f32 ≥ 1.
    AtLeastOne,
    /// An f32 in (0, 1].
    Shrink,
    /// A boolean.
    Bool,
    /// A whole number ≥ the bound.
    Whole(u64),
    /// Any u64.
    Seed,
    /// A whole number ≥ 1, or `none`/`unlimited`.
    MaxUpdates,
}

const RULE_KEYS: &[(&str, Kind)] = &[
    ("learning_rate", Kind::NonNeg),
    ("momentum", Kind::Unit),
    ("nesterov", Kind::Bool),
    ("max_gradient_elem", Kind::NonNeg),
    ("max_gradient_norm", Kind::NonNeg),
    ("rms_halflife", Kind::Positive),
    ("rms_regularizer", Kind::Positive),
    ("beta1_halflife", Kind::Positive),
    ("beta2_halflife", Kind::Positive),
    ("rprop_increase", Kind::AtLeastOne),
    ("rprop_decrease", Kind::Shrink),
    ("rprop_min_step", Kind::NonNeg),
    ("rprop_max_step", Kind::NonNeg),
];

const LOOP_KEYS: &[(&str, Kind)] = &[
    ("validate_every", Kind::Whole(1)),
    ("patience", Kind::Whole(0)),
    ("min_improvement", Kind::NonNeg),
    ("max_updates", Kind::MaxUpdates),
    ("monitor_gradients", Kind::Bool),
    ("seed", Kind::Seed),
];

/// A value the test can predict, or text it cannot.
#[derive(Clone, Debug, PartialEq)]
enum Known {
    Float(f32),
    Bool(bool),
    Whole(u128),
    NoLimit,
    Unknown,
}

/// A value as text with what it means. Numbers are written from an f32 in forms that parse back
/// to exactly that f32 (`{}` and `{:e}` are shortest round-trip forms), so no second parser is
/// needed to know the expected value.
fn value() -> impl Strategy<Value = (String, Known)> {
    let pad = prop::sample::select(vec!["", " ", "\t", "  "]);
    let float = prop_oneof![
        prop::sample::select(vec![
            0.0f32,
            -0.0,
            1.0,
            0.5,
            0.999_999_9,
            1e-8,
            14.0,
            100.0,
            1.01,
            0.99,
            -1.0,
            -1e-30,
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-45,
        ]),
        -1e3f32..1e3,
        0.0f32..1.0,
        any::<f32>(),
    ];
    let float_text = (float, any::<bool>(), pad.clone(), pad.clone()).prop_map(|(x, sci, a, b)| {
        let body = if sci {
            format!("{x:e}")
        } else {
            format!("{x}")
        };
        let known = if x.is_nan() {
            Known::Unknown
        } else {
            Known::Float(x)
        };
        (format!("{a}{body}{b}"), known)
    });
    let specials = prop::sample::select(vec![
        ("NaN", Known::Unknown),
        ("nan", Known::Unknown),
        ("inf", Known::Float(f32::INFINITY)),
        ("-inf", Known::Float(f32::NEG_INFINITY)),
        ("infinity", Known::Float(f32::INFINITY)),
        ("1e39", Known::Float(f32::INFINITY)),
        ("-1e39", Known::Float(f32::NEG_INFINITY)),
        ("1e-50", Known::Float(0.0)),
        ("none", Known::NoLimit),
        ("NONE", Known::NoLimit),
        ("unlimited", Known::NoLimit),
        ("0", Known::Whole(0)),
        ("00", Known::Whole(0)),
        ("+0", Known::Whole(0)),
        ("007", Known::Whole(7)),
        ("+3", Known::Whole(3)),
        ("18446744073709551615", Known::Whole(u64::MAX as u128)),
        ("18446744073709551616", Known::Whole(u64::MAX as u128 + 1)),
        ("99999999999999999999999999999", Known::Unknown),
        ("-1", Known::Unknown),
        ("1.5", Known::Float(1.5)),
        ("1_000", Known::Unknown),
        ("0x10", Known::Unknown),
        ("", Known::Unknown),
        ("=", Known::Unknown),
        ("true", Known::Bool(true)),
        ("False", Known::Bool(false)),
        (" yes ", Known::Bool(true)),
        ("OFF", Known::Bool(false)),
        ("on", Known::Bool(true)),
        ("ja", Known::Unknown),
        ("１", Known::Unknown),
        ("1\u{0}", Known::Unknown),
        ("ünïcödé", Known::Unknown),
        ("\u{feff}1", Known::Unknown),
    ])
    .prop_map(|(t, k)| (t.to_string(), k));
    let whole =
        prop_oneof![0u64..20, any::<u64>()].prop_map(|n| (n.to_string(), Known::Whole(n as u128)));
    let garbage = prop_oneof![
        any::<String>(),
        "[0-9eE+.-]{0,8}",
        "[ a-zA-Z0-9=_.,-]{0,12}",
    ]
    .prop_map(|s| (s, Known::Unknown));
    prop_oneof![
        3 => float_text,
        3 => specials,
        2 => whole,
        2 => garbage,
    ]
}

/// A key: valid ones often, and near misses, other case, padding, unicode, empty.
fn key() -> impl Strategy<Value = String> {
    let valid: Vec<&str> = RULE_KEYS.iter().chain(LOOP_KEYS).map(|(k, _)| *k).collect();
    let valid2 = valid.clone();
    prop_oneof![
        6 => prop::sample::select(valid).prop_map(String::from),
        1 => prop::sample::select(valid2).prop_map(|k| k.to_uppercase()),
        1 => prop::sample::select(vec!["", " ", "learning-rate", "lr", "momentum ", "ßeed", "nesterov\u{0}", "seed=1"])
            .prop_map(String::from),
        1 => any::<String>(),
    ]
}

fn kind_of(key: &str) -> Option<Kind> {
    RULE_KEYS
        .iter()
        .chain(LOOP_KEYS)
        .find(|(k, _)| *k == key)
        .map(|(_, kind)| *kind)
}

/// The value an option should hold after `set(key, text)`, or `None` if it should be refused;
/// `Some(Unknown)` when the test cannot tell.
fn expected(kind: Kind, known: &Known) -> Option<Known> {
    use Known::*;
    let float_ok = |x: f32| match kind {
        Kind::NonNeg => x.is_finite() && x >= 0.0,
        Kind::Positive => x.is_finite() && x > 0.0,
        Kind::Unit => (0.0..1.0).contains(&x),
        Kind::AtLeastOne => x.is_finite() && x >= 1.0,
        Kind::Shrink => x > 0.0 && x <= 1.0,
        _ => false,
    };
    match (kind, known) {
        (_, Unknown) => Some(Unknown),
        (Kind::Bool, Bool(b)) => Some(Bool(*b)),
        // "1" and "0" are booleans, "00" and "1e0" are not.
        (Kind::Bool, Whole(n)) if *n <= 1 => Some(Unknown),
        (Kind::Bool, Float(x)) if *x == 0.0 || *x == 1.0 => Some(Unknown),
        (Kind::Bool, _) => None,
        (Kind::Whole(min), Whole(n)) => {
            (*n >= min as u128 && *n <= usize::MAX as u128).then_some(Whole(*n))
        }
        (Kind::Seed, Whole(n)) => (*n <= u64::MAX as u128).then_some(Whole(*n)),
        (Kind::MaxUpdates, Whole(n)) => (*n >= 1 && *n <= usize::MAX as u128).then_some(Whole(*n)),
        (Kind::MaxUpdates, NoLimit) => Some(NoLimit),
        (Kind::Whole(_) | Kind::Seed | Kind::MaxUpdates, Float(_)) => Some(Unknown), // "0" vs "0.0"
        (Kind::Whole(_) | Kind::Seed | Kind::MaxUpdates, _) => None,
        (_, Float(x)) => float_ok(*x).then_some(Float(*x)),
        // Both `as` and parsing round an integer to the nearest f32.
        (_, Whole(n)) => float_ok(*n as f32).then_some(Float(*n as f32)),
        (_, Bool(_) | NoLimit) => None,
    }
}

/// The current value of `key` as the test's model sees it.
fn actual(rule: &RuleOptions, lp: &LoopOptions, key: &str) -> Known {
    let f = |x: f32| Known::Float(x);
    match key {
        "learning_rate" => f(rule.learning_rate),
        "momentum" => f(rule.momentum),
        "nesterov" => Known::Bool(rule.nesterov),
        "max_gradient_elem" => f(rule.max_gradient_elem),
        "max_gradient_norm" => f(rule.max_gradient_norm),
        "rms_halflife" => f(rule.rms_halflife),
        "rms_regularizer" => f(rule.rms_regularizer),
        "beta1_halflife" => f(rule.beta1_halflife),
        "beta2_halflife" => f(rule.beta2_halflife),
        "rprop_increase" => f(rule.rprop_increase),
        "rprop_decrease" => f(rule.rprop_decrease),
        "rprop_min_step" => f(rule.rprop_min_step),
        "rprop_max_step" => f(rule.rprop_max_step),
        "validate_every" => Known::Whole(lp.validate_every as u128),
        "patience" => Known::Whole(lp.patience as u128),
        "min_improvement" => f(lp.min_improvement),
        "max_updates" => lp
            .max_updates
            .map_or(Known::NoLimit, |m| Known::Whole(m as u128)),
        "monitor_gradients" => Known::Bool(lp.monitor_gradients),
        "seed" => Known::Whole(lp.seed as u128),
        _ => Known::Unknown,
    }
}

/// Whether two known values agree; floats bit for bit apart from the sign of zero.
fn same(a: &Known, b: &Known) -> bool {
    match (a, b) {
        (Known::Float(x), Known::Float(y)) => x == y,
        (Known::Whole(x), Known::Float(y)) | (Known::Float(y), Known::Whole(x)) => {
            *x as f64 == *y as f64
        }
        _ => a == b,
    }
}

/// The whole-option constraints the model adds to single values.
fn combined_ok(rule: &RuleOptions) -> bool {
    rule.rprop_max_step >= rule.rprop_min_step
        && (rule.algorithm != Algorithm::Nag || rule.nesterov)
}

/// An error from a parser: a configuration error whose text is not empty and names `needle`.
fn check_error(e: &Error, needle: &str) -> Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert!(
        matches!(e, Error::Config { .. }),
        "not a config error: {e:?}"
    );
    prop_assert!(!text.trim().is_empty(), "empty message");
    prop_assert!(text.contains(needle), "`{text}` does not name `{needle}`");
    Ok(())
}

/// Checks one `set(key, value)` on copies of both option sets against the model.
fn check_set(
    algorithm: Algorithm,
    k: &str,
    text: &str,
    known: &Known,
) -> Result<(), TestCaseError> {
    let mut rule = RuleOptions::new(algorithm);
    let mut lp = LoopOptions::default();
    let before = (rule.clone(), lp.clone());
    let is_rule = RULE_KEYS.iter().any(|(r, _)| *r == k);
    let result = no_panic(&format!("set({k:?}, {text:?})"), || {
        if is_rule {
            rule.set(k, text)
        } else {
            lp.set(k, text)
        }
    })?;
    let Some(kind) = kind_of(k) else {
        return match result {
            Err(e) => check_error(&e, &format!("option `{k}`")),
            Ok(()) => Err(TestCaseError::fail(format!("unknown key {k:?} accepted"))),
        };
    };
    match result {
        Err(e) => {
            // A value that breaks a rule between options (rprop_min_step > rprop_max_step)
            // may be reported under the other option; it names this one in its text.
            check_error(&e, k)?;
            // On error nothing changes.
            prop_assert_eq!((&rule, &lp), (&before.0, &before.1));
            if let Some(want) = expected(kind, known) {
                let mut probe = before.0.clone();
                // A value in range may still break a combined rule (rprop steps, NAG's nesterov).
                let combined = if is_rule && want != Known::Unknown {
                    set_model(&mut probe, k, &want);
                    combined_ok(&probe)
                } else {
                    true
                };
                prop_assert!(
                    want == Known::Unknown || !combined,
                    "{k}={text:?} refused ({e}) though the model accepts {want:?}"
                );
            }
        }
        Ok(()) => {
            let got = actual(&rule, &lp, k);
            match expected(kind, known) {
                None => prop_assert!(
                    false,
                    "{k}={text:?} accepted as {got:?}; the model refuses it"
                ),
                Some(Known::Unknown) => {}
                Some(want) => prop_assert!(
                    same(&got, &want),
                    "{k}={text:?} stored {got:?}, expected {want:?}"
                ),
            }
            // Whatever was accepted passes the options' own validation and prints as text that
            // sets the same value again (the round trip the option reference relies on).
            no_panic("validate", || rule.validate())?.map_err(|e| {
                TestCaseError::fail(format!("{k}={text:?} accepted but invalid: {e}"))
            })?;
            no_panic("validate", || lp.validate())?.map_err(|e| {
                TestCaseError::fail(format!("{k}={text:?} accepted but invalid: {e}"))
            })?;
            let printed = if is_rule {
                (RuleOptions::TABLE.iter().find(|s| s.key == k).unwrap().get)(&rule)
            } else {
                (LoopOptions::TABLE.iter().find(|s| s.key == k).unwrap().get)(&lp)
            };
            let (mut rule2, mut lp2) = before;
            if is_rule {
                rule2.set(k, &printed)
            } else {
                lp2.set(k, &printed)
            }
            .map_err(|e| {
                TestCaseError::fail(format!("{k}: printed value {printed:?} refused: {e}"))
            })?;
            prop_assert!(
                same(&actual(&rule2, &lp2, k), &got),
                "{k}: {printed:?} did not round-trip"
            );
        }
    }
    Ok(())
}

/// Puts a model value into the rule options (for the combined checks).
fn set_model(rule: &mut RuleOptions, key: &str, v: &Known) {
    let x = match v {
        Known::Float(x) => *x,
        Known::Whole(n) => *n as f32,
        Known::Bool(b) => {
            if key == "nesterov" {
                rule.nesterov = *b;
            }
            return;
        }
        _ => return,
    };
    match key {
        "rprop_min_step" => rule.rprop_min_step = x,
        "rprop_max_step" => rule.rprop_max_step = x,
        _ => {}
    }
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop::sample::select(Algorithm::ALL.to_vec())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn set_accepts_what_the_model_accepts_and_names_the_key(
        algorithm in algorithm(), k in key(), (text, known) in value()
    ) {
        check_set(algorithm, &k, &text, &known)?;
    }

    #[test]
    fn pair_lists_never_panic_and_apply_in_order(
        algorithm in algorithm(),
        pairs in prop::collection::vec((key(), value(), prop::sample::select(vec!["=", " = ", "", "==", ":"])), 0..6)
    ) {
        let texts: Vec<String> = pairs.iter().map(|(k, (v, _), sep)| format!("{k}{sep}{v}")).collect();
        let mut rule = RuleOptions::new(algorithm);
        let mut lp = LoopOptions::default();
        let result = no_panic(&format!("configure({texts:?})"), || {
            configure(&mut rule, &mut lp, texts.iter().map(String::as_str))
        })?;
        // The independent reading of the list: split at the first `=`, trim, apply in order;
        // the first pair that does not apply is the one the error names.
        let mut model_rule = RuleOptions::new(algorithm);
        let mut model_lp = LoopOptions::default();
        let mut first_bad = None;
        for t in &texts {
            let Some((k, v)) = t.split_once('=') else {
                first_bad = Some(format!("option `{t}`"));
                break;
            };
            let (k, v) = (k.trim(), v.trim());
            let applied = if RULE_KEYS.iter().any(|(r, _)| *r == k) {
                model_rule.set(k, v).is_ok()
            } else if LOOP_KEYS.iter().any(|(l, _)| *l == k) {
                model_lp.set(k, v).is_ok()
            } else {
                false
            };
            if !applied {
                first_bad = Some(k.to_string());
                break;
            }
        }
        match (result, first_bad) {
            (Ok(()), None) => {
                prop_assert_eq!(&rule, &model_rule);
                prop_assert_eq!(&lp, &model_lp);
            }
            (Err(e), Some(needle)) => check_error(&e, &needle)?,
            (r, bad) => prop_assert!(false, "{texts:?}: got {r:?}, model's first bad pair {bad:?}"),
        }
        // set_all over rule keys only reads the list the same way.
        let mut rule2 = RuleOptions::new(algorithm);
        let r2 = no_panic("set_all", || rule2.set_all(texts.iter().map(String::as_str)))?;
        if let Err(e) = r2 {
            prop_assert!(!e.to_string().is_empty());
            prop_assert!(matches!(e, Error::Config { .. }), "{:?}", e);
        }
    }

    #[test]
    fn split_pair_splits_at_the_first_equals_sign(s in any::<String>()) {
        let r = no_panic("split_pair", || split_pair(&s))?;
        match s.find('=') {
            Some(i) => prop_assert_eq!(r.ok(), Some((s[..i].trim(), s[i + 1..].trim()))),
            None => check_error(&r.unwrap_err(), &format!("option `{s}`"))?,
        }
    }

    #[test]
    fn parse_bool_reads_exactly_the_listed_words(s in prop_oneof![
        any::<String>(),
        prop::sample::select(vec!["true", "TRUE", " on ", "Yes", "1", "0", "no", "Off", "fAlSe", "t", "y", "01", "truee", "İ", "ON\u{a0}"]).prop_map(String::from),
    ]) {
        let got = no_panic("parse_bool", || parse_bool(&s))?;
        // Trimming is Unicode whitespace (str::trim); case folding is ASCII only.
        let lower: String = s.trim().chars().map(|c| c.to_ascii_lowercase()).collect();
        let want = match lower.as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        };
        prop_assert_eq!(got, want, "{:?}", s);
    }

    #[test]
    fn algorithm_names_parse_or_list_the_valid_ones(s in prop_oneof![
        any::<String>(),
        prop::sample::select(Algorithm::ALL.to_vec()).prop_map(|a| format!(" {} ", a.name().to_uppercase())),
    ]) {
        let r = no_panic("Algorithm::from_str", || s.parse::<Algorithm>())?;
        let want = Algorithm::ALL.iter().copied().find(|a| a.name() == s.trim().to_lowercase());
        match (r, want) {
            (Ok(a), Some(w)) => prop_assert_eq!(a, w),
            (Err(e), None) => {
                check_error(&e, &format!("algorithm `{s}`"))?;
                prop_assert!(e.to_string().contains("sgd, nag"), "{}", e);
            }
            (r, w) => prop_assert!(false, "{s:?}: got {r:?}, expected {w:?}"),
        }
    }

    #[test]
    fn closest_returns_a_valid_key_or_nothing(s in any::<String>(), n in 0usize..4) {
        let valid: Vec<&str> = RuleOptions::keys().take(n).collect();
        let got = no_panic("closest", || closest(&s, &valid))?;
        if valid.is_empty() {
            prop_assert_eq!(got, "");
        } else {
            prop_assert!(valid.contains(&got));
        }
    }
}

/// Found by the fuzzer: `max_updates=00` (or `+0`) was stored as `Some(0)`, "no updates", which
/// `validate` then refuses; only the literal text `0` was caught.
#[test]
fn max_updates_zero_written_another_way_is_refused() {
    for text in ["00", "+0", "000"] {
        let mut lp = LoopOptions::default();
        let e = lp.set("max_updates", text).expect_err(text);
        assert!(e.to_string().contains("option `max_updates`"), "{e}");
        assert_eq!(lp.max_updates, None);
    }
    let mut lp = LoopOptions::default();
    lp.set("max_updates", "007").unwrap();
    assert_eq!(lp.max_updates, Some(7));
}

/// Arrays for a dataset: `rows` rows (each array's first axis, sometimes off by one), with
/// row `i` of the first array holding `i` everywhere so a batch shows which rows it holds.
fn dataset_arrays() -> impl Strategy<Value = Vec<Tensor>> {
    let array = (
        prop::sample::select(vec![0usize, 1, 1, 2]),
        prop::collection::vec(0usize..3, 0..2),
    );
    (
        0usize..7,
        prop::collection::vec((array, prop::bool::weighted(0.1)), 0..3),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(rows, arrays, nan)| {
            arrays
                .into_iter()
                .enumerate()
                .map(|(k, ((rank, dims), off))| {
                    let mut shape = vec![rows + usize::from(off && k > 0)];
                    shape.extend(dims.iter().take(rank.saturating_sub(1)).map(|d| d + 1));
                    if rank == 0 {
                        shape.clear();
                    }
                    let mut t = Tensor::from_fn(&shape, |i| i.first().map_or(0.0, |&r| r as f32));
                    if nan && !t.is_empty() {
                        t.data_mut()[0] = f32::NAN;
                    }
                    t
                })
                .collect()
        })
}

/// The rows a batch holds, read from its first array (row `i` holds `i`).
fn rows_of(batch: &[tape::TensorView<'_>]) -> Vec<usize> {
    let first = &batch[0];
    let per_row = first.shape()[1..].iter().product::<usize>();
    first
        .data()
        .chunks(per_row.max(1))
        .map(|c| c[0] as usize)
        .collect()
}

/// A damaged copy of a dataset's state, or the state itself.
fn damage_state(mut s: DatasetState, how: u8, k: usize) -> DatasetState {
    match how {
        0 => s.cursor = k,
        1 => s.batch_order.push(k),
        2 => {
            s.batch_order.pop();
        }
        3 if !s.batch_order.is_empty() => {
            let n = s.batch_order.len();
            s.batch_order[k % n] = s.batch_order[(k % n + 1) % n];
        }
        4 => s.rng = [0; 4],
        5 => s.sample_order = s.sample_order.map_or(Some(vec![k]), |_| None),
        6 => {
            if let Some(p) = &mut s.sample_order {
                p.push(k);
            }
        }
        _ => {}
    }
    s
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn datasets_cut_every_row_once_per_pass_or_refuse(
        arrays in dataset_arrays(),
        batch_size in prop::sample::select(vec![0usize, 1, 2, 3, 7, usize::MAX]),
        iteration_size in prop::option::of(0usize..4),
        shuffle_samples in any::<bool>(),
        shuffle_batches in any::<bool>(),
        check_finite in prop::bool::weighted(0.9),
        seed in any::<u64>(),
        (how, k) in (0u8..8, prop_oneof![0usize..8, Just(usize::MAX)]),
    ) {
        let options = DatasetOptions {
            batch_size,
            iteration_size,
            shuffle_samples,
            shuffle_batches,
            check_finite,
            seed,
        };
        let total = arrays.first().and_then(|a| a.shape().first().copied());
        let made = no_panic("Dataset::new", || Dataset::new("d", arrays.clone(), options))?;
        let mut ds = match made {
            Err(e) => {
                prop_assert!(matches!(e, Error::Data { .. }), "{e:?}");
                prop_assert!(e.to_string().contains("dataset `d`"), "{e}");
                return Ok(());
            }
            Ok(ds) => ds,
        };
        let rows = total.expect("a dataset has a first array with rows");
        prop_assert!(rows > 0);
        let batches = ds.num_batches().expect("arrays have a batch count");
        let per_batch = if batch_size == 0 { rows } else { batch_size.min(rows) };
        prop_assert_eq!(batches, rows.div_ceil(per_batch));
        // Two passes: each hands out every row exactly once, in batches of at most the size.
        for _ in 0..2 {
            let mut seen = Vec::new();
            for _ in 0..batches {
                let b = no_panic("next_batch", || ds.next_batch().map(|b| (rows_of(&b), b.iter().map(|v| v.shape()[0]).collect::<Vec<_>>())))?
                    .map_err(|e| TestCaseError::fail(format!("next_batch: {e}")))?;
                prop_assert!(b.1.iter().all(|&n| n == b.0.len()), "arrays of one batch differ in rows: {:?}", b.1);
                prop_assert!(b.0.len() <= per_batch && !b.0.is_empty());
                seen.extend(b.0);
            }
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..rows).collect::<Vec<_>>());
        }
        // A damaged state is refused, leaving the dataset as it was, or taken and usable.
        let state = ds.state();
        let damaged = damage_state(state.clone(), how, k);
        match no_panic("set_state", || ds.set_state(damaged.clone()))? {
            Err(e) => {
                prop_assert!(e.to_string().contains("dataset `d`"), "{e}");
                prop_assert_eq!(ds.state(), state);
            }
            Ok(()) => prop_assert_eq!(ds.state(), damaged),
        }
        for _ in 0..batches + 1 {
            let b = no_panic("next_batch after set_state", || ds.next_batch().map(|b| rows_of(&b)))?;
            if let Ok(r) = b {
                prop_assert!(r.iter().all(|&i| i < rows));
            }
        }
    }
}
