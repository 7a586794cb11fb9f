//! Reading a damaged snapshot allocates at most a small multiple of the file's size: every
//! truncation, a few hundred bit flips and length fields claiming gigabytes. Counted with a
//! global allocator that tracks the peak of live bytes allocated by the current thread (as
//! `file_alloc.rs` does for model files).

use nets::experiment::{Data, Experiment, SaveEvery};
use nets::{Error, Regressor};
use std::path::Path;
use tape::testing::{peak_since, start_peak, PeakAllocator};
use tape::{Rng, Tensor};

#[global_allocator]
static GLOBAL: PeakAllocator = PeakAllocator;

/// Reading a snapshot also rebuilds its model (layers, names, parameters): a fixed allowance
/// for a model this small, then a multiple of the file's size.
const FIXED: usize = 8 << 10;
/// Bytes of peak allocation allowed per byte of file.
const PER_BYTE: usize = 8;

/// Opens an experiment on `path`; checks the peak allocation and returns whether it was refused
/// (a file error; any other error fails the test).
fn open_bounded(path: &Path, what: &str) -> bool {
    let len = std::fs::metadata(path).unwrap().len() as usize;
    let model = Regressor::new(&[2, 2, 1]).unwrap();
    let base = start_peak();
    let result = Experiment::new(model).save_progress(path, SaveEvery::Iterations(1));
    let peak = peak_since(base);
    if std::env::var_os("NETS_ALLOC_REPORT").is_some() {
        eprintln!("{what}: {len} bytes, peak {peak}");
    }
    assert!(
        peak <= FIXED + PER_BYTE * len,
        "{what}: reading a {len}-byte snapshot peaked at {peak} bytes"
    );
    match result {
        Err(Error::File { .. }) => true,
        Err(e) => panic!("{what}: expected a file error, got {e:?}"),
        Ok(_) => false,
    }
}

#[test]
fn damaged_snapshots_allocate_a_small_multiple_of_their_size() {
    let dir = std::env::temp_dir().join(format!("nets-snapshot-alloc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let good_path = dir.join("good.snapshot");
    let mut exp = Experiment::new(Regressor::new(&[2, 2, 1]).unwrap())
        .save_progress(&good_path, SaveEvery::Iterations(1))
        .unwrap();
    let mut x = Tensor::zeros(&[4, 2]);
    Rng::new(1).fill_normal(x.data_mut(), 0.0, 1.0);
    let y = Tensor::new(&[4, 1], vec![0.5, -0.5, 1.0, 0.0]).unwrap();
    exp.train(vec![x, y], Data::None, "adam", &["max_updates=1"])
        .unwrap();
    drop(exp);
    let good = std::fs::read(&good_path).unwrap();
    assert!(!open_bounded(&good_path, "intact"));

    let path = dir.join("damaged.snapshot");
    for cut in 0..good.len() {
        std::fs::write(&path, &good[..cut]).unwrap();
        assert!(open_bounded(&path, &format!("cut at {cut}")));
    }
    let mut rng = Rng::new(11);
    for k in 0..200 {
        let mut bad = good.clone();
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(good.len());
            bad[i] ^= 1 << rng.below(8);
        }
        std::fs::write(&path, &bad).unwrap();
        open_bounded(&path, &format!("flips {k}"));
    }
    // Every 4-byte window set to 0xffffffff: any length field there claims 4 GiB.
    for at in 0..good.len() - 4 {
        let mut bad = good.clone();
        bad[at..at + 4].copy_from_slice(&[0xff; 4]);
        std::fs::write(&path, &bad).unwrap();
        open_bounded(&path, &format!("0xffffffff at {at}"));
    }
    std::fs::remove_dir_all(dir).unwrap();
}
