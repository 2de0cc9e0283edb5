//! Training batches: a shuffled order per epoch (deterministic given the
//! seed), random crops (`--crop`), augmentation, and one-hot labels.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use crate::tasks::data::Dataset;
use crate::error::{Error, Result};

pub struct Batcher<'a> {
    data: &'a Dataset,
    seed: u64,
    /// Crop (height, width) of every sample, at a random place.
    crop: Option<(usize, usize)>,
    augment: Augment,
    /// Per-sample input shape [C, H, W] after cropping.
    pub shape: Vec<usize>,
    order: Vec<usize>,
    order_epoch: usize,
}

impl<'a> Batcher<'a> {
    pub fn new(data: &'a Dataset, seed: u64, crop: Option<(usize, usize)>, augment: Augment) -> Result<Batcher<'a>> {
        let first = data.samples.first().ok_or_else(|| Error::option("--data", "no samples"))?;
        let s0 = first.x.shape().to_vec();
        let shape = match crop {
            Some((h, w)) => vec![s0[0], h, w],
            None => {
                if let Some(s) = data.samples.iter().find(|s| s.x.shape() != s0.as_slice()) {
                    return Err(Error::option("--crop", format!("samples differ in size ({} is {:?}, {} is {:?}); train on crops of one size with --crop HxW", first.name, s0, s.name, s.x.shape())));
                }
                s0
            }
        };
        Ok(Batcher { data, seed, crop, augment, shape, order: vec![], order_epoch: usize::MAX })
    }

    /// Fill `x` with batch `k` (counted from the start of training, `per_epoch`
    /// batches of `b` per epoch); returns the sample indices.
    pub fn fill(&mut self, k: usize, b: usize, per_epoch: usize, x: &mut [f32]) -> Result<Vec<usize>> {
        let epoch = k / per_epoch;
        let pos = k % per_epoch;
        if self.order_epoch != epoch {
            self.order = (0..self.data.samples.len()).collect();
            self.order.shuffle(&mut StdRng::seed_from_u64(self.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64)));
            self.order_epoch = epoch;
        }
        let idx = self.order[pos * b..(pos + 1) * b].to_vec();
        let len: usize = self.shape.iter().product();
        for (j, &i) in idx.iter().enumerate() {
            // one stream per sample drawn (the same whichever way a step is split into micro-batches)
            let drawn = (k * b + j) as u64;
            let mut rng = StdRng::seed_from_u64(self.seed ^ drawn.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let s = &self.data.samples[i];
            let src = s.x.as_slice().ok_or_else(|| Error::tensor(&s.name, "not contiguous"))?;
            let dst = &mut x[j * len..(j + 1) * len];
            match self.crop {
                Some((h, w)) => crop(src, s.x.shape(), dst, h, w, &mut rng),
                None => dst.copy_from_slice(src),
            }
            if self.augment.on {
                augment(dst, &self.shape, &self.augment, &mut rng);
            }
        }
        Ok(idx)
    }
}

/// A random h × w window of a CHW sample (zero-padded where the sample is smaller).
fn crop(src: &[f32], shape: &[usize], dst: &mut [f32], h: usize, w: usize, rng: &mut StdRng) {
    let (c, sh, sw) = (shape[0], shape[1], shape[2]);
    let y0 = if sh > h { rng.random_range(0..=sh - h) } else { 0 };
    let x0 = if sw > w { rng.random_range(0..=sw - w) } else { 0 };
    dst.fill(0.0);
    for ci in 0..c {
        for y in 0..h.min(sh - y0) {
            let n = w.min(sw - x0);
            let s = ci * sh * sw + (y0 + y) * sw + x0;
            let d = ci * h * w + y * w;
            dst[d..d + n].copy_from_slice(&src[s..s + n]);
        }
    }
}

/// What the augmentation does.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Augment {
    /// Shifts, contrast/brightness jitter and noise.
    pub on: bool,
    /// Range of a random horizontal stretch (anchored at the left edge, where
    /// right-padded text lines start); `(1, 1)`: none.
    pub xscale: (f32, f32),
    /// Range of a random zoom of both axes (about the top-left corner: text of
    /// other sizes); `(1, 1)`: none.
    pub scale: (f32, f32),
    /// Random stroke weight: a third of the samples get darker strokes one pixel
    /// wider (a 2×2 minimum filter), a third one pixel thinner (maximum), for
    /// fonts of other weights.
    pub stroke: bool,
    /// Random strips: half the samples are cut into vertical strips 8-48 pixels
    /// wide, put back in a random order, so that their lines show letter
    /// sequences and glyph pieces that the data's words do not have.
    pub strips: bool,
    /// Amplitude in pixels of a random elastic distortion (0: none): every
    /// sample is resampled through a smooth random displacement field
    /// (`ELASTIC_GRID` pixels between its independent values), which reshapes
    /// the glyphs (stroke curves, x-height, letter widths) as other fonts do.
    pub elastic: f32,
}

