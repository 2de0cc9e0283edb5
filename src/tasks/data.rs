//! Datasets for evaluation and calibration: a folder of images (class
//! subfolders give labels), a TSV/CSV listing files (and labels), with
//! preprocessing to the model's input (resize, pad or crop, scale, mean/std,
//! RGB/BGR, NCHW). `--task rot180` turns every image into two samples, the
//! image as is (class 0) and rotated by 180° (class 1), for text-direction
//! classifiers.

use std::path::{Path, PathBuf};

use ndarray::Array3;
use serde::{Deserialize, Serialize};

use super::Task;
use crate::error::{Error, Result};

crate::choice_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Resize {
        /// Scale to the target height keeping the aspect ratio (width capped), pad right with zeros.
        PadRight = "pad-right",
        /// Scale both sides to the target size.
        Stretch = "stretch",
        /// Scale the short side to the target, then crop the centre.
        CenterCrop = "center-crop",
        /// Keep the aspect ratio: the longer side at most max(height, width), both
        /// sides rounded to a multiple of 32 (text detectors; sizes vary per image).
        Page = "page",
    }
}

/// Largest image side a preprocessing accepts (`--size`, a TOML's `height`/`width`).
pub const MAX_SIDE: u32 = 16384;

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
    /// PP-OCR's text detectors: the longer side capped at 960, sides rounded to
    /// multiples of 32, ImageNet mean/std.
    pub fn ppocr_det() -> Self {
        Preprocess { height: 960, width: 960, resize: Resize::Page, scale: 1.0 / 255.0, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], bgr: false }
    }
    /// PaddleDetection's PP-PicoDet layout models: 800×608 (height × width) stretched,
    /// ImageNet mean/std, RGB.
    pub fn picodet_layout() -> Self {
        Preprocess { height: 800, width: 608, resize: Resize::Stretch, scale: 1.0 / 255.0, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], bgr: false }
    }
    /// PP-OCR's text recognizers: height 48, width up to 320 keeping the aspect
    /// ratio, right-padded, (x/255 − 0.5)/0.5.
    pub fn ppocr_rec() -> Self {
        Preprocess { height: 48, width: 320, resize: Resize::PadRight, scale: 1.0 / 255.0, mean: [0.5; 3], std: [0.5; 3], bgr: false }
    }
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "ppocr-cls" => Ok(Self::ppocr_cls()),
            "ppocr-det" => Ok(Self::ppocr_det()),
            "ppocr-rec" => Ok(Self::ppocr_rec()),
            "imagenet" => Ok(Self::imagenet()),
            "picodet-layout" => Ok(Self::picodet_layout()),
            other if other.ends_with(".toml") => {
                let text = std::fs::read_to_string(other).map_err(|e| Error::io(other, e))?;
                let p: Preprocess = toml::from_str(&text).map_err(|e| Error::option("--preprocess", format!("{other}: {e}")))?;
                p.check().map_err(|e| Error::option("--preprocess", format!("{other}: {e}")))?;
                Ok(p)
            }
            other => Err(Error::option("--preprocess", format!("'{other}' is not a preset (ppocr-cls, ppocr-det, ppocr-rec, imagenet, picodet-layout) or a .toml file"))),
        }
    }

    /// The checks the command-line flags get (`--size`, `--std`, ...), for values from a
    /// TOML file: the key at fault and what it must be.
    pub fn check(&self) -> std::result::Result<(), String> {
        for (key, v) in [("height", self.height), ("width", self.width)] {
            if !(1..=MAX_SIDE).contains(&v) {
                return Err(format!("{key} = {v}: must be 1..={MAX_SIDE}"));
            }
        }
        if !(self.scale.is_finite() && self.scale != 0.0) {
            return Err(format!("scale = {}: must be a finite number other than 0", self.scale));
        }
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(format!("mean contains {m}: must be finite"));
        }
        if let Some(v) = self.std.iter().find(|v| !v.is_finite() || **v == 0.0) {
            return Err(format!("std contains {v}: must be finite and not 0"));
        }
        Ok(())
    }

    /// The input size for an image of `w0 × h0`, and the scale from the image
    /// to it (x, y).
    pub fn target(&self, w0: u32, h0: u32) -> (u32, u32, f64, f64) {
        let (w0, h0) = (w0.max(1), h0.max(1));
        match self.resize {
            Resize::Page => {
                let cap = self.height.max(self.width) as f64;
                let s = (cap / w0.max(h0) as f64).min(1.0);
                let round = |v: f64| (((v / 32.0).round() as u32).max(1)) * 32;
                let (tw, th) = (round(w0 as f64 * s), round(h0 as f64 * s));
                (tw, th, tw as f64 / w0 as f64, th as f64 / h0 as f64)
            }
            Resize::PadRight => {
                let w = ((self.height as f64 * w0 as f64 / h0 as f64).ceil() as u32).clamp(1, self.width);
                (self.width, self.height, w as f64 / w0 as f64, self.height as f64 / h0 as f64)
            }
            _ => (self.width, self.height, self.width as f64 / w0 as f64, self.height as f64 / h0 as f64),
        }
    }

    /// Image → CHW float tensor.
    pub fn apply(&self, img: &image::DynamicImage) -> Array3<f32> {
        use image::imageops::FilterType;
        let rgb = img.to_rgb8();
        let (w0, h0) = (rgb.width().max(1), rgb.height().max(1));
        let (tw, th, _, _) = self.target(w0, h0);
        let resized = match self.resize {
            Resize::Page => image::imageops::resize(&rgb, tw, th, FilterType::Triangle),
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

#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub x: Array3<f32>,
    pub label: Option<usize>,
    /// The text of a text line (`--task ctc`).
    pub text: Option<String>,
    /// Ground-truth boxes [x0, y0, x1, y1] in the input's coordinates (`--task textdet`).
    pub boxes: Vec<[f32; 4]>,
}

impl Sample {
    /// A sample with an optional class label and no text or boxes.
    pub fn new(name: impl Into<String>, x: Array3<f32>, label: Option<usize>) -> Sample {
        Sample { name: name.into(), x, label, text: None, boxes: vec![] }
    }
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub samples: Vec<Sample>,
    pub classes: Vec<String>,
}

impl Dataset {
    /// The preprocessed inputs as one array `x` [N, C, H, W] in an `.npz` (the
    /// calibration data ONNX Runtime's `quantize_static` reads through
    /// `scripts/quantize.py --calib`), written whole or not at all.
    pub fn save_inputs(&self, path: &Path) -> Result<()> {
        use ndarray_npy::NpzWriter;
        let first = self.samples.first().ok_or_else(|| Error::option("--save-inputs", "the data has no samples"))?;
        let shape = first.x.raw_dim();
        if let Some(s) = self.samples.iter().find(|s| s.x.raw_dim() != shape) {
            return Err(Error::option("--save-inputs", format!("sample {} is {:?}, the first {:?}: one array needs one input size (set --size)", s.name, s.x.shape(), first.x.shape())));
        }
        let views: Vec<_> = self.samples.iter().map(|s| s.x.view().insert_axis(ndarray::Axis(0))).collect();
        let x = ndarray::concatenate(ndarray::Axis(0), &views).map_err(|e| Error::option("--save-inputs", e.to_string()))?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
        let err = |e: ndarray_npy::WriteNpzError| Error::io(path, std::io::Error::other(e.to_string()));
        let mut w = NpzWriter::new(tmp.as_file());
        w.add_array("x", &x).map_err(err)?;
        w.finish().map_err(err)?;
        crate::onnx::set_permissions_like(tmp.as_file(), path);
        tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
        Ok(())
    }
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
        samples.push(Sample::new(format!("{}[{i}]", path.display()), xi, y.as_ref().map(|y| y[i] as usize)));
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
    match task {
        // layout pages: a folder or a list as for textdet (the boxes are not layout ground truth)
        Some(Task::Textdet) | Some(Task::Layout) => return load_textdet(path, pre, limit),
        Some(Task::Ctc) => return load_lines(path, pre, limit),
        Some(Task::Rot180) | None => {}
    }
    let (mut files, mut classes) = list(path)?;
    if let Some(n) = limit {
        files.truncate(n);
    }
    if files.is_empty() {
        return Err(Error::option("--data", format!("{}: no images found", path.display())));
    }
    let mut samples = Vec::with_capacity(files.len() * 2);
    if task == Some(Task::Rot180) {
        classes = vec!["0".into(), "180".into()];
        for (f, _) in &files {
            let img = read_image(f)?;
            let name = f.display().to_string();
            samples.push(Sample::new(name.clone(), pre.apply(&img), Some(0)));
            samples.push(Sample::new(format!("{name}@180"), pre.apply(&img.rotate180()), Some(1)));
        }
    } else {
        for (f, l) in &files {
            let img = read_image(f)?;
            let label = l.as_ref().and_then(|l| classes.iter().position(|c| c == l));
            samples.push(Sample::new(f.display().to_string(), pre.apply(&img), label));
        }
    }
    Ok(Dataset { samples, classes })
}

/// Text lines with their transcription (the list's `text` column, when present).
fn load_lines(path: &Path, pre: &Preprocess, limit: Option<usize>) -> Result<Dataset> {
    let (mut files, _) = list(path)?;
    if let Some(n) = limit {
        files.truncate(n);
    }
    if files.is_empty() {
        return Err(Error::option("--data", format!("{}: no images found", path.display())));
    }
    let texts = column(path, "text")?;
    let mut samples = Vec::with_capacity(files.len());
    for (i, (f, _)) in files.iter().enumerate() {
        let img = read_image(f)?;
        let text = texts.as_ref().and_then(|t| t.get(i).cloned());
        samples.push(Sample { name: f.display().to_string(), x: pre.apply(&img), label: None, text, boxes: vec![] });
    }
    Ok(Dataset { samples, classes: vec![] })
}

/// A named column of a TSV/CSV list, in row order (None for folders or without the column).
fn column(path: &Path, name: &str) -> Result<Option<Vec<String>>> {
    if path.is_dir() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let delim = if path.extension().is_some_and(|e| e == "csv") { b',' } else { b'\t' };
    let mut rdr = csv::ReaderBuilder::new().delimiter(delim).has_headers(true).from_reader(text.as_bytes());
    let headers = rdr.headers().map_err(|e| Error::option("--data", format!("{}: {e}", path.display())))?.clone();
    let Some(c) = headers.iter().position(|h| h.eq_ignore_ascii_case(name)) else { return Ok(None) };
    let mut out = vec![];
    for rec in rdr.records() {
        let rec = rec.map_err(|e| Error::option("--data", format!("{}: {e}", path.display())))?;
        out.push(rec.get(c).unwrap_or_default().to_string());
    }
    Ok(Some(out))
}

/// A text-detection set: a TSV/CSV of boxes (`file, x0, y0, x1, y1`, one row per
/// box, files relative to the list), or a folder of images without boxes.
/// `limit` keeps the first N images.
fn load_textdet(path: &Path, pre: &Preprocess, limit: Option<usize>) -> Result<Dataset> {
    let mut order: Vec<PathBuf> = vec![];
    let mut boxes: std::collections::HashMap<PathBuf, Vec<[f32; 4]>> = Default::default();
    if path.is_dir() {
        let (files, _) = list(path)?;
        order = files.into_iter().map(|(f, _)| f).collect();
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let delim = if path.extension().is_some_and(|e| e == "csv") { b',' } else { b'\t' };
        let mut rdr = csv::ReaderBuilder::new().delimiter(delim).has_headers(true).from_reader(text.as_bytes());
        let base = path.parent().unwrap_or(Path::new("."));
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| Error::option("--data", format!("{}: {e}", path.display())))?;
            let bad = || Error::option("--data", format!("{}: row {}: expected file, x0, y0, x1, y1", path.display(), i + 2));
            let f = base.join(rec.get(0).ok_or_else(bad)?);
            let v: Vec<f32> = (1..5).map(|k| rec.get(k).and_then(|s| s.trim().parse::<f32>().ok())).collect::<Option<_>>().ok_or_else(bad)?;
            if !boxes.contains_key(&f) {
                order.push(f.clone());
            }
            boxes.entry(f).or_default().push([v[0], v[1], v[2], v[3]]);
        }
    }
    if let Some(n) = limit {
        order.truncate(n);
    }
    if order.is_empty() {
        return Err(Error::option("--data", format!("{}: no images found", path.display())));
    }
    let mut samples = vec![];
    for f in order {
        let img = read_image(&f)?;
        let (_, _, sx, sy) = pre.target(img.width(), img.height());
        let b = boxes.remove(&f).unwrap_or_default().into_iter().map(|[x0, y0, x1, y1]| [x0 * sx as f32, y0 * sy as f32, x1 * sx as f32, y1 * sy as f32]).collect();
        samples.push(Sample { name: f.display().to_string(), x: pre.apply(&img), label: None, text: None, boxes: b });
    }
    Ok(Dataset { samples, classes: vec![] })
}
