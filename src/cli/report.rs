//! The files a training run leaves in its output folder — the monitors of every iteration as
//! CSV and the training curves as SVG (drawn with `plotters`' SVG backend) — and the confusion
//! matrix printout.

use super::{context, CliResult};
use optim::Monitors;
use std::io::Write;
use std::path::Path;

/// The monitors after one iteration: training batch monitors, and the latest validation.
pub struct Record {
    /// The iteration (from 1; continues after a resumed snapshot).
    pub iteration: usize,
    /// Monitors on the iteration's training batches.
    pub train: Monitors,
    /// Monitors of the most recent validation.
    pub valid: Monitors,
}

/// Writes `records` as CSV: `iteration`, then `train_<monitor>` and `valid_<monitor>` columns.
pub fn write_monitors(path: &Path, records: &[Record]) -> CliResult<()> {
    let names = |m: &Monitors| m.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>();
    let (tn, vn) = records
        .first()
        .map(|r| (names(&r.train), names(&r.valid)))
        .unwrap_or_default();
    let mut text = String::from("iteration");
    for n in &tn {
        text.push_str(&format!(",train_{n}"));
    }
    for n in &vn {
        text.push_str(&format!(",valid_{n}"));
    }
    text.push('\n');
    for r in records {
        text.push_str(&r.iteration.to_string());
        for n in &tn {
            text.push_str(&format!(",{}", r.train.get(n).unwrap_or(f32::NAN)));
        }
        for n in &vn {
            text.push_str(&format!(",{}", r.valid.get(n).unwrap_or(f32::NAN)));
        }
        text.push('\n');
    }
    nets::file::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// One curve: its label and `(iteration, value)` points.
type Curve = (&'static str, Vec<(f32, f32)>);

fn curve(records: &[Record], label: &'static str, pick: impl Fn(&Record) -> Option<f32>) -> Curve {
    let points = records
        .iter()
        .filter_map(|r| pick(r).map(|v| (r.iteration as f32, v)))
        .filter(|(_, v)| v.is_finite())
        .collect();
    (label, points)
}

/// Draws the training and validation loss (and accuracy, when there is one) against the
/// iteration into an SVG file.
pub fn write_curves(path: &Path, records: &[Record]) -> CliResult<()> {
    let loss = [
        curve(records, "train loss", |r| Some(r.train.loss())),
        curve(records, "valid loss", |r| Some(r.valid.loss())),
    ];
    let acc = [
        curve(records, "train acc", |r| r.train.get("acc")),
        curve(records, "valid acc", |r| r.valid.get("acc")),
    ];
    draw(path, &loss, &acc).map_err(|e| context(format!("{}: cannot draw", path.display()), e))
}

fn draw(path: &Path, loss: &[Curve], acc: &[Curve]) -> Result<(), String> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (960, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let with_acc = acc.iter().any(|(_, p)| !p.is_empty());
    let panels = if with_acc {
        root.split_evenly((1, 2))
    } else {
        vec![root.clone()]
    };
    panel(&panels[0], "loss", loss)?;
    if with_acc {
        panel(&panels[1], "accuracy", acc)?;
    }
    root.present().map_err(|e| e.to_string())
}

fn panel<DB: plotters::prelude::DrawingBackend>(
    area: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    curves: &[Curve],
) -> Result<(), String> {
    use plotters::prelude::*;
    let all = || curves.iter().flat_map(|(_, p)| p.iter());
    let x_max = all().map(|p| p.0).fold(1.0f32, f32::max);
    let (mut lo, mut hi) = all().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(56)
        .build_cartesian_2d(0f32..x_max, (lo - pad)..(hi + pad))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .draw()
        .map_err(|e| e.to_string())?;
    for ((label, points), color) in curves.iter().zip([BLUE, RED]) {
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color))
            .map_err(|e| e.to_string())?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

/// Prints a confusion matrix, rows the true classes.
pub fn print_confusion(out: &mut dyn Write, matrix: &[Vec<usize>]) -> CliResult<()> {
    writeln!(
        out,
        "confusion matrix (rows: true class, columns: predicted)"
    )?;
    write!(out, "     ")?;
    for c in 0..matrix.len() {
        write!(out, "{c:>5}")?;
    }
    writeln!(out)?;
    for (t, row) in matrix.iter().enumerate() {
        write!(out, "{t:>4} ")?;
        for v in row {
            write!(out, "{v:>5}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}
