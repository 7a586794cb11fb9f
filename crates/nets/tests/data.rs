//! Data loaders and row helpers: CSV (labels by name or index, string classes, target columns,
//! errors with line and column), IDX (plain and gzipped, damaged files), MNIST when it is
//! present, and shuffle / split / select / concatenate.

use flate2::write::GzEncoder;
use nets::data::{self, rows, Column, CsvOptions, Header, Targets};
use nets::Error;
use std::io::Write;
use std::path::PathBuf;
use tape::Tensor;

/// A fresh file under the temp dir with these contents.
fn file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nets-data-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// The text of a file error, checked to name the file.
fn file_error(r: Result<impl std::fmt::Debug, Error>, path: &std::path::Path) -> String {
    match r {
        Err(e @ Error::File { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            text
        }
        other => panic!("expected a file error, got {other:?}"),
    }
}

#[test]
fn csv_labels_by_name_or_index_with_string_or_number_classes() {
    let path = file(
        "labels.csv",
        b"a,b,kind\n1,2,cat\n3,4,dog\n5,6,cat\n\n7,8,bird\n",
    );
    let t = data::read_csv(&path, &CsvOptions::labels(Column::Name("kind".into()))).unwrap();
    assert_eq!(t.x.shape(), &[4, 2]);
    assert_eq!(t.x.data(), &[1., 2., 3., 4., 5., 6., 7., 8.]);
    assert_eq!(t.y.as_ref().unwrap().data(), &[0., 1., 0., 2.]);
    assert_eq!(t.classes.unwrap(), ["cat", "dog", "bird"]);
    assert_eq!(t.features, ["a", "b"]);

    // No header; labels first, as whole numbers: used as they are.
    let path = file("numbers.csv", b"3, 0.5, 1.5\n0, 2.5, 3.5\n");
    let t = data::read_csv(&path, &CsvOptions::labels(Column::Index(0))).unwrap();
    assert_eq!(t.y.unwrap().data(), &[3., 0.]);
    assert_eq!(t.x.data(), &[0.5, 1.5, 2.5, 3.5]);
    assert!(t.classes.is_none());
    assert_eq!(t.features, ["column 1", "column 2"]);

    // A string label in the first column of a header-less file is not mistaken for a header.
    let path = file("strings.csv", b"yes;1;2\nno;3;4\n");
    let options = CsvOptions {
        delimiter: Some(b';'),
        ..CsvOptions::labels(Column::Index(0))
    };
    let t = data::read_csv(&path, &options).unwrap();
    assert_eq!(t.x.shape(), &[2, 2]);
    assert_eq!(t.classes.unwrap(), ["yes", "no"]);
}

#[test]
fn csv_target_columns_and_plain_features() {
    let path = file("reg.csv", b"x1,y1,x2,y2\n1,10,2,20\n3,30,4,40\n");
    let options = CsvOptions::values(vec![Column::Name("y1".into()), Column::Index(3)]);
    let t = data::read_csv(&path, &options).unwrap();
    assert_eq!(t.x.data(), &[1., 2., 3., 4.]);
    assert_eq!(t.y.unwrap().data(), &[10., 20., 30., 40.]);
    let all = data::read_csv(&path, &CsvOptions::default()).unwrap();
    assert_eq!((all.x.shape(), all.y), (&[2usize, 4][..], None));
    let forced = CsvOptions {
        header: Header::No,
        targets: Targets::None,
        delimiter: None,
    };
    let m = file_error(data::read_csv(&path, &forced), &path);
    assert!(
        m.contains("line 1, column 1 (`column 0`): `x1` is not a finite number"),
        "{m}"
    );
}

#[test]
fn csv_errors_name_the_file_line_and_column() {
    let path = file("bad.csv", b"a,b,label\n1,2,0\n3,oops,1\n");
    let m = file_error(
        data::read_csv(&path, &CsvOptions::labels(Column::Name("label".into()))),
        &path,
    );
    assert!(
        m.contains("line 3, column 2 (`b`): `oops` is not a finite number"),
        "{m}"
    );

    let path = file("ragged.csv", b"a,b,label\n1,2,0\n3,1\n");
    let m = file_error(data::read_csv(&path, &CsvOptions::default()), &path);
    assert!(
        m.contains("line 3: 2 fields, but the first line has 3"),
        "{m}"
    );

    let path = file("names.csv", b"a,b,label\n1,2,0\n");
    let m = file_error(
        data::read_csv(&path, &CsvOptions::labels(Column::Name("lable".into()))),
        &path,
    );
    assert!(
        m.contains("no column named `lable`; the columns are a, b, label"),
        "{m}"
    );
    let m = file_error(
        data::read_csv(&path, &CsvOptions::labels(Column::Index(7))),
        &path,
    );
    assert!(m.contains("column 7 does not exist"), "{m}");
    let m = file_error(
        data::read_csv(
            &path,
            &CsvOptions::values(vec![Column::Index(0), Column::Index(1), Column::Index(2)]),
        ),
        &path,
    );
    assert!(m.contains("no features are left"), "{m}");

    let path = file("nan.csv", b"1,NaN\n");
    let m = file_error(data::read_csv(&path, &CsvOptions::default()), &path);
    assert!(m.contains("not a finite number"), "{m}");
    let path = file("empty.csv", b"\n\n");
    assert!(file_error(data::read_csv(&path, &CsvOptions::default()), &path).contains("no rows"));
    let missing = std::env::temp_dir().join("nets-data-test-does-not-exist.csv");
    assert!(
        file_error(data::read_csv(&missing, &CsvOptions::default()), &missing)
            .contains("cannot read")
    );
}

/// An IDX file of unsigned bytes with these dims and values.
fn idx(dims: &[u32], values: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(values);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_files_plain_and_gzipped() {
    let values: Vec<u8> = (0..24).collect();
    let raw = idx(&[2, 3, 4], &values);
    for (name, bytes) in [
        ("a.idx3-ubyte", raw.clone()),
        ("a.idx3-ubyte.gz", gzip(&raw)),
    ] {
        let t = data::read_idx(file(name, &bytes)).unwrap();
        assert_eq!(t.shape(), &[2, 3, 4]);
        assert_eq!(t.data()[23], 23.0);
    }
}

#[test]
fn damaged_idx_files_are_errors_naming_the_file() {
    let raw = idx(&[3, 2], &[1, 2, 3, 4, 5, 6]);
    for cut in 0..raw.len() {
        let path = file("cut.idx", &raw[..cut]);
        file_error(data::read_idx(&path), &path);
    }
    let gz = gzip(&raw);
    for cut in 0..gz.len() {
        let path = file("cut.idx.gz", &gz[..cut]);
        file_error(data::read_idx(&path), &path);
    }
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "magic.idx",
            vec![1, 0, 8, 1, 0, 0, 0, 1, 7],
            "magic number starts 01 00",
        ),
        (
            "type.idx",
            vec![0, 0, 0x0d, 1, 0, 0, 0, 1, 7],
            "type 0x0d is not supported",
        ),
        ("rank.idx", vec![0, 0, 8, 0], "rank 0"),
        ("more.idx", idx(&[2], &[1, 2, 3]), "holds more"),
        // Dimensions claiming 16 GB: refused before anything that size is read or allocated.
        ("huge.idx", idx(&[65536, 65536, 4], &[0; 8]), "too large"),
    ];
    for (name, bytes, fragment) in cases {
        let path = file(name, &bytes);
        let m = file_error(data::read_idx(&path), &path);
        assert!(m.contains(fragment), "{name}: {m}");
    }
    // A gzip bomb declaring few values stops reading after them.
    let bomb = gzip(&idx(&[4], &vec![0u8; 10_000_000]));
    let path = file("bomb.idx.gz", &bomb);
    assert!(file_error(data::read_idx(&path), &path).contains("holds more"));
}

