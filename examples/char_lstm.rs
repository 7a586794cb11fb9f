//! A character-level LSTM language model (theanets' `lstm-chime.py`/`char-rnn` idea) trained on a
//! text this project ships: its own user guide. The characters of the text are the vocabulary;
//! [`windows`] cuts the text into overlapping windows whose target at each step is the next
//! character; a recurrent [`Classifier`] (one-hot characters → `lstm` → softmax over the
//! vocabulary) learns to predict it. The last tenth of the text is held out for validation.
//!
//! Each iteration prints the training cross-entropy and perplexity (of its batches, before each
//! update) and the validation ones (measured before the iteration's updates), beside the
//! perplexity of a unigram model (character frequencies of the training part), which is what a
//! model ignoring the context scores. After training the model writes text from a seed string,
//! sampling each next character from its softmax sharpened by a temperature, with a seeded RNG so
//! that a run is reproducible.
//!
//! Run with `cargo run --release --example char_lstm -- [key=value ...]`, keys as in
//! [`Options`] (`chars`, `hidden`, `window`, `batch`, `iterations`, `seconds`, `seed`,
//! `sample`, `temperature`), e.g. `-- hidden=256 seconds=300`.

use nets::data::sequences::windows;
use nets::recurrent::{Classifier, SequenceOptions};
use nets::{LayerSpec, ModelOptions};
use optim::{Dataset, DatasetOptions};
use std::time::{Duration, Instant};
use tape::{Rng, Tensor};

/// The text the model learns: the project's user guide.
pub const TEXT: &str = include_str!("../docs/guide.md");

/// Sizes and budgets of a run.
#[derive(Clone, Debug)]
pub struct Options {
    /// How many characters of [`TEXT`] to use (from its start); 0 for all of it.
    pub chars: usize,
    /// LSTM units.
    pub hidden: usize,
    /// Steps per training window (the length of the context backpropagated through).
    pub window: usize,
    /// Windows per minibatch.
    pub batch: usize,
    /// At most this many training iterations (each a pass over the training windows).
    pub iterations: usize,
    /// Stop after the iteration that passes this much training time.
    pub seconds: f64,
    /// Seed of the weights, the batch order and the sampler.
    pub seed: u64,
    /// Characters to sample after training.
    pub sample: usize,
    /// Sampling temperature: below 1 favours the likely characters, 1 samples the model as is.
    pub temperature: f32,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            chars: 0,
            hidden: 128,
            window: 48,
            batch: 32,
            iterations: 30,
            seconds: 120.0,
            seed: 13,
            sample: 400,
            temperature: 0.6,
        }
    }
}

impl Options {
    /// Reads `key=value` arguments over the defaults; an unknown key or a bad value is an error
    /// naming it.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut o = Options::default();
        for arg in args {
            let (k, v) = arg
                .split_once('=')
                .ok_or_else(|| format!("argument `{arg}` is not key=value"))?;
            let bad = |e: &dyn std::fmt::Display| format!("bad value for `{k}`: `{v}` ({e})");
            let int = |v: &str| v.parse::<usize>().map_err(|e| bad(&e));
            match k {
                "chars" => o.chars = int(v)?,
                "hidden" => o.hidden = int(v)?,
                "window" => o.window = int(v)?,
                "batch" => o.batch = int(v)?,
                "iterations" => o.iterations = int(v)?,
                "sample" => o.sample = int(v)?,
                "seed" => o.seed = v.parse().map_err(|e| bad(&e))?,
                "seconds" => o.seconds = v.parse().map_err(|e| bad(&e))?,
                "temperature" => o.temperature = v.parse().map_err(|e| bad(&e))?,
                _ => return Err(format!("unknown option `{k}`")),
            }
        }
        Ok(o)
    }
}

/// One training iteration's figures.
#[derive(Clone, Debug)]
pub struct Iteration {
    /// Mean training cross-entropy (nats per character) over the iteration's batches.
    pub train_loss: f32,
    /// Validation cross-entropy at the start of the iteration, before its updates (when the
    /// training loop validates).
    pub valid_loss: f32,
}

