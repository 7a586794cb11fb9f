//! MNIST's IDX files (gzipped or not): a magic number (two zero bytes, a type byte, the number of
//! dimensions), one big-endian `u32` per dimension, then the values. Only unsigned bytes (type
//! 0x08), which is what MNIST uses, are read; the declared sizes are checked against the data
//! before anything that large is allocated.

use super::file_error;
use crate::error::Result;
use flate2::bufread::GzDecoder;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use tape::Tensor;

/// The four MNIST files of a directory, pixels scaled to `[0, 1]`.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// Training images, `60000 × 784`.
    pub train_x: Tensor,
    /// Training labels, `60000`.
    pub train_y: Tensor,
    /// Test images, `10000 × 784`.
    pub test_x: Tensor,
    /// Test labels, `10000`.
    pub test_y: Tensor,
}

/// Reads an IDX file of unsigned bytes as a tensor of its declared shape (values 0..=255).
/// A file ending in `.gz`, or starting with gzip's magic bytes, is decompressed first.
pub fn read_idx(path: impl AsRef<Path>) -> Result<Tensor> {
    read_idx_divided(path.as_ref(), 1.0)
}

/// [`read_idx`] with every value divided by `divisor` as it is read. The file is streamed
/// (through the decompressor if gzipped) straight into the `f32` values, so that reading holds
/// nothing as large as the data besides the result: MNIST's 47 MB of training pixels become
/// 188 MB of floats with no byte copy and no unscaled copy beside them.
fn read_idx_divided(path: &Path, divisor: f32) -> Result<Tensor> {
    let cannot = |e: std::io::Error| file_error(path, format!("cannot read: {e}"));
    let mut file = BufReader::new(File::open(path).map_err(cannot)?);
    if file.fill_buf().map_err(cannot)?.starts_with(&[0x1f, 0x8b]) {
        parse_idx_divided(path, &mut GzDecoder::new(file), divisor)
    } else {
        parse_idx_divided(path, &mut file, divisor)
    }
}

/// Parses an IDX stream; `path` is only used in errors.
pub fn parse_idx(path: &Path, input: &mut dyn Read) -> Result<Tensor> {
    parse_idx_divided(path, input, 1.0)
}

/// [`parse_idx`] with every value divided by `divisor`.
fn parse_idx_divided(path: &Path, input: &mut dyn Read, divisor: f32) -> Result<Tensor> {
    let mut head = [0u8; 4];
    input.read_exact(&mut head).map_err(|e| {
        file_error(
            path,
            format!("not an IDX file: no 4-byte magic number ({e})"),
        )
    })?;
    if head[0] != 0 || head[1] != 0 {
        return Err(file_error(
            path,
            format!(
                "not an IDX file: the magic number starts {:02x} {:02x}, not 00 00",
                head[0], head[1]
            ),
        ));
    }
    if head[2] != 0x08 {
        return Err(file_error(
            path,
            format!(
                "IDX value type 0x{:02x} is not supported (only 0x08, unsigned bytes)",
                head[2]
            ),
        ));
    }
    let rank = head[3] as usize;
    if rank == 0 || rank > 4 {
        return Err(file_error(path, format!("IDX rank {rank} is not 1 to 4")));
    }
    let mut dims = vec![0usize; rank];
    for d in &mut dims {
        let mut b = [0u8; 4];
        input
            .read_exact(&mut b)
            .map_err(|_| file_error(path, "the file ends inside its dimensions"))?;
        *d = u32::from_be_bytes(b) as usize;
    }
    let count = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= 1 << 31)
        .ok_or_else(|| file_error(path, format!("dimensions {dims:?} are too large")))?;
    let values = read_values(path, input, count, divisor)?;
    if values.len() != count {
        return Err(file_error(
            path,
            if values.len() < count {
                format!(
                    "dimensions {dims:?} declare {count} values but the file holds {}",
                    values.len()
                )
            } else {
                format!("dimensions {dims:?} declare {count} values but the file holds more")
            },
        ));
    }
    Ok(Tensor::new(&dims, values)?)
}

/// Reads the bytes after the header, at most one more than the `count` declared, each divided
/// by `divisor`. Reading stops one byte past the declared count and the result grows with the
/// data, so neither a short file nor a decompression bomb makes us allocate more than the data
/// that is really there plus a little.
fn read_values(path: &Path, input: &mut dyn Read, count: usize, divisor: f32) -> Result<Vec<f32>> {
    let mut values = Vec::with_capacity(count.min(1 << 20));
    let mut chunk = vec![0u8; 1 << 16];
    let mut input = input.take(count as u64 + 1);
    loop {
        match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => values.extend(chunk[..n].iter().map(|&b| f32::from(b) / divisor)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(file_error(path, format!("cannot read the values: {e}"))),
        }
    }
    // Growth by doubling leaves up to half the capacity unused (never touched, so not
    // resident, but the address space is given back all the same).
    values.shrink_to_fit();
    Ok(values)
}

/// Reads MNIST from a directory holding `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
/// `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte` (with `.idx3-ubyte`/`-idx3-ubyte`
/// spellings, gzipped or not). Images become rows of 784 values in `[0, 1]`.
pub fn read_mnist(dir: impl AsRef<Path>) -> Result<Mnist> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(file_error(
            dir,
            "is not a directory; download MNIST's four IDX files (train-images, train-labels, \
             t10k-images, t10k-labels; gzipped is fine) into it",
        ));
    }
    let find = |stem: &str, kind: &str| -> Result<std::path::PathBuf> {
        for sep in ['.', '-'] {
            for gz in ["", ".gz"] {
                let p = dir.join(format!("{stem}{sep}{kind}-ubyte{gz}"));
                if p.is_file() {
                    return Ok(p);
                }
            }
        }
        Err(file_error(
            dir,
            format!("has no {stem}.{kind}-ubyte[.gz] (nor {stem}-{kind}-ubyte[.gz])"),
        ))
    };
    let images = |stem: &str| -> Result<Tensor> {
        let path = find(stem, "idx3")?;
        let t = read_idx_divided(&path, 255.0)?;
        if t.rank() != 3 {
            return Err(file_error(
                &path,
                format!("images of shape {:?}, expected [n, rows, cols]", t.shape()),
            ));
        }
        let (n, w) = (t.shape()[0], t.shape()[1] * t.shape()[2]);
        Ok(t.reshape(&[n, w])?)
    };
    let labels = |stem: &str, n: usize| -> Result<Tensor> {
        let path = find(stem, "idx1")?;
        let t = read_idx(&path)?;
        if t.rank() != 1 || t.shape()[0] != n {
            return Err(file_error(
                &path,
                format!(
                    "labels of shape {:?}, expected [{n}] to match the images",
                    t.shape()
                ),
            ));
        }
        if let Some((row, v)) = t.data().iter().enumerate().find(|(_, &v)| v > 9.0) {
            return Err(file_error(
                &path,
                format!("label {v} in row {row} is not a digit"),
            ));
        }
        Ok(t)
    };
    let train_x = images("train-images")?;
    let train_y = labels("train-labels", train_x.shape()[0])?;
    let test_x = images("t10k-images")?;
    let test_y = labels("t10k-labels", test_x.shape()[0])?;
    Ok(Mnist {
        train_x,
        train_y,
        test_x,
        test_y,
    })
}