impl Augment {
    pub const ON: Augment = Augment { on: true, xscale: (1.0, 1.0), scale: (1.0, 1.0), stroke: false, strips: false, elastic: 0.0 };
}

/// Narrowest and widest strip of `Augment::strips`, in pixels: about one to
/// three letters of the 18-32 pixel text that detectors see.
const STRIPS: (usize, usize) = (8, 48);

/// Pixels between the independent displacements of `Augment::elastic`: about
/// half a letter of the 18-32 pixel text, so that parts of one glyph move apart.
pub const ELASTIC_GRID: usize = 8;

/// Random shift, zoom, horizontal stretch, strips, elastic distortion, stroke
/// weight, contrast/brightness jitter and noise on a CHW sample (in place);
/// what `Augment` turns on.
fn augment(x: &mut [f32], shape: &[usize], a: &Augment, rng: &mut StdRng) {
    let w = shape[2];
    let dy = rng.random_range(-2i64..=2);
    let dx = rng.random_range(-(w as i64) / 24..=(w as i64) / 24);
    let gain = rng.random_range(0.75f32..1.25);
    let bias = rng.random_range(-0.2f32..0.2);
    // drawn only when asked for, so runs without them draw the same numbers as before
    let draw = |r: (f32, f32), rng: &mut StdRng| if r.0 < r.1 { rng.random_range(r.0..r.1) } else { r.0 };
    let stretch = draw(a.xscale, rng);
    let zoom = draw(a.scale, rng);
    let mut src = x.to_vec();
    if a.strips && rng.random_bool(0.5) {
        shuffle_strips(x, shape, rng, &mut src);
    }
    warp(&src, shape, dy, dx, (zoom, zoom * stretch), x);
    if a.elastic > 0.0 {
        src.copy_from_slice(x);
        elastic(&src, shape, a.elastic, ELASTIC_GRID, rng, x);
    }
    if a.stroke {
        match rng.random_range(0..3) {
            1 => stroke(x, shape, true),
            2 => stroke(x, shape, false),
            _ => {}
        }
    }
    for v in x.iter_mut() {
        let noise = rng.random_range(-0.05f32..0.05);
        *v = *v * gain + bias + noise;
    }
}

/// `dst` = the CHW sample `src` cut into vertical strips of random widths in
/// `STRIPS` (the last one what is left) and put back in a random order.
pub fn shuffle_strips(src: &[f32], shape: &[usize], rng: &mut StdRng, dst: &mut [f32]) {
    let (c, h, w) = (shape[0], shape[1], shape[2]);
    let mut strips = vec![];
    let mut x0 = 0;
    while x0 < w {
        let x1 = (x0 + rng.random_range(STRIPS.0..=STRIPS.1)).min(w);
        strips.push(x0..x1);
        x0 = x1;
    }
    strips.shuffle(rng);
    let mut at = 0;
    for r in strips {
        for row in 0..c * h {
            dst[row * w + at..row * w + at + r.len()].copy_from_slice(&src[row * w + r.start..row * w + r.end]);
        }
        at += r.len();
    }
}

/// `dst` = the CHW sample `src` shifted by (dy, dx) pixels and stretched by
/// `(sy, sx)` about its top-left corner (bilinear interpolation; zero outside
/// the sample): dst[c, y, x] = src[c, (y - dy) / sy, (x - dx) / sx].
pub fn warp(src: &[f32], shape: &[usize], dy: i64, dx: i64, (sy, sx): (f32, f32), dst: &mut [f32]) {
    let (c, h, w) = (shape[0], shape[1], shape[2]);
    let at = |ci: usize, y: i64, x: i64| if y >= 0 && y < h as i64 && x >= 0 && x < w as i64 { src[ci * h * w + y as usize * w + x as usize] } else { 0.0 };
    // source coordinate of an output row or column: whole pixel and the next one's weight
    let coord = |i: usize, d: i64, s: f32| -> (i64, f32) {
        if s == 1.0 {
            return (i as i64 - d, 0.0);
        }
        let u = (i as i64 - d) as f32 / s;
        (u.floor() as i64, u - u.floor())
    };
    for ci in 0..c {
        for yi in 0..h {
            let (y0, g) = coord(yi, dy, sy);
            for xi in 0..w {
                let (x0, f) = coord(xi, dx, sx);
                let row = |y: i64| if f == 0.0 { at(ci, y, x0) } else { at(ci, y, x0) * (1.0 - f) + at(ci, y, x0 + 1) * f };
                dst[ci * h * w + yi * w + xi] = if g == 0.0 { row(y0) } else { row(y0) * (1.0 - g) + row(y0 + 1) * g };
            }
        }
    }
}