/// What a run measured.
#[derive(Debug)]
pub struct Summary {
    /// Distinct characters of the text.
    pub vocabulary: usize,
    /// Perplexity of the unigram model (training frequencies) on the validation targets.
    pub unigram_perplexity: f32,
    /// The trained model's validation perplexity, `exp(cross-entropy)`.
    pub valid_perplexity: f32,
    /// Every iteration, in order.
    pub iterations: Vec<Iteration>,
    /// The seed string followed by the sampled characters.
    pub sample: String,
}

/// The sorted distinct characters of `text`, and `text` as indices into them.
fn vocabulary(text: &str) -> (Vec<char>, Vec<usize>) {
    let mut vocab: Vec<char> = text.chars().collect();
    vocab.sort_unstable();
    vocab.dedup();
    let ids = text
        .chars()
        .map(|c| vocab.binary_search(&c).unwrap_or(0))
        .collect();
    (vocab, ids)
}

/// `(n, time)` character indices as one-hot `(n, time, v)` inputs.
fn one_hot(ids: &Tensor, v: usize) -> nets::Result<Tensor> {
    let mut x = vec![0.0; ids.len() * v];
    for (i, &c) in ids.data().iter().enumerate() {
        x[i * v + c as usize] = 1.0;
    }
    let mut shape = ids.shape().to_vec();
    shape.push(v);
    Ok(Tensor::new(&shape, x)?)
}

/// `[x, labels]` of the windows of `ids`: one-hot inputs and next-character labels.
fn window_data(ids: &[usize], v: usize, window: usize) -> nets::Result<Vec<Tensor>> {
    let seq = Tensor::vector(&ids.iter().map(|&c| c as f32).collect::<Vec<_>>());
    // Windows overlap by half, so every character is predicted with short and long contexts.
    let (x, y) = windows(&seq, window, (window / 2).max(1))?;
    Ok(vec![one_hot(&x, v)?, y])
}

/// Perplexity on `test` of character frequencies counted in `train`, add-one smoothed so that a
/// character unseen in training still has a probability.
fn unigram_perplexity(train: &[usize], test: &[usize], v: usize) -> f32 {
    let mut counts = vec![1.0f64; v];
    for &c in train {
        counts[c] += 1.0;
    }
    let total: f64 = counts.iter().sum();
    let nll: f64 = test.iter().map(|&c| -(counts[c] / total).ln()).sum();
    (nll / test.len() as f64).exp() as f32
}

/// The index drawn from `probs` sharpened by `temperature` (`p^(1/t)`, renormalised).
fn draw(probs: &[f32], temperature: f32, rng: &mut Rng) -> usize {
    let t = f64::from(temperature.max(1e-3));
    let w: Vec<f64> = probs
        .iter()
        .map(|&p| f64::from(p.max(0.0)).powf(1.0 / t))
        .collect();
    let total: f64 = w.iter().sum();
    let mut u = f64::from(rng.uniform()) * total;
    for (i, &wi) in w.iter().enumerate() {
        u -= wi;
        if u <= 0.0 {
            return i;
        }
    }
    w.len() - 1
}

/// Writes `n` characters after `seed`, each drawn from the model's prediction at the last step
/// of the preceding `context` characters.
fn sample(
    net: &Classifier,
    vocab: &[char],
    seed: &str,
    n: usize,
    context: usize,
    temperature: f32,
    rng: &mut Rng,
) -> nets::Result<String> {
    let v = vocab.len();
    let mut ids: Vec<usize> = seed
        .chars()
        .filter_map(|c| vocab.binary_search(&c).ok())
        .collect();
    if ids.is_empty() {
        ids.push(0);
    }
    let mut out = String::from(seed);
    for _ in 0..n {
        let start = ids.len().saturating_sub(context);
        let ctx: Vec<f32> = ids[start..].iter().map(|&c| c as f32).collect();
        let len = ctx.len();
        let x = one_hot(&Tensor::new(&[1, len], ctx)?, v)?;
        let p = net.predict_proba(&x)?;
        let next = draw(&p.data()[(len - 1) * v..len * v], temperature, rng);
        ids.push(next);
        out.push(vocab[next]);
    }
    Ok(out)
}