#[test]
fn mnist_when_the_shared_copy_is_present() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mnist");
    if !dir.is_dir() {
        // Only the CI machine and developers' checkouts have it; the test data above covers the
        // parser everywhere.
        eprintln!("skipped: {} is absent", dir.display());
        return;
    }
    let m = data::read_mnist(&dir).unwrap();
    assert_eq!(
        (m.train_x.shape(), m.train_y.shape()),
        (&[60000usize, 784][..], &[60000usize][..])
    );
    assert_eq!(
        (m.test_x.shape(), m.test_y.shape()),
        (&[10000usize, 784][..], &[10000usize][..])
    );
    assert!(m.train_x.data().iter().all(|v| (0.0..=1.0).contains(v)));
    let mut counts = [0usize; 10];
    for &l in m.test_y.data() {
        counts[l as usize] += 1;
    }
    // MNIST's test set has between 892 (fives) and 1135 (ones) of each digit.
    assert!(
        counts.iter().all(|&c| (892..=1135).contains(&c)),
        "{counts:?}"
    );
    let m = file_error(data::read_mnist(dir.join("nope")), &dir.join("nope"));
    assert!(m.contains("download MNIST"), "{m}");
}

fn xy(n: usize) -> Vec<Tensor> {
    vec![
        Tensor::from_fn(&[n, 2], |i| (i[0] * 10 + i[1]) as f32),
        Tensor::from_fn(&[n], |i| (i[0] % 3) as f32),
    ]
}

