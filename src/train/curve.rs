//! The loss curve: CSV (step, epoch, learning rate, loss and its components,
//! the gradients' norm, held-out metric at epoch ends) and an SVG plot beside it.

use std::path::{Path, PathBuf};

use super::Summary;
use crate::error::{Error, Result};

/// Write the loss curve as CSV and as an SVG plot beside it.
pub fn write_curve(s: &Summary, csv_path: &Path) -> Result<PathBuf> {
    let mut text = String::from("step,epoch,lr,loss");
    for n in s.loss_names.iter().skip(1) {
        text.push(',');
        text.push_str(n);
    }
    let metric = s.eval_metric.as_deref().unwrap_or("accuracy").replace([' ', '-'], "_");
    text.push_str(&format!(",grad_norm,eval_{metric}\n"));
    for p in &s.curve {
        text.push_str(&format!("{},{:.4},{:.6e},{:.6}", p.step, p.epoch, p.lr, p.loss));
        for c in &p.components {
            text.push_str(&format!(",{c:.6}"));
        }
        text.push_str(&format!(",{:.6e},{}\n", p.grad_norm, p.eval.map(|a| format!("{a:.2}")).unwrap_or_default()));
    }
    std::fs::write(csv_path, text).map_err(|e| Error::io(csv_path, e))?;
    let svg = csv_path.with_extension("svg");
    plot(s, &svg).map_err(|e| Error::io(&svg, std::io::Error::other(e)))?;
    Ok(svg)
}

fn plot(s: &Summary, path: &Path) -> std::result::Result<(), String> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (800, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let evals: Vec<(f64, f64)> = s.curve.iter().filter_map(|p| p.eval.map(|a| (p.epoch, a))).collect();
    let (top, bottom) = if evals.is_empty() { (root.clone(), None) } else { let (a, b) = root.split_vertically(300); (a, Some(b)) };
    let max_x = s.curve.last().map_or(1.0, |p| p.epoch).max(1e-3);
    // smoothed loss
    let mut pts = vec![];
    let mut e: Option<f64> = None;
    for p in &s.curve {
        let v = e.map_or(p.loss as f64, |e| 0.9 * e + 0.1 * p.loss as f64);
        e = Some(v);
        pts.push((p.epoch, v.max(1e-6)));
    }
    let (lo, hi) = pts.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &(_, v)| (lo.min(v), hi.max(v)));
    // no steps (`--steps 0`): an empty chart on 0..1
    let (lo, hi) = if pts.is_empty() { (0.0, 1.0) } else if lo >= hi { (lo * 0.5, lo * 2.0 + 1e-6) } else { (lo * 0.9, hi * 1.1) };
    let mut chart = ChartBuilder::on(&top)
        .caption("training loss (smoothed)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_x, lo..hi)
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc("epoch").y_desc("loss").draw().map_err(|e| e.to_string())?;
    chart.draw_series(LineSeries::new(pts, &BLUE)).map_err(|e| e.to_string())?;
    if let Some(b) = bottom {
        let (alo, ahi) = evals.iter().fold((100.0f64, 0.0f64), |(lo, hi), &(_, a)| (lo.min(a), hi.max(a)));
        let mut all = evals.clone();
        if let Some(b0) = s.eval_before {
            all.insert(0, (0.0, b0));
        }
        let alo = alo.min(s.eval_before.unwrap_or(alo));
        let caption = format!("held-out {} (%)", s.eval_metric.as_deref().unwrap_or("accuracy"));
        let mut c = ChartBuilder::on(&b)
            .caption(caption, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_x, (alo - 2.0).max(0.0)..(ahi + 2.0).min(100.0))
            .map_err(|e| e.to_string())?;
        c.configure_mesh().x_desc("epoch").y_desc("%").draw().map_err(|e| e.to_string())?;
        c.draw_series(LineSeries::new(all.clone(), &RED)).map_err(|e| e.to_string())?;
        c.draw_series(all.iter().map(|&p| Circle::new(p, 3, RED.filled()))).map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
