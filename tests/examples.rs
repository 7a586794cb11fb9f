//! The small examples run and learn something real: each example's `run` is called here and its
//! summary is checked against what chance, or the untrained model, would give. The MNIST
//! examples need the data set and minutes of training, so they are only built (by
//! `cargo clippy --all-targets`), not run, here.

#[path = "../examples/xor.rs"]
#[allow(dead_code)]
mod xor;

#[path = "../examples/digits_classifier.rs"]
#[allow(dead_code)]
mod digits_classifier;

#[path = "../examples/deep_tied_autoencoder.rs"]
#[allow(dead_code)]
mod deep_tied_autoencoder;

#[path = "../examples/weighted_classification.rs"]
#[allow(dead_code)]
mod weighted_classification;

#[path = "../examples/char_lstm.rs"]
#[allow(dead_code)]
mod char_lstm;

#[path = "../examples/sequence_classification.rs"]
#[allow(dead_code)]
mod sequence_classification;

#[test]
fn xor_is_learned_for_every_seed() {
    for seed in [1, 2, 13] {
        let s = xor::run(seed).unwrap();
        for (p, t) in s.predictions.iter().zip(s.targets) {
            // No linear function of the two bits gets within 0.5 of all four targets (the best
            // one predicts 0.5 everywhere), so this needs the hidden layer.
            assert!((p - t).abs() < 0.2, "seed {seed}: {s:?}");
        }
    }
}

#[test]
fn digits_classifier_reaches_97_percent() {
    let s = digits_classifier::run(13).unwrap();
    println!("{s:?}");
    assert!(s.test_accuracy >= 0.97, "{s:?}");
    // The confusion matrix counts every test row once, its diagonal the correct ones.
    let total: usize = s.confusion.iter().flatten().sum();
    let right: usize = (0..10).map(|i| s.confusion[i][i]).sum();
    assert_eq!(total, 360);
    assert!((right as f32 / 360.0 - s.test_accuracy).abs() < 1e-6);
}

#[test]
fn deep_tied_autoencoder_pretrains_layer_by_layer_and_reconstructs() {
    let s = deep_tied_autoencoder::run(13).unwrap();
    println!("{s:?}");
    // One stage per encoder layer, the outer pair first, the last the whole model.
    assert_eq!(
        s.stages,
        [
            vec!["hid1", "out"],
            vec!["hid1", "hid2", "hid5", "out"],
            vec!["hid1", "hid2", "hid3", "hid4", "hid5", "out"],
        ]
    );
    // R² = 0 is predicting the mean image; a 12-value code must do much better.
    assert!(s.r2_pretrained >= 0.85, "{s:?}");
    assert!(s.r2_finetuned >= s.r2_pretrained - 0.01, "{s:?}");
}

#[test]
fn weights_raise_the_minority_recall() {
    let s = weighted_classification::run(13).unwrap();
    println!("{s:?}");
    assert!(
        s.recall_weighted >= s.recall_unweighted + 0.2,
        "weights should find many more minority samples: {s:?}"
    );
    // Without weights the model beats always answering the majority class (whose accuracy is
    // the majority's share of the test set); with weights it still finds most of the majority.
    let [plain, weighted] = &s.confusion;
    let majority = plain[0].iter().sum::<usize>() as f32;
    let total = majority + plain[1].iter().sum::<usize>() as f32;
    assert!(s.accuracy_unweighted > majority / total, "{s:?}");
    assert!(weighted[0][0] as f32 / majority >= 0.85, "{s:?}");
}

#[test]
fn char_lstm_predicts_better_than_character_frequencies() {
    let o = char_lstm::Options {
        chars: 6000,
        hidden: 48,
        window: 24,
        batch: 32,
        iterations: 20,
        seconds: 15.0,
        sample: 40,
        ..Default::default()
    };
    let s = char_lstm::run(&o).unwrap();
    println!("{s:?}");
    // The unigram model is the best that ignores the context; a language model that reads it
    // must do clearly better, and far better than guessing among the whole vocabulary.
    assert!(
        s.valid_perplexity < 0.75 * s.unigram_perplexity,
        "validation perplexity {} vs unigram {}",
        s.valid_perplexity,
        s.unigram_perplexity
    );
    assert!(s.valid_perplexity < 0.25 * s.vocabulary as f32, "{s:?}");
    // The sample continues the seed with the requested number of characters, reproducibly.
    assert!(s.sample.starts_with("The model "));
    assert_eq!(s.sample.chars().count(), "The model ".len() + 40);
    let again = char_lstm::run(&o).unwrap();
    assert_eq!(again.sample, s.sample);
}

#[test]
fn masked_sequence_classifier_beats_the_unmasked_one() {
    let s = sequence_classification::run(13, 12).unwrap();
    println!("{s:?}");
    let chance = s.class_1_share.max(1.0 - s.class_1_share);
    assert!(s.masked_accuracy >= 0.85, "{s:?}");
    assert!(s.masked_accuracy >= s.unmasked_accuracy + 0.08, "{s:?}");
    assert!(s.unmasked_accuracy > chance, "{s:?}");
}
