//! Tasks: what a model's inputs and outputs mean. A task is a data format and
//! its preprocessing ([`data`]: image folders, TSV/CSV lists with labels, text
//! or boxes), a decoder of the model's outputs ([`ocr`]: greedy CTC, DB boxes;
//! [`layout`]: PP-PicoDet regions; top-1 for classifiers) and a metric ([`predict`]: predictions in ONNX
//! Runtime scored against the data's ground truth or a teacher's;
//! [`classify`]: classifier accuracy).
//! [`Task`] names the data format (`--task`), [`Kind`] what the first output
//! holds.

pub mod classify;
pub mod data;
pub mod layout;
pub(crate) mod ocr;
pub(crate) mod predict;

use serde::Serialize;

pub use ocr::{ctc_decode, ctc_score, db_boxes, det_score, dictionary, edit_distance, iou, match_boxes, match_pairs, CtcScore, DetScore};
pub use predict::{compare, decode, evaluate, predict, top_anchors, truth, Metric, Params, Pred, TaskReport};

crate::choice_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Task {
        /// Classification; each image gives two samples: as is (class 0) and rotated 180° (class 1).
        Rot180 = "rot180",
        /// Text recognition with a CTC head: the list's `text` column is the ground truth.
        Ctc = "ctc",
        /// Text detection: a box list (file, x0, y0, x1, y1 per row) is the ground truth.
        Textdet = "textdet",
        /// Layout detection (PP-PicoDet heads: class scores and box distributions per level):
        /// pages in a folder or a list; scored against a teacher's regions.
        Layout = "layout",
    }
}

/// What the first output of a model means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `[N, classes]` scores: top-1.
    Classify,
    /// `[N, T, classes]` CTC scores: greedy decoding.
    Ctc,
    /// `[N, 1, H, W]` text probability map: DB boxes.
    Textdet,
    /// Detector heads `[N, anchors, classes]` (one output per level): the
    /// top-scoring anchors, compared with a teacher's (no ground truth).
    Anchors,
    /// PP-PicoDet layout heads: regions per class ([`layout`]), compared with a teacher's.
    Layout,
}

impl Kind {
    pub fn of(task: Option<Task>) -> Kind {
        match task {
            Some(Task::Ctc) => Kind::Ctc,
            Some(Task::Textdet) => Kind::Textdet,
            Some(Task::Layout) => Kind::Layout,
            Some(Task::Rot180) | None => Kind::Classify,
        }
    }
}

