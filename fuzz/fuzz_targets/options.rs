//! Every text entry point of the option parsers on arbitrary bytes: each line is a `key=value`
//! pair (or a name, for the parsers of names). A panic is the failure libFuzzer reports; the
//! proptest suites (`crates/*/tests/fuzz.rs`) check the values of what parses.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nets::activations::Activation;
use nets::experiment::SaveEvery;
use nets::{LossKind, Regularizers, TrainOptions};
use optim::options::{configure, parse_bool, split_pair};
use optim::{Algorithm, LoopOptions, RuleOptions};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.lines().collect();
    for alg in Algorithm::ALL {
        let mut rule = RuleOptions::new(alg);
        let mut lp = LoopOptions::default();
        let _ = configure(&mut rule, &mut lp, lines.iter().copied());
        let _ = TrainOptions::parse(alg, 0, &lines);
    }
    let mut regs = Regularizers::default();
    for line in &lines {
        if let Ok((k, v)) = split_pair(line) {
            let _ = regs.set(k, v);
        }
        let _ = parse_bool(line);
        let _ = line.parse::<Algorithm>();
        let _ = line.parse::<SaveEvery>();
        let _ = line.parse::<LossKind>();
        let _ = Activation::build(line, "fuzz", 3);
    }
});
