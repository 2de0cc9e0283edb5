//! Shared helpers for the integration tests.
#![allow(dead_code)]

use fusec::models::builder::{Act, ModelBuilder};
use fusec::ir::Graph;
use fusec::onnx::{Dim, Model, ModelProto};
use fusec::passes::fuse_depthwise::{Assign, FuseDepthwise, Init, Options, Variant};
use fusec::passes::{run_pipeline, LayerSelection, Pass, PassCx, PassReport};
use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

pub fn testdata(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)
}

/// What kernel pattern the depthwise weights get.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kernel {
    /// Random everywhere.
    Dense,
    /// Zero outside the centre row for the first ⌈C/2⌉ channels and outside
    /// the centre column for the rest (exactly representable by Half).
    HalfExact,
    /// Zero outside the centre tap (exactly representable by Full).
    CenterOnly,
}

/// A depthwise block: [pw expand] → dw K×K → [BN] → [act] → [SE] → [act] → pw.
#[derive(Debug, Clone)]
pub struct Block {
    pub c: usize,
    pub k: (usize, usize),
    pub stride: (usize, usize),
    pub pads: Option<[i64; 4]>,
    pub auto_pad: Option<&'static str>,
    pub dil: (usize, usize),
    pub h: usize,
    pub w: usize,
    pub bias: bool,
    pub bn: bool,
    pub act: Act,
    pub se: Option<bool>,
    /// SE after the activation (MobileNetV3 export order) instead of before.
    pub se_after_act: bool,
    pub symbolic_batch: bool,
    pub opset: i64,
    pub kernel: Kernel,
    pub cout: usize,
    pub weights_as_constants: bool,
    pub weights_through_identity: bool,
}

impl Default for Block {
    fn default() -> Self {
        Block {
            c: 8,
            k: (3, 3),
            stride: (1, 1),
            pads: None,
            auto_pad: None,
            dil: (1, 1),
            h: 9,
            w: 11,
            bias: false,
            bn: true,
            act: Act::Relu,
            se: None,
            se_after_act: false,
            symbolic_batch: false,
            opset: 13,
            kernel: Kernel::Dense,
            cout: 6,
            weights_as_constants: false,
            weights_through_identity: false,
        }
    }
}

impl Block {
    pub fn model(&self, seed: u64) -> ModelProto {
        let mut b = ModelBuilder::new(self.opset, seed);
        b.weights_as_constants = self.weights_as_constants;
        b.weights_through_identity = self.weights_through_identity;
        let batch = if self.symbolic_batch { Dim::Sym("batch".into()) } else { Dim::Known(1) };
        let x = b.input("x", &[batch, Dim::Known(3), Dim::Known(self.h as i64), Dim::Known(self.w as i64)]);
        let e = b.conv(&x, 3, self.c, (1, 1), (1, 1), (0, 0), 1, true);
        let pads = self.pads.unwrap_or([(self.k.0 as i64 - 1) / 2 * self.dil.0 as i64, (self.k.1 as i64 - 1) / 2 * self.dil.1 as i64, (self.k.0 as i64 - 1) / 2 * self.dil.0 as i64, (self.k.1 as i64 - 1) / 2 * self.dil.1 as i64]);
        let pads_opt = if self.auto_pad.is_some() { None } else { Some(&pads[..]) };
        let d = b.conv_full(&e, self.c, self.c, self.k, self.stride, pads_opt, self.auto_pad, self.c, self.bias, self.dil);
        let (kh, kw) = self.k;
        let c1 = self.c.div_ceil(2);
        let pattern = self.kernel;
        let p = resolve_pads(self.auto_pad, Some(pads), self.k, self.stride, self.dil, (self.h, self.w));
        let (ch_, cw_) = (aligned_tap(kh, self.dil.0, p[0]), aligned_tap(kw, self.dil.1, p[1]));
        if pattern != Kernel::Dense {
            let dense = b.uniform(&[self.c, 1, kh, kw], 0.8);
            b.set_weight(&d, move |i| {
                let (ch, r, col) = (i[0], i[2], i[3]);
                let keep = match pattern {
                    Kernel::HalfExact if ch < c1 => r == ch_,
                    Kernel::HalfExact => col == cw_,
                    Kernel::CenterOnly => r == ch_ && col == cw_,
                    Kernel::Dense => true,
                };
                if keep { dense[[ch, 0, r, col]] + 0.2 } else { 0.0 }
            });
        }
        let mut y = if self.bn { b.bn(&d, self.c) } else { d };
        let hidden = (self.c / 4).max(2);
        if let (Some(gemm), false) = (self.se, self.se_after_act) {
            y = b.se(&y, self.c, hidden, Act::HardSigmoid, gemm);
        }
        y = b.act(&y, self.act);
        if let (Some(gemm), true) = (self.se, self.se_after_act) {
            y = b.se(&y, self.c, hidden, Act::Sigmoid, gemm);
        }
        let out = b.conv(&y, self.c, self.cout, (1, 1), (1, 1), (0, 0), 1, true);
        b.output(&out);
        b.build()
    }

    pub fn input(&self, seed: u64) -> ArrayD<f32> {
        random_input(&[1, 3, self.h, self.w], seed)
    }
}