/// Trains the language model as `o` says and samples from it.
pub fn run(o: &Options) -> nets::Result<Summary> {
    let text = if o.chars == 0 {
        TEXT
    } else {
        // Cut at a character boundary at or before `chars` bytes.
        let mut end = o.chars.min(TEXT.len());
        while !TEXT.is_char_boundary(end) {
            end -= 1;
        }
        &TEXT[..end]
    };
    let (vocab, ids) = vocabulary(text);
    let v = vocab.len();
    let cut = ids.len() * 9 / 10;
    let (train_ids, valid_ids) = (&ids[..cut], &ids[cut..]);
    let train = window_data(train_ids, v, o.window)?;
    let valid = window_data(valid_ids, v, o.window)?;
    let unigram = unigram_perplexity(train_ids, valid_ids, v);

    let net = Classifier::build(
        vec![
            LayerSpec::input(v),
            LayerSpec::lstm(o.hidden).forget_bias(1.0),
            LayerSpec::dense(v),
        ],
        ModelOptions {
            seed: o.seed,
            ..Default::default()
        },
        SequenceOptions::default(),
    )?;
    let options = DatasetOptions {
        batch_size: o.batch,
        seed: o.seed,
        ..Default::default()
    };
    let mut train_ds = Dataset::new("train", train, options.clone())?;
    let mut valid_ds = Dataset::new("valid", valid.clone(), options)?;
    let settings = [
        "learning_rate=0.01".to_string(),
        "max_gradient_norm=5".to_string(),
        format!("max_updates={}", o.iterations),
        "validate_every=1".to_string(),
        "patience=1000".to_string(),
    ];
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let mut trainer = net.trainer("adam", &settings)?;
    let started = Instant::now();
    let budget = Duration::from_secs_f64(o.seconds.max(0.0));
    let mut iterations = Vec::new();
    let mut run = trainer.iterate(&mut train_ds, Some(&mut valid_ds));
    for step in run.by_ref() {
        let (tm, vm) = step?;
        let it = Iteration {
            train_loss: tm.loss(),
            valid_loss: vm.loss(),
        };
        println!(
            "iteration {:3}  train loss {:.3} (perplexity {:6.2})  valid loss before it {:.3} (perplexity {:6.2})  [{:.1} s]",
            iterations.len() + 1,
            it.train_loss,
            it.train_loss.exp(),
            it.valid_loss,
            it.valid_loss.exp(),
            started.elapsed().as_secs_f64()
        );
        iterations.push(it);
        if started.elapsed() >= budget {
            break;
        }
    }
    // Validates what ran since the last validation and puts the best parameters back.
    run.finish()?;
    let valid_perplexity = net.loss_on(&valid)?.exp();
    let mut rng = Rng::from_name(o.seed, "sampler");
    let seed_text = "The model ";
    let sample = sample(
        &net,
        &vocab,
        seed_text,
        o.sample,
        o.window,
        o.temperature,
        &mut rng,
    )?;
    Ok(Summary {
        vocabulary: v,
        unigram_perplexity: unigram,
        valid_perplexity,
        iterations,
        sample,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = Options::from_args(std::env::args().skip(1))?;
    println!("{o:?}");
    let s = run(&o)?;
    println!(
        "vocabulary {} characters; validation perplexity {:.2} (unigram model {:.2})",
        s.vocabulary, s.valid_perplexity, s.unigram_perplexity
    );
    println!(
        "--- sample (temperature {}) ---\n{}",
        o.temperature, s.sample
    );
    Ok(())
}
