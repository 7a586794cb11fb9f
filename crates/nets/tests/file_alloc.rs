//! Loading a damaged model file allocates at most a small multiple of the file's size: lengths
//! that claim gigabytes, layer sizes grown past what the file's parameters could fill, every
//! truncation and a few hundred bit flips. Counted with a global allocator that tracks the peak
//! of live bytes allocated by the current thread.

mod common;

use nets::{Error, Regressor};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use tape::testing::{peak_since, start_peak, PeakAllocator};
use tape::Rng;

#[global_allocator]
static GLOBAL: PeakAllocator = PeakAllocator;

/// The most bytes live at once during `load(path)` beyond those live before it, and whether it
/// was a file error (anything else but a loaded model fails the test).
fn peak_of_load(path: &Path) -> (usize, bool) {
    let base = start_peak();
    let result = Regressor::load(path);
    let peak = peak_since(base);
    let refused = match result {
        Err(Error::File { .. }) => true,
        Err(e) => panic!("expected a file error, got {e:?}"),
        Ok(_) => false,
    };
    (peak, refused)
}

/// Loads of files this size or less may use this much regardless (error messages, the path, the
/// decoder's own buffers); beyond it the allowance grows with the file.
const FIXED: usize = 2 << 10;
/// Bytes of peak allocation allowed per byte of file.
const PER_BYTE: usize = 8;

fn assert_bounded(path: &Path, what: &str) -> bool {
    let len = std::fs::metadata(path).unwrap().len() as usize;
    let (peak, refused) = peak_of_load(path);
    if std::env::var_os("NETS_ALLOC_REPORT").is_some() {
        eprintln!("{what}: {len} bytes, peak {peak}");
    }
    assert!(
        peak <= FIXED + PER_BYTE * len,
        "{what}: loading a {len}-byte file peaked at {peak} bytes"
    );
    refused
}

/// The payload of a model file (wrap it back with `common::envelope`).
fn payload_of(file: &[u8]) -> Vec<u8> {
    let at = file.windows(7).position(|w| w == b"payload").unwrap() + 7;
    let (len, start) = match file[at] {
        0xc4 => (file[at + 1] as usize, at + 2),
        0xc5 => (
            u16::from_be_bytes([file[at + 1], file[at + 2]]) as usize,
            at + 3,
        ),
        m => panic!("unexpected payload marker {m:#x}"),
    };
    file[start..start + len].to_vec()
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = haystack
        .windows(from.len())
        .position(|w| w == from)
        .unwrap();
    [&haystack[..at], to, &haystack[at + from.len()..]].concat()
}

#[test]
fn damaged_files_load_within_a_small_multiple_of_their_size() {
    let dir = std::env::temp_dir().join(format!("nets-file-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.model");
    Regressor::new(&[3, 2]).unwrap().save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    assert!(!assert_bounded(&path, "the intact file"));

    let payload = payload_of(&good);
    let huge = u32::MAX.to_be_bytes();
    let giant_size = [&b"\xa4size\xce"[..], &0x0040_0000u32.to_be_bytes()].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a 4 GiB payload",
            [&good[..good.len() - payload.len() - 4], &huge, &payload].concat(),
        ),
        (
            "a 4 G-entry layer list",
            replace(
                &payload,
                b"\xa6layers\x92",
                &[&b"\xa6layers\xdd"[..], &huge].concat(),
            ),
        ),
        (
            "a 4 GiB name",
            replace(
                &payload,
                b"\xa5out.w",
                &[&b"\xdb"[..], &huge, b"out.w"].concat(),
            ),
        ),
        (
            "an output of 2^22 units",
            replace(&payload, b"\xa4size\x02", &giant_size),
        ),
        (
            "an input of 2^22 values",
            replace(&payload, b"\xa4size\x03", &giant_size),
        ),
    ];
    for (what, bytes) in cases {
        let file = if what.starts_with("a 4 GiB payload") {
            bytes
        } else {
            common::envelope("theanets-rs model", &bytes)
        };
        std::fs::write(&path, &file).unwrap();
        assert!(assert_bounded(&path, what), "{what} was not refused");
    }

    // Damage written in place: far faster than a new file per case.
    std::fs::write(&path, &good).unwrap();
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let mut rng = Rng::new(7);
    for k in 0..200 {
        let i = rng.below(good.len());
        let poke = |file: &mut std::fs::File, byte: u8| {
            file.seek(SeekFrom::Start(i as u64)).unwrap();
            file.write_all(&[byte]).unwrap();
        };
        poke(&mut file, good[i] ^ (1 << rng.below(8)));
        assert_bounded(&path, &format!("flip {k} at byte {i}"));
        poke(&mut file, good[i]);
    }
    for cut in (0..good.len()).rev() {
        file.set_len(cut as u64).unwrap();
        assert!(assert_bounded(&path, &format!("cut at {cut}")));
    }
    std::fs::remove_dir_all(dir).unwrap();
}
