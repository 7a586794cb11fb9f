//! Model files and safetensors interchange: a saved and reloaded model predicts bit for bit,
//! custom layers come back through a registry, writes are atomic, and damaged or foreign files
//! (truncated, bit-flipped, another format or version, lengths claiming gigabytes, not
//! MessagePack) are typed errors naming the file. The PyTorch mapping is checked against a
//! fixture written by Python's `safetensors` package with its outputs computed by numpy.

mod common;

use nets::{
    Autoencoder, Classifier, Error, LayerSpec, Layout, Loss, LossKind, ModelOptions, Network,
    Registry, Regressor,
};
use optim::{Dataset, DatasetOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use tape::{Rng, Tensor};

const ROWS: usize = 24;

fn normal(shape: &[usize], seed: u64) -> Tensor {
    let mut t = Tensor::zeros(shape);
    Rng::new(seed).fill_normal(t.data_mut(), 0.0, 1.0);
    t
}

/// A fresh directory for one test (tests run in parallel in one process).
fn scratch(test: &str) -> PathBuf {
    common::scratch("files", test)
}

/// A few SGD updates, so that saved parameters differ from the ones a rebuild initialises.
fn train_a_little(net: &Network, data: Vec<Tensor>) {
    let opts = DatasetOptions {
        batch_size: 8,
        ..Default::default()
    };
    let mut ds = Dataset::new("train", data, opts).unwrap();
    net.trainer("sgd", &["learning_rate=0.05", "max_updates=6"])
        .unwrap()
        .train(&mut ds, None)
        .unwrap();
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

/// The `problem` of a file error about `path`; any other outcome fails the test.
fn file_problem<T>(result: nets::Result<T>, path: &Path) -> String {
    match result {
        Err(Error::File { path: p, problem }) => {
            assert_eq!(p, path);
            let shown = Error::File {
                path: p,
                problem: problem.clone(),
            }
            .to_string();
            assert!(shown.contains(&path.display().to_string()), "{shown}");
            problem
        }
        Err(e) => panic!("expected a file error about {}, got {e:?}", path.display()),
        Ok(_) => panic!(
            "expected a file error about {}, got a model",
            path.display()
        ),
    }
}

fn options() -> ModelOptions {
    ModelOptions {
        seed: 99,
        monitors: vec![("hid1:out".into(), vec![0.1, 0.5])],
        ..Default::default()
    }
}

#[test]
fn a_regressor_predicts_bit_for_bit_after_save_and_load() {
    let dir = scratch("regressor");
    let x = normal(&[ROWS, 4], 1);
    let mut opts = options();
    opts.losses = vec![
        Loss::new(LossKind::Mse),
        Loss {
            weight: 0.5,
            ..Loss::new(LossKind::Mae)
        },
    ];
    let specs = vec![
        LayerSpec::input(4),
        LayerSpec::dense(5).activation("prelu").std(0.3),
        LayerSpec::dense(3)
            .name("mid")
            .activation("tanh")
            .bias(0.1, 0.2),
        LayerSpec::dense(2).inputs(&["mid", "hid1"]),
    ];
    let net = Regressor::build(specs.clone(), opts.clone()).unwrap();
    train_a_little(&net, vec![x.clone(), normal(&[ROWS, 2], 2)]);
    let path = dir.join("r.model");
    net.save(&path).unwrap();
    let back = Regressor::load(&path).unwrap();
    assert_eq!(
        bits(&back.predict(&x).unwrap()),
        bits(&net.predict(&x).unwrap())
    );
    // Training moved the parameters, so equality comes from the file, not from the seed.
    let fresh = Regressor::build(specs, opts.clone()).unwrap();
    assert_ne!(
        bits(&fresh.predict(&x).unwrap()),
        bits(&net.predict(&x).unwrap())
    );
    assert_eq!(back.losses(), net.losses());
    let names = |n: &Network| {
        n.params()
            .iter()
            .map(|p| p.name().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&back), names(&net));
    let data = [x.clone(), normal(&[ROWS, 2], 2)];
    let regs = nets::Regularizers::default();
    assert_eq!(
        back.evaluate(&data, &regs).unwrap(),
        net.evaluate(&data, &regs).unwrap()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_classifier_and_a_tied_autoencoder_predict_bit_for_bit_after_save_and_load() {
    let dir = scratch("classifier-autoencoder");
    let x = normal(&[ROWS, 6], 3);
    let labels: Vec<f32> = (0..ROWS).map(|i| (i % 3) as f32).collect();
    let c = Classifier::build(
        vec![6.into(), LayerSpec::dense(7).activation("relu"), 3.into()],
        options(),
    )
    .unwrap();
    train_a_little(&c, vec![x.clone(), Tensor::vector(&labels)]);
    c.save(dir.join("c.model")).unwrap();
    let c2 = Classifier::load(dir.join("c.model")).unwrap();
    assert_eq!(
        bits(&c2.predict_proba(&x).unwrap()),
        bits(&c.predict_proba(&x).unwrap())
    );
    assert_eq!(c2.predict(&x).unwrap(), c.predict(&x).unwrap());

    let specs = vec![
        6.into(),
        LayerSpec::dense(4).activation("sigmoid"),
        LayerSpec::dense(2),
        LayerSpec::tied().activation("sigmoid"),
        LayerSpec::tied(),
    ];
    let a = Autoencoder::build(specs, options()).unwrap();
    train_a_little(&a, vec![x.clone()]);
    a.save(dir.join("a.model")).unwrap();
    let a2 = Autoencoder::load(dir.join("a.model")).unwrap();
    assert_eq!(
        bits(&a2.predict(&x).unwrap()),
        bits(&a.predict(&x).unwrap())
    );
    // The tied decoder still shares the encoder's matrix after loading.
    let w = a2.find("hid1", "w").unwrap();
    w.set(Tensor::zeros(&[6, 4])).unwrap();
    assert_ne!(
        bits(&a2.predict(&x).unwrap()),
        bits(&a.predict(&x).unwrap())
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_file_of_another_kind_format_or_version_says_which() {
    let dir = scratch("foreign");
    let path = dir.join("r.model");
    Regressor::new(&[3, 2]).unwrap().save(&path).unwrap();
    let problem = file_problem(Classifier::load(&path), &path);
    assert!(
        problem.contains("Regressor") && problem.contains("Classifier"),
        "{problem}"
    );
    assert!(Network::load(&path).is_ok());

    let good = std::fs::read(&path).unwrap();
    let at = |needle: &[u8]| {
        good.windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    };
    let mut other = good.clone();
    let f = at(b"theanets-rs model");
    other[f..f + 17].copy_from_slice(b"theanets-rs snaps");
    std::fs::write(&path, &other).unwrap();
    let problem = file_problem(Regressor::load(&path), &path);
    assert!(
        problem.contains("`theanets-rs snaps`") && problem.contains("`theanets-rs model`"),
        "{problem}"
    );

    let mut newer = good.clone();
    let v = at(b"version") + b"version".len();
    assert_eq!(newer[v], 1, "version 1 is written as a one-byte integer");
    newer[v] = 2;
    std::fs::write(&path, &newer).unwrap();
    let problem = file_problem(Regressor::load(&path), &path);
    assert!(problem.contains("version 2 is newer"), "{problem}");
    assert!(problem.contains("1 to 1"), "{problem}");

    for junk in [&b""[..], b"this is not msgpack\n", b"\xc1\xc1\xc1"] {
        std::fs::write(&path, junk).unwrap();
        let problem = file_problem(Regressor::load(&path), &path);
        assert!(
            problem.starts_with("not a theanets-rs model file"),
            "{problem}"
        );
    }
    let missing = dir.join("missing.model");
    assert!(file_problem(Regressor::load(&missing), &missing).contains("cannot read"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// A small model's file, its predictions and where the damaged copies go.
fn small_model(dir: &Path) -> (Vec<u8>, PathBuf) {
    let net = Regressor::build(
        vec![3.into(), LayerSpec::dense(2).activation("tanh"), 2.into()],
        ModelOptions::default(),
    )
    .unwrap();
    let path = dir.join("small.model");
    net.save(&path).unwrap();
    (std::fs::read(&path).unwrap(), dir.join("damaged.model"))
}

#[test]
fn a_file_truncated_at_every_byte_is_a_file_error() {
    let dir = scratch("truncated");
    let (good, path) = small_model(&dir);
    assert!(good.len() < 1000, "the model file has {} bytes", good.len());
    std::fs::write(&path, &good).unwrap();
    // Shortening one file in place is far faster than writing a new file for every length.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for cut in (0..good.len()).rev() {
        file.set_len(cut as u64).unwrap();
        let problem = file_problem(Regressor::load(&path), &path);
        assert!(!problem.is_empty());
    }
    std::fs::write(&path, [&good[..], &[0u8]].concat()).unwrap();
    assert!(file_problem(Regressor::load(&path), &path).contains("ends at byte"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bit_flips_give_a_file_error_or_a_model_that_matches_its_file() {
    let dir = scratch("flips");
    let (good, path) = small_model(&dir);
    let x = normal(&[4, 3], 5);
    let mut rng = Rng::new(2026);
    let (mut refused, mut loaded) = (0, 0);
    std::fs::write(&path, &good).unwrap();
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let mut poke = |at: usize, byte: u8| {
        file.seek(SeekFrom::Start(at as u64)).unwrap();
        file.write_all(&[byte]).unwrap();
    };
    for _ in 0..300 {
        // One to three flipped bits, written in place and undone after the load.
        let flips: Vec<usize> = (0..1 + rng.below(3))
            .map(|_| rng.below(good.len()))
            .collect();
        let mut bad = good.clone();
        for &i in &flips {
            bad[i] ^= 1 << rng.below(8);
        }
        flips.iter().for_each(|&i| poke(i, bad[i]));
        let result = Regressor::load(&path);
        flips.iter().for_each(|&i| poke(i, good[i]));
        match result {
            Err(Error::File { path: p, .. }) => {
                assert_eq!(p, path);
                refused += 1;
            }
            Err(e) => panic!("a damaged file gave a non-file error: {e:?}"),
            Ok(net) => {
                // Flips inside the parameters' data or the seed still make a valid model; it
                // must then hold the shapes its layers need.
                assert_eq!(net.predict(&x).unwrap().shape(), &[4, 2]);
                loaded += 1;
            }
        }
    }
    assert!(
        refused > 100 && loaded > 0,
        "{refused} refused, {loaded} loaded"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn lengths_claiming_gigabytes_are_refused_before_anything_is_read() {
    let dir = scratch("lengths");
    let path = dir.join("huge.model");
    // The payload's own length field claims 4 GiB.
    let mut bin = common::envelope("theanets-rs model", b"abc");
    let n = bin.len();
    bin[n - 7..n - 3].copy_from_slice(&u32::MAX.to_be_bytes());
    // A model whose layer list claims 4 billion entries.
    let mut layers = vec![0x82, 0xa4];
    layers.extend(b"kind");
    layers.push(0xa9);
    layers.extend(b"regressor");
    layers.push(0xa6);
    layers.extend(b"layers");
    layers.push(0xdd);
    layers.extend(u32::MAX.to_be_bytes());
    layers.extend([0x90; 8]);
    for (bytes, says) in [
        (bin, "declares 4294967295 bytes"),
        (
            common::envelope("theanets-rs model", &layers),
            "declares more elements",
        ),
        (
            common::envelope("theanets-rs model", b"\xdb\xff\xff\xff\xffabc"),
            "declares 4294967295 bytes",
        ),
    ] {
        std::fs::write(&path, bytes).unwrap();
        let problem = file_problem(Regressor::load(&path), &path);
        assert!(problem.contains(says), "{problem}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn parameters_must_fill_their_shapes_and_match_the_layers() {
    let dir = scratch("shapes");
    let path = dir.join("r.model");
    let net = Regressor::new(&[3, 2]).unwrap();
    net.save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let at = |needle: &[u8]| {
        good.windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    };
    // `out.w` is [3, 2]: shape array 0x92 0x03 0x02. Claim [3, 3]: the data no longer fills it.
    let s = at(b"\x92\x03\x02");
    let mut bad = good.clone();
    bad[s + 2] = 3;
    std::fs::write(&path, &bad).unwrap();
    let problem = file_problem(Regressor::load(&path), &path);
    assert!(
        problem.contains("`out.w` has shape [3, 3] (36 bytes of f32) but holds 24 bytes"),
        "{problem}"
    );
    // Rename the parameter: the model's `out.w` is missing from the file.
    let mut renamed = good.clone();
    let n = at(b"out.w");
    renamed[n + 4] = b'v';
    std::fs::write(&path, &renamed).unwrap();
    let problem = file_problem(Regressor::load(&path), &path);
    assert!(
        problem.contains("parameter `out.w` of shape [3, 2]"),
        "{problem}"
    );
    // A layer size grown past what the file's parameters could fill is refused before building.
    let mut wide = good.clone();
    let size = at(b"\xa4size\x02") + 5;
    wide[size] = 0x7f;
    std::fs::write(&path, &wide).unwrap();
    let problem = file_problem(Regressor::load(&path), &path);
    assert!(problem.contains("layer `out` would have 508"), "{problem}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn custom_layers_come_back_through_a_registry() {
    let dir = scratch("custom");
    let path = dir.join("custom.model");
    let mut registry = Registry::new();
    registry.register("plain", common::plain_layer).unwrap();
    assert!(registry.register("plain", common::plain_layer).is_err());
    let specs = vec![
        LayerSpec::input(3),
        registry.spec("plain", 4).unwrap().name("mine"),
        LayerSpec::dense(2),
    ];
    let opts = ModelOptions {
        monitors: vec![("mine:out".into(), vec![0.0])],
        ..options()
    };
    let net = Regressor::build(specs, opts).unwrap();
    let x = normal(&[ROWS, 3], 8);
    train_a_little(&net, vec![x.clone(), normal(&[ROWS, 2], 9)]);
    net.save(&path).unwrap();
    let back = Regressor::load_with(&path, &registry).unwrap();
    assert_eq!(
        bits(&back.predict(&x).unwrap()),
        bits(&net.predict(&x).unwrap())
    );

    let problem = file_problem(Regressor::load(&path), &path);
    assert!(
        problem.contains("custom layer `plain`, which is not registered"),
        "{problem}"
    );

    // A custom layer made without the registry has no name a file could record; a failed save
    // leaves the previous file as it was and no temporary file behind.
    let before = std::fs::read(&path).unwrap();
    let unnamed = Regressor::build(
        vec![
            3.into(),
            LayerSpec::custom(4, common::plain_layer).name("anon"),
            2.into(),
        ],
        ModelOptions::default(),
    )
    .unwrap();
    let problem = file_problem(unnamed.save(&path), &path);
    assert!(
        problem.contains("layer `anon` is a custom layer"),
        "{problem}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let listing: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(listing.len(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn saving_replaces_the_file_whole_and_leaves_no_temporary_file() {
    let dir = scratch("atomic");
    let path = dir.join("m.model");
    let small = Regressor::new(&[3, 2]).unwrap();
    let big = Regressor::new(&[30, 20, 2]).unwrap();
    big.save(&path).unwrap();
    small.save(&path).unwrap();
    let x = normal(&[2, 3], 4);
    assert_eq!(
        Regressor::load(&path).unwrap().predict(&x).unwrap(),
        small.predict(&x).unwrap()
    );
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("m.model")]);
    let nowhere = dir.join("no-such-dir").join("m.model");
    assert!(file_problem(small.save(&nowhere), &nowhere).contains("cannot write"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn safetensors_round_trip_in_both_layouts() {
    let dir = scratch("safetensors");
    let x = normal(&[ROWS, 4], 11);
    let specs = || vec![4.into(), LayerSpec::dense(5).activation("tanh"), 3.into()];
    let seeded = |seed| {
        Regressor::build(
            specs(),
            ModelOptions {
                seed,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let net = seeded(1);
    for layout in [Layout::Native, Layout::Torch] {
        let path = dir.join(format!("{layout:?}.safetensors"));
        net.save_safetensors(&path, layout).unwrap();
        let other = seeded(2);
        assert_ne!(
            bits(&other.predict(&x).unwrap()),
            bits(&net.predict(&x).unwrap())
        );
        other.load_safetensors(&path, layout).unwrap();
        assert_eq!(
            bits(&other.predict(&x).unwrap()),
            bits(&net.predict(&x).unwrap())
        );
    }
    // The native layout also carries models that have no nn.Sequential counterpart.
    let tied = |seed| {
        Autoencoder::build(
            vec![4.into(), 3.into(), LayerSpec::tied()],
            ModelOptions {
                seed,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let (a, b) = (tied(1), tied(2));
    train_a_little(&a, vec![x.clone()]);
    a.save_safetensors(dir.join("tied.safetensors"), Layout::Native)
        .unwrap();
    b.load_safetensors(dir.join("tied.safetensors"), Layout::Native)
        .unwrap();
    assert_eq!(bits(&b.predict(&x).unwrap()), bits(&a.predict(&x).unwrap()));
    // The Torch layout holds nn.Linear's [out, in] matrices: check against the transpose by hand.
    let bytes = std::fs::read(dir.join("Torch.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    assert_eq!(names, ["0.bias", "0.weight", "2.bias", "2.weight"]);
    let w = net.find("out", "w").unwrap().value(); // [5, 3]
    let t = file.tensor("2.weight").unwrap();
    assert_eq!(t.shape(), &[3, 5]);
    let value = |k: usize| f32::from_le_bytes(t.data()[4 * k..4 * k + 4].try_into().unwrap());
    for o in 0..3 {
        for i in 0..5 {
            assert_eq!(value(o * 5 + i).to_bits(), w.data()[i * 3 + o].to_bits());
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fixture_tensor(file: &safetensors::SafeTensors<'_>, name: &str) -> Tensor {
    let t = file.tensor(name).unwrap();
    let values = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    Tensor::new(t.shape(), values).unwrap()
}

#[test]
fn weights_written_by_python_safetensors_predict_what_numpy_computed() {
    let net = Regressor::build(
        vec![3.into(), LayerSpec::dense(4).activation("relu"), 2.into()],
        ModelOptions::default(),
    )
    .unwrap();
    net.load_safetensors(fixture("torch_mlp.safetensors"), Layout::Torch)
        .unwrap();
    let io = std::fs::read(fixture("torch_mlp_io.safetensors")).unwrap();
    let io = safetensors::SafeTensors::deserialize(&io).unwrap();
    let (x, y) = (fixture_tensor(&io, "x"), fixture_tensor(&io, "y"));
    let p = net.predict(&x).unwrap();
    assert_eq!(p.shape(), y.shape());
    for (a, b) in p.data().iter().zip(y.data()) {
        // Only the order of the sums may differ from numpy's.
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

#[test]
fn safetensors_that_do_not_fit_the_model_are_refused_naming_the_tensor() {
    let path = fixture("torch_mlp.safetensors");
    let wider = Regressor::new(&[3, 5, 2]).unwrap();
    let before = wider.params().iter().map(|p| p.value()).collect::<Vec<_>>();
    let problem = file_problem(wider.load_safetensors(&path, Layout::Torch), &path);
    assert!(
        problem.contains("tensor `0.weight` is F32 [4, 3], expected F32 [5, 3]"),
        "{problem}"
    );
    // Nothing changed: every tensor is checked before any parameter is set.
    assert_eq!(
        wider.params().iter().map(|p| p.value()).collect::<Vec<_>>(),
        before
    );
    let deeper = Regressor::new(&[3, 4, 2, 2]).unwrap();
    let problem = file_problem(deeper.load_safetensors(&path, Layout::Torch), &path);
    assert!(problem.contains("no tensor `4.weight`"), "{problem}");
    let native = Regressor::new(&[3, 4, 2]).unwrap();
    let problem = file_problem(native.load_safetensors(&path, Layout::Native), &path);
    assert!(problem.contains("no place for"), "{problem}");

    let tied = Autoencoder::build(
        vec![4.into(), 2.into(), LayerSpec::tied()],
        ModelOptions::default(),
    )
    .unwrap();
    let out = std::env::temp_dir().join(format!("nets-files-{}-tied.st", std::process::id()));
    let problem = file_problem(tied.save_safetensors(&out, Layout::Torch), &out);
    assert!(
        problem.contains("layer `out`") && problem.contains("tied"),
        "{problem}"
    );
    assert!(!out.exists());
    let model = fixture("torch_mlp_io.safetensors");
    let problem = file_problem(Regressor::load(&model), &model);
    assert!(
        problem.starts_with("not a theanets-rs model file"),
        "{problem}"
    );
}

#[test]
fn the_size_check_before_building_follows_tied_partners_exactly() {
    // The tied layer is 1 unit wide (its partner `hid2` reads 1 value), far narrower than the
    // input; the 100-unit output after it has 1·100 weights. Sizing the tied layer by the widest
    // earlier layer (40) would count 40·100 and refuse this valid file.
    let dir = scratch("tied-budget");
    let path = dir.join("t.model");
    let net = Regressor::build(
        vec![
            40.into(),
            1.into(),
            1.into(),
            LayerSpec::tied().partner("hid2"),
            100.into(),
        ],
        ModelOptions::default(),
    )
    .unwrap();
    assert_eq!(net.layers()[3].size(), 1);
    net.save(&path).unwrap();
    let x = normal(&[2, 40], 12);
    let back = Regressor::load(&path).unwrap();
    assert_eq!(
        bits(&back.predict(&x).unwrap()),
        bits(&net.predict(&x).unwrap())
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn deeply_nested_values_are_an_error_not_a_stack_overflow() {
    let dir = scratch("nested");
    let path = dir.join("deep.model");
    // An unknown field whose value is 100 000 arrays each holding the next, in the envelope and
    // in the payload.
    let mut deep = vec![0x91u8; 100_000];
    deep.push(0xc0);
    let mut outer = vec![0x84, 0xa1, b'x'];
    outer.extend(&deep);
    let file = common::envelope("theanets-rs model", b"\x80");
    outer.extend(&file[1..]);
    let mut payload = vec![0x81, 0xa1, b'x'];
    payload.extend(&deep);
    for bytes in [outer, common::envelope("theanets-rs model", &payload)] {
        std::fs::write(&path, bytes).unwrap();
        assert!(file_problem(Regressor::load(&path), &path).contains("depth"));
    }
    std::fs::remove_dir_all(dir).unwrap();
}
