//! Datasets for evaluation and calibration: a folder of images (class
//! subfolders give labels), a TSV/CSV listing files (and labels), with
//! preprocessing to the model's input (resize, pad or crop, scale, mean/std,
//! RGB/BGR, NCHW). `--task rot180` turns every image into two samples, the
//! image as is (class 0) and rotated by 180° (class 1), for text-direction
//! classifiers.

use std::path::{Path, PathBuf};

use ndarray::Array3;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Resize {
    /// Scale to the target height keeping the aspect ratio (width capped), pad right with zeros.
    PadRight,
    /// Scale both sides to the target size.
    Stretch,
    /// Scale the short side to the target, then crop the centre.
    CenterCrop,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    pub height: u32,
    pub width: u32,
    pub resize: Resize,
    /// Pixels are multiplied by this first (1/255 maps bytes to [0, 1]).
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Channel order BGR instead of RGB.
    pub bgr: bool,
}

impl Preprocess {
    /// PP-OCR's text-direction classifier: 48×192, height kept, right-padded, (x/255 − 0.5)/0.5.
    pub fn ppocr_cls() -> Self {
        Preprocess { height: 48, width: 192, resize: Resize::PadRight, scale: 1.0 / 255.0, mean: [0.5; 3], std: [0.5; 3], bgr: false }
    }
    /// ImageNet: 224×224 centre crop, ImageNet mean/std.
    pub fn imagenet() -> Self {
        Preprocess { height: 224, width: 224, resize: Resize::CenterCrop, scale: 1.0 / 255.0, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], bgr: false }
    }
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "ppocr-cls" => Ok(Self::ppocr_cls()),
            "imagenet" => Ok(Self::imagenet()),
            other if other.ends_with(".toml") => {
                let text = std::fs::read_to_string(other).map_err(|e| Error::io(other, e))?;
                toml::from_str(&text).map_err(|e| Error::option("--preprocess", format!("{other}: {e}")))
            }
            other => Err(Error::option("--preprocess", format!("'{other}' is not a preset (ppocr-cls, imagenet) or a .toml file"))),
        }
    }

    /// Image → CHW float tensor.
    pub fn apply(&self, img: &image::DynamicImage) -> Array3<f32> {
        use image::imageops::FilterType;
        let rgb = img.to_rgb8();
        let (w0, h0) = (rgb.width().max(1), rgb.height().max(1));
        let (th, tw) = (self.height, self.width);
        let resized = match self.resize {
            Resize::Stretch => image::imageops::resize(&rgb, tw, th, FilterType::Triangle),
            Resize::PadRight => {
                let w = ((th as f64 * w0 as f64 / h0 as f64).ceil() as u32).clamp(1, tw);
                image::imageops::resize(&rgb, w, th, FilterType::Triangle)
            }
            Resize::CenterCrop => {
                let s = (th as f64 / h0 as f64).max(tw as f64 / w0 as f64);
                let (w, h) = (((w0 as f64 * s).round() as u32).max(tw), ((h0 as f64 * s).round() as u32).max(th));
                let r = image::imageops::resize(&rgb, w, h, FilterType::Triangle);
                image::imageops::crop_imm(&r, (w - tw) / 2, (h - th) / 2, tw, th).to_image()
            }
        };
        let mut out = Array3::<f32>::zeros((3, th as usize, tw as usize));
        for (x, y, p) in resized.enumerate_pixels() {
            for c in 0..3 {
                let src = if self.bgr { 2 - c } else { c };
                out[[c, y as usize, x as usize]] = (p[src] as f32 * self.scale - self.mean[c]) / self.std[c];
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Task {
    /// Each image gives two samples: as is (class 0) and rotated 180° (class 1).
    Rot180,
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub x: Array3<f32>,
    pub label: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub samples: Vec<Sample>,
    pub classes: Vec<String>,
}

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

fn read_image(p: &Path) -> Result<image::DynamicImage> {
    image::ImageReader::open(p)
        .map_err(|e| Error::io(p, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(p, e))?
        .decode()
        .map_err(|e| Error::InvalidModel { path: p.to_path_buf(), reason: format!("not a readable image: {e}") })
}

/// Files (and labels) of a dataset: a folder (class subfolders, or flat), or a TSV/CSV
/// whose first column is a file path (relative to the list) and an optional `label` column.
fn list(path: &Path) -> Result<(Vec<(PathBuf, Option<String>)>, Vec<String>)> {
    if path.is_dir() {
        let mut subdirs: Vec<PathBuf> = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
        subdirs.sort();
        if !subdirs.is_empty() {
            let mut out = vec![];
            let mut classes = vec![];
            for d in subdirs {
                let class = d.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
                let mut files: Vec<PathBuf> = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_image(p)).collect();
                files.sort();
                out.extend(files.into_iter().map(|f| (f, Some(class.clone()))));
                classes.push(class);
            }
            return Ok((out, classes));
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_image(p)).collect();
        files.sort();
        return Ok((files.into_iter().map(|f| (f, None)).collect(), vec![]));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let delim = if path.extension().is_some_and(|e| e == "csv") { b',' } else { b'\t' };
    let mut rdr = csv::ReaderBuilder::new().delimiter(delim).has_headers(true).from_reader(text.as_bytes());
    let headers = rdr.headers().map_err(|e| Error::option("--data", format!("{}: {e}", path.display())))?.clone();
    let label_col = headers.iter().position(|h| h.eq_ignore_ascii_case("label"));
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = vec![];
    let mut classes: Vec<String> = vec![];
    for rec in rdr.records() {
        let rec = rec.map_err(|e| Error::option("--data", format!("{}: {e}", path.display())))?;
        let file = rec.get(0).unwrap_or_default();
        let label = label_col.and_then(|c| rec.get(c)).map(str::to_string);
        if let Some(l) = &label {
            if !classes.contains(l) {
                classes.push(l.clone());
            }
        }
        out.push((base.join(file), label));
    }
    classes.sort();
    Ok((out, classes))
}

/// Preprocessed arrays: `.npy` holding x [N, C, H, W] (float32), or `.npz`
/// holding x (also accepted: inputs, data, or the only array) and optional
/// integer labels y (or labels).
fn load_arrays(path: &Path, limit: Option<usize>) -> Result<Dataset> {
    use ndarray_npy::{NpzReader, ReadNpyExt};
    let bad = |e: String| Error::option("--data", format!("{}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let (x, y): (ndarray::ArrayD<f32>, Option<Vec<i64>>) = if path.extension().is_some_and(|e| e == "npy") {
        (ndarray::ArrayD::<f32>::read_npy(file).map_err(|e| bad(format!("not a float32 .npy array ({e})")))?, None)
    } else {
        let mut r = NpzReader::new(file).map_err(|e| bad(format!("not an .npz archive ({e})")))?;
        let names: Vec<String> = r.names().map_err(|e| bad(e.to_string()))?;
        let strip = |n: &str| n.trim_end_matches(".npy").to_string();
        let pick = |cands: &[&str]| names.iter().find(|n| cands.contains(&strip(n).as_str())).cloned();
        let xname = pick(&["x", "inputs", "data"])
            .or_else(|| (names.len() == 1).then(|| names[0].clone()))
            .ok_or_else(|| bad(format!("no array named x, inputs or data (has {})", names.join(", "))))?;
        let x: ndarray::ArrayD<f32> = r.by_name(&xname).map_err(|e| bad(format!("{xname}: {e} (expected float32)")))?;
        let y = match pick(&["y", "labels", "label"]) {
            Some(yn) => Some(match r.by_name::<ndarray::OwnedRepr<i64>, ndarray::IxDyn>(&yn) {
                Ok(a) => a.iter().copied().collect(),
                Err(_) => {
                    let a: ndarray::ArrayD<i32> = r.by_name(&yn).map_err(|e| bad(format!("{yn}: {e} (expected int64 or int32 labels)")))?;
                    a.iter().map(|&v| v as i64).collect()
                }
            }),
            None => None,
        };
        (x, y)
    };
    if x.ndim() < 2 {
        return Err(bad(format!("x has shape {:?}; expected [N, C, H, W]", x.shape())));
    }
    let n = x.shape()[0].min(limit.unwrap_or(usize::MAX));
    if let Some(y) = &y {
        if y.len() != x.shape()[0] {
            return Err(bad(format!("{} labels for {} inputs", y.len(), x.shape()[0])));
        }
        if y.iter().any(|&v| v < 0) {
            return Err(bad("negative label".into()));
        }
    }
    let classes = y.as_ref().map(|y| (0..=y.iter().copied().max().unwrap_or(0)).map(|c| c.to_string()).collect()).unwrap_or_default();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let xi = x.index_axis(ndarray::Axis(0), i).to_owned();
        let xi = if xi.ndim() == 3 { xi.into_dimensionality::<ndarray::Ix3>().map_err(|e| bad(e.to_string()))? } else {
            return Err(bad(format!("x has shape {:?}; expected [N, C, H, W]", x.shape())));
        };
        samples.push(Sample { name: format!("{}[{i}]", path.display()), x: xi, label: y.as_ref().map(|y| y[i] as usize) });
    }
    if samples.is_empty() {
        return Err(bad("no samples".into()));
    }
    Ok(Dataset { samples, classes })
}

/// Load and preprocess a dataset. `limit` keeps the first N source images.
pub fn load(path: &Path, pre: &Preprocess, task: Option<Task>, limit: Option<usize>) -> Result<Dataset> {
    if path.extension().is_some_and(|e| e == "npy" || e == "npz") {
        if task.is_some() {
            return Err(Error::option("--task", "applies to images, not to .npy/.npz arrays"));
        }
        return load_arrays(path, limit);
    }
    let (mut files, mut classes) = list(path)?;
    if let Some(n) = limit {
        files.truncate(n);
    }
    if files.is_empty() {
        return Err(Error::option("--data", format!("{}: no images found", path.display())));
    }
    let mut samples = Vec::with_capacity(files.len() * 2);
    match task {
        Some(Task::Rot180) => {
            classes = vec!["0".into(), "180".into()];
            for (f, _) in &files {
                let img = read_image(f)?;
                let name = f.display().to_string();
                samples.push(Sample { name: name.clone(), x: pre.apply(&img), label: Some(0) });
                samples.push(Sample { name: format!("{name}@180"), x: pre.apply(&img.rotate180()), label: Some(1) });
            }
        }
        None => {
            for (f, l) in &files {
                let img = read_image(f)?;
                let label = l.as_ref().and_then(|l| classes.iter().position(|c| c == l));
                samples.push(Sample { name: f.display().to_string(), x: pre.apply(&img), label });
            }
        }
    }
    Ok(Dataset { samples, classes })
}
