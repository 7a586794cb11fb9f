//! Reading MNIST holds the data once: the peak resident memory while `read_mnist` runs stays
//! near the size of the `f32` tensors it returns. (It used to read the whole compressed file,
//! decompress it whole into bytes, turn the bytes into floats and then scale them into a second
//! float copy: 1.76 times the result at the peak here, and for the real MNIST a peak of 362 MiB
//! for 210 MiB of floats.)
//!
//! Its own test binary: the peak (`VmHWM`) is process-wide. Linux only; elsewhere there is
//! nothing to read and the test passes.

use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;
use std::path::Path;
use theanets_rs::memory::status;

/// Writes a gzipped IDX file of unsigned bytes, generating the values in chunks so that
/// writing never holds the data (the peak before reading must stay low).
fn write_idx(path: &Path, dims: &[u32], value: impl Fn(usize) -> u8) {
    let mut gz = GzEncoder::new(std::fs::File::create(path).unwrap(), Compression::fast());
    gz.write_all(&[0, 0, 8, dims.len() as u8]).unwrap();
    for d in dims {
        gz.write_all(&d.to_be_bytes()).unwrap();
    }
    let count: usize = dims.iter().map(|&d| d as usize).product();
    let mut chunk = Vec::with_capacity(1 << 16);
    for start in (0..count).step_by(1 << 16) {
        chunk.clear();
        chunk.extend((start..count.min(start + (1 << 16))).map(&value));
        gz.write_all(&chunk).unwrap();
    }
    gz.finish().unwrap();
}

#[test]
fn reading_mnist_peaks_near_the_size_of_its_floats() {
    if status().is_err() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = (15_000u32, 2_000u32);
    // Mostly-zero images like MNIST's, with every byte value present.
    let pixel = |i: usize| {
        if i.is_multiple_of(3) {
            (i % 251) as u8
        } else {
            0
        }
    };
    let label = |i: usize| (i % 10) as u8;
    write_idx(
        &dir.path().join("train-images-idx3-ubyte.gz"),
        &[train, 28, 28],
        pixel,
    );
    write_idx(
        &dir.path().join("train-labels-idx1-ubyte.gz"),
        &[train],
        label,
    );
    write_idx(
        &dir.path().join("t10k-images-idx3-ubyte.gz"),
        &[test, 28, 28],
        pixel,
    );
    write_idx(
        &dir.path().join("t10k-labels-idx1-ubyte.gz"),
        &[test],
        label,
    );

    let before = status().unwrap().rss;
    let m = nets::data::read_mnist(dir.path()).unwrap();
    let peak = status().unwrap().peak;

    // The values are right (an independent formula, not earlier output).
    assert_eq!(m.train_x.shape(), &[train as usize, 784]);
    assert_eq!(m.train_x.data()[3 * 100], (300 % 251) as f32 / 255.0);
    assert_eq!(m.test_y.data()[13], 3.0);
    let floats = 4 * (m.train_x.len() + m.train_y.len() + m.test_x.len() + m.test_y.len()) as u64;
    let extra = peak.saturating_sub(before);
    // The result itself, a tenth more for the allocator (the values grow by doubling, which
    // large blocks do in place), and 4 MiB for the decompressor and the noise of RSS. Measured:
    // 1.00 times the floats now, 1.76 times with the old reader.
    let bound = floats + floats / 10 + (4 << 20);
    eprintln!("floats {floats} bytes, peak rose by {extra} bytes, bound {bound}");
    assert!(
        extra <= bound,
        "reading {floats} bytes of floats raised the peak by {extra} bytes (allowed {bound})"
    );
}