/// `dst` = the CHW sample `src` resampled (bilinear, edges clamped) at
/// (y + uy, x + ux), the displacements drawn uniformly in ±`amp` pixels on a
/// grid every `grid` pixels and interpolated bilinearly between: a smooth field,
/// the same in every channel, that moves no pixel by more than `amp` on each axis.
pub fn elastic(src: &[f32], shape: &[usize], amp: f32, grid: usize, rng: &mut StdRng, dst: &mut [f32]) {
    let (c, h, w) = (shape[0], shape[1], shape[2]);
    let grid = grid.max(1);
    let (gh, gw) = (h.div_ceil(grid) + 1, w.div_ceil(grid) + 1);
    let field = |rng: &mut StdRng| -> Vec<f32> { (0..gh * gw).map(|_| rng.random_range(-amp..=amp)).collect() };
    let (uy, ux) = (field(rng), field(rng));
    let at = |f: &[f32], y: usize, x: usize| {
        let (gy, gx) = (y / grid, x / grid);
        let (fy, fx) = ((y % grid) as f32 / grid as f32, (x % grid) as f32 / grid as f32);
        let row = |r: usize| f[r * gw + gx] * (1.0 - fx) + f[r * gw + gx + 1] * fx;
        row(gy) * (1.0 - fy) + row(gy + 1) * fy
    };
    for y in 0..h {
        for x in 0..w {
            let sy = (y as f32 + at(&uy, y, x)).clamp(0.0, (h - 1) as f32);
            let sx = (x as f32 + at(&ux, y, x)).clamp(0.0, (w - 1) as f32);
            let (y0, x0) = (sy.floor() as usize, sx.floor() as usize);
            let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
            let (g, f) = (sy - y0 as f32, sx - x0 as f32);
            for ci in 0..c {
                let p = &src[ci * h * w..(ci + 1) * h * w];
                let top = p[y0 * w + x0] * (1.0 - f) + p[y0 * w + x1] * f;
                let bottom = p[y1 * w + x0] * (1.0 - f) + p[y1 * w + x1] * f;
                dst[ci * h * w + y * w + x] = top * (1.0 - g) + bottom * g;
            }
        }
    }
}

/// Dark strokes of a CHW sample one pixel wider (`thicken`: each pixel the
/// minimum of the 2×2 window at it, per channel) or thinner (the maximum); the
/// window is cut at the right and bottom edges.
pub fn stroke(x: &mut [f32], shape: &[usize], thicken: bool) {
    let (c, h, w) = (shape[0], shape[1], shape[2]);
    let pick = |a: f32, b: f32| if thicken { a.min(b) } else { a.max(b) };
    for plane in x.chunks_exact_mut(h * w).take(c) {
        for y in 0..h {
            for xi in 0..w {
                let mut v = plane[y * w + xi];
                if xi + 1 < w {
                    v = pick(v, plane[y * w + xi + 1]);
                }
                if y + 1 < h {
                    v = pick(v, plane[(y + 1) * w + xi]);
                    if xi + 1 < w {
                        v = pick(v, plane[(y + 1) * w + xi + 1]);
                    }
                }
                // rows below and the column to the right are read before they are written
                plane[y * w + xi] = v;
            }
        }
    }
}

/// One-hot rows of the samples' labels (`classes` wide).
pub fn one_hot(data: &Dataset, idx: &[usize], classes: usize, y: &mut [f32]) {
    for (k, &i) in idx.iter().enumerate() {
        let row = &mut y[k * classes..(k + 1) * classes];
        row.fill(0.0);
        if let Some(l) = data.samples[i].label.filter(|&l| l < classes) {
            row[l] = 1.0;
        }
    }
}