/// Explicit pads [top, left, bottom, right] per the ONNX spec, written
/// independently of fusec: `auto_pad` resolved on an input of size `hw`.
pub fn resolve_pads(auto_pad: Option<&str>, pads: Option<[i64; 4]>, k: (usize, usize), s: (usize, usize), d: (usize, usize), hw: (usize, usize)) -> [i64; 4] {
    match auto_pad {
        Some("VALID") => [0; 4],
        Some(mode) => {
            let one = |n: usize, k: usize, s: usize, d: usize| {
                let out = n.div_ceil(s);
                let total = ((out - 1) * s + (k - 1) * d + 1).saturating_sub(n) as i64;
                if mode == "SAME_UPPER" { (total / 2, total - total / 2) } else { (total - total / 2, total / 2) }
            };
            let (t, bo) = one(hw.0, k.0, s.0, d.0);
            let (l, r) = one(hw.1, k.1, s.1, d.1);
            [t, l, bo, r]
        }
        None => pads.unwrap(),
    }
}

/// The kernel tap a 1-D FuSe branch keeps along an axis of size `k`: the
/// middle one, and for even `k` the middle tap through which output i reads
/// input row i·stride (the tap `pad_begin / d`) when that is one of the two.
pub fn aligned_tap(k: usize, d: usize, pad_begin: i64) -> usize {
    let lo = (k - 1) / 2;
    if k % 2 == 0 && pad_begin == ((lo + 1) * d) as i64 { lo + 1 } else { lo }
}

pub fn random_input(shape: &[usize], seed: u64) -> ArrayD<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()).unwrap()
}

pub fn graph_of(m: &ModelProto) -> Graph {
    Graph::from_proto(m.graph.as_ref().unwrap(), fusec::onnx::opset_of(m)).unwrap()
}

pub fn fuse_pass(variant: Variant, init: Init) -> Box<dyn Pass> {
    fuse_pass_assigned(variant, init, Assign::Ordered)
}

pub fn fuse_pass_assigned(variant: Variant, init: Init, assign: Assign) -> Box<dyn Pass> {
    Box::new(FuseDepthwise::new(Options { variant, init, assign, layers: LayerSelection::All, skip: vec![], dense: false }).unwrap())
}

/// Run the FuSe pass on a model in memory; returns the new model and the report.
pub fn convert(m: &ModelProto, variant: Variant, init: Init) -> (ModelProto, PassReport) {
    convert_assigned(m, variant, init, Assign::Ordered)
}

/// [`convert`] with Half's channels assigned by `assign`.
pub fn convert_assigned(m: &ModelProto, variant: Variant, init: Init, assign: Assign) -> (ModelProto, PassReport) {
    let mut g = graph_of(m);
    let mut reports = run_pipeline(&mut g, &[fuse_pass_assigned(variant, init, assign)], &PassCx::default()).unwrap();
    let mut out = m.clone();
    out.graph = Some(g.to_proto().unwrap());
    (out, reports.remove(0).1)
}

pub fn model_of(m: ModelProto) -> Model {
    Model { proto: m, ..Default::default() }
}

pub fn assert_close(a: &ArrayD<f32>, b: &ArrayD<f32>, rtol: f32, atol: f32, what: &str) {
    let d = fusec::exec::compare(a, b, rtol, atol).unwrap();
    assert!(d.ok(), "{what}: max abs diff {} (worst ratio {})", d.max_abs, d.worst_ratio);
}

// ------------------------------------------------------------ the command line

/// The fusec binary of this build, its caches (`fusec select`) in a folder of
/// this test process, not the user's.
pub fn fusec() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("fusec").unwrap();
    c.env("FUSEC_CACHE_DIR", std::env::temp_dir().join(format!("fusec-test-cache-{}", std::process::id())));
    c
}

/// The fusec binary run as a user that file permissions apply to: `nobody` when
/// the tests run as root (as CI does), the user itself otherwise. What it reads
/// must be readable by all.
pub fn fusec_unprivileged() -> assert_cmd::Command {
    #[allow(unused_mut)]
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("fusec"));
    #[cfg(unix)]
    // SAFETY: geteuid has no preconditions
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::process::CommandExt;
        const NOBODY: u32 = 65534;
        // SAFETY: between fork and exec only async-signal-safe calls (setgroups, setgid, setuid)
        unsafe {
            c.pre_exec(|| {
                if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(NOBODY) != 0 || libc::setuid(NOBODY) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    assert_cmd::Command::from_std(c)
}

/// A copy of the bundled PP-OCR classifier in `dir` (cls.onnx).
pub fn ppocr_copy(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("cls.onnx");
    std::fs::copy(testdata("ppocr_mobile_v2_cls.onnx"), &p).unwrap();
    p
}

/// Fail if `dir` holds anything but `keep`.
pub fn no_files_but(dir: &std::path::Path, keep: &[&str]) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        assert!(keep.contains(&name.as_str()), "left behind: {name}");
    }
}

/// A few synthetic "text lines" (dark strokes on a light background) as PNGs in a flat folder.
pub fn lines_folder(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let d = dir.join("lines");
    std::fs::create_dir_all(&d).unwrap();
    for i in 0..n {
        let img = image::RgbImage::from_fn(120, 32, |x, y| {
            let ink = (x / 7 + i as u32) % 3 == 0 && y > 8 + (x % 5) && y < 24 - (i as u32 % 4);
            if ink { image::Rgb([30, 30, 30]) } else { image::Rgb([230, 225, 220]) }
        });
        img.save(d.join(format!("{i:03}.png"))).unwrap();
    }
    d
}