#[test]
fn select_shuffle_and_concat_keep_rows_together() {
    let a = xy(6);
    let s = rows::select(&a, &[4, 0, 4]).unwrap();
    assert_eq!(s[0].data(), &[40., 41., 0., 1., 40., 41.]);
    assert_eq!(s[1].data(), &[1., 0., 1.]);
    assert!(rows::select(&a, &[6])
        .unwrap_err()
        .to_string()
        .contains("row 6 does not exist"));

    let s = rows::shuffle(&a, 7, "train").unwrap();
    assert_eq!(
        s,
        rows::shuffle(&a, 7, "train").unwrap(),
        "same seed, same order"
    );
    assert_ne!(s, rows::shuffle(&a, 8, "train").unwrap());
    let mut seen: Vec<usize> = s[0]
        .data()
        .chunks(2)
        .map(|r| (r[0] / 10.0) as usize)
        .collect();
    for (k, &r) in seen.iter().enumerate() {
        assert_eq!(s[1].data()[k], (r % 3) as f32, "labels follow their rows");
    }
    seen.sort();
    assert_eq!(seen, [0, 1, 2, 3, 4, 5]);

    let c = rows::concat(&a, &xy(2)).unwrap();
    assert_eq!(
        (c[0].shape(), c[1].shape()),
        (&[8usize, 2][..], &[8usize][..])
    );
    let bad = vec![Tensor::zeros(&[2, 3]), Tensor::zeros(&[2])];
    assert!(rows::concat(&a, &bad)
        .unwrap_err()
        .to_string()
        .contains("cannot be stacked"));
    let ragged = vec![Tensor::zeros(&[2, 3]), Tensor::zeros(&[3])];
    assert!(rows::shuffle(&ragged, 1, "x")
        .unwrap_err()
        .to_string()
        .contains("array 1"));
}

#[test]
fn split_by_fraction_keeps_class_proportions_when_stratified() {
    // 90 rows of class 0, 10 of class 1.
    let n = 100;
    let x = Tensor::from_fn(&[n, 1], |i| i[0] as f32);
    let y = Tensor::from_fn(&[n], |i| if i[0] < 90 { 0.0 } else { 1.0 });
    let arrays = vec![x, y];
    let s = rows::split(&arrays, 0.2, Some(1), 3).unwrap();
    assert_eq!((s.first[0].shape()[0], s.second[0].shape()[0]), (80, 20));
    let ones = |t: &Tensor| t.data().iter().filter(|&&v| v == 1.0).count();
    assert_eq!((ones(&s.first[1]), ones(&s.second[1])), (8, 2));
    // Every row lands in exactly one part, with its label.
    let mut all: Vec<f32> = s.first[0]
        .data()
        .iter()
        .chain(s.second[0].data())
        .copied()
        .collect();
    all.sort_by(f32::total_cmp);
    assert_eq!(all, (0..n).map(|i| i as f32).collect::<Vec<_>>());
    for part in [&s.first, &s.second] {
        for (x, y) in part[0].data().iter().zip(part[1].data()) {
            assert_eq!(*y, if *x < 90.0 { 0.0 } else { 1.0 });
        }
    }
    // Unstratified, the same seed gives the same split; a bad fraction is an error.
    let a = rows::split(&arrays, 0.25, None, 5).unwrap();
    assert_eq!(
        a.second[0],
        rows::split(&arrays, 0.25, None, 5).unwrap().second[0]
    );
    assert_eq!(a.second[0].shape()[0], 25);
    assert!(rows::split(&arrays, 1.0, None, 5).is_err());
    assert!(rows::split(&arrays, 0.2, Some(0), 5)
        .unwrap_err()
        .to_string()
        .contains("labels are one per row"));
}
