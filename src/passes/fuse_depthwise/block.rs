//! Emitting the FuSe block that replaces one depthwise conv: the Split
//! (Half; two Gathers where the channels are assigned by fit), the two 1-D
//! convs with their pads (or a crop where a pad would be negative), and the
//! Concat (followed, after Gathers, by one that restores the channel order).

use std::collections::HashSet;

use ndarray::ArrayD;

use crate::error::Result;
use crate::ir::{Graph, Patch};
use crate::onnx::{a_int, a_ints, a_string, NodeProto};
use crate::passes::fuse_depthwise::{qdq, DepthwiseConv, FuseKernels, Variant};
use crate::onnx::tensor::Tensor;

/// Fresh names for what a rewrite adds. A planner reserves names after a
/// [`mark`](Names::mark) and gives them back with [`rollback`](Names::rollback)
/// if its rewrite is not applied.
#[derive(Debug, Clone)]
pub struct Names {
    pub(crate) used: HashSet<String>,
    /// Reserved since the graph was read, in order.
    added: Vec<String>,
}

impl Names {
    pub fn new(used: HashSet<String>) -> Names {
        Names { used, added: vec![] }
    }

    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.used.contains(&name) {
            name = format!("{base}.{i}");
            i += 1;
        }
        self.used.insert(name.clone());
        self.added.push(name.clone());
        name
    }

    /// A point to roll back to.
    pub fn mark(&self) -> usize {
        self.added.len()
    }

    /// Give back every name reserved since `mark`.
    pub fn rollback(&mut self, mark: usize) {
        for n in self.added.drain(mark..) {
            self.used.remove(&n);
        }
    }
}

fn conv_node(name: &str, inputs: Vec<String>, output: &str, kernel: [i64; 2], strides: &[i64], dil: [i64; 2], pads: Option<&[i64]>, auto_pad: Option<&str>, group: usize) -> NodeProto {
    let mut attribute = vec![a_int("group", group as i64), a_ints("kernel_shape", &kernel), a_ints("strides", strides), a_ints("dilations", &dil)];
    match (auto_pad, pads) {
        (Some(ap), _) => attribute.push(a_string("auto_pad", ap)),
        (None, Some(p)) => attribute.push(a_ints("pads", p)),
        (None, None) => {}
    }
    NodeProto {
        name: Some(name.into()),
        op_type: Some("Conv".into()),
        input: inputs,
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

/// Gather along the channel axis.
fn gather_node(name: &str, x: &str, indices: &str, output: &str) -> NodeProto {
    NodeProto {
        name: Some(name.into()),
        op_type: Some("Gather".into()),
        input: vec![x.into(), indices.into()],
        output: vec![output.into()],
        attribute: vec![a_int("axis", 1)],
        ..Default::default()
    }
}

/// Pads of one 1-D branch along the axis whose kernel collapses to tap
/// `centre`, given the original begin/end pads there. Returns (begin, end,
/// crop_begin, crop_end).
fn collapsed_pads(pb: i64, pe: i64, k: i64, d: i64, centre: i64) -> (i64, i64, i64, i64) {
    let c = centre * d;
    let nb = pb - c;
    let ne = pe - (d * (k - 1) - c);
    (nb.max(0), ne.max(0), (-nb).max(0), (-ne).max(0))
}

/// How the two branches of a block take their input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The C channels split ⌈C/2⌉ / ⌊C/2⌋ between 1×K and K×1.
    Half,
    /// Both branches on all C channels, concatenated to 2C.
    Full,
    /// Full on an input an earlier Full block already widened to 2C (laid out
    /// as [1×K branch; K×1 branch]): 1×K on the first C channels, K×1 on the
    /// second, so the output keeps that layout and stays 2C. Exact where the
    /// two halves are equal and the kernel is a centre tap, as Full is.
    Widened,
}

impl From<Variant> for Layout {
    fn from(v: Variant) -> Layout {
        match v {
            Variant::Half => Layout::Half,
            Variant::Full => Layout::Full,
        }
    }
}

/// Emit the Split / 1-D convs / Concat replacing `dw`. `k` holds the kernels
/// of the channels each branch gets (for `Widened`, Full's kernels).
pub fn build_block(g: &mut Graph, dw: &DepthwiseConv, layout: Layout, k: &FuseKernels, names: &mut Names, patch: &mut Patch) -> Result<()> {
    let pos = g.node(dw.node).pos;
    let base = dw.name.clone();
    let w = &dw.window;
    let pads = &dw.pads;
    let opset = g.opset;
    let (c_row, c_col) = match layout {
        Layout::Half => (k.channels.row.len(), k.channels.col.len()),
        Layout::Full | Layout::Widened => (dw.channels, dw.channels),
    };
    // Half with channels moved between the branches: each branch gathers its own
    let gathered = layout == Layout::Half && !k.channels.is_ordered();
    let (x_row, x_col) = match layout {
        Layout::Full => (dw.input.clone(), dw.input.clone()),
        Layout::Half if gathered => {
            let mut take = |tag: &str, channels: &[usize]| -> String {
                let out = names.fresh(&format!("{}.fuse.in_{tag}", dw.output));
                let iname = names.fresh(&format!("{base}.fuse.{tag}_channels"));
                let idx: Vec<i64> = channels.iter().map(|&c| c as i64).collect();
                patch.initializers.push(Tensor::from_i64(&iname, &[idx.len() as i64], &idx));
                patch.add.push((gather_node(&names.fresh(&format!("{base}.fuse.{tag}_gather")), &dw.input, &iname, &out), pos));
                out
            };
            (take("row", &k.channels.row), take("col", &k.channels.col))
        }
        Layout::Half | Layout::Widened => {
            let a = names.fresh(&format!("{}.fuse.in_row", dw.output));
            let b = names.fresh(&format!("{}.fuse.in_col", dw.output));
            let mut split = NodeProto {
                name: Some(names.fresh(&format!("{base}.fuse.split"))),
                op_type: Some("Split".into()),
                input: vec![dw.input.clone()],
                output: vec![a.clone(), b.clone()],
                attribute: vec![a_int("axis", 1)],
                ..Default::default()
            };
            let sizes = [c_row as i64, c_col as i64];
            if opset >= 13 {
                let sname = names.fresh(&format!("{base}.fuse.split_sizes"));
                patch.initializers.push(Tensor::from_i64(&sname, &[2], &sizes));
                split.input.push(sname);
            } else {
                split.attribute.push(a_ints("split", &sizes));
            }
            patch.add.push((split, pos));
            (a, b)
        }
    };
    // QDQ: each branch's input on the input's grid again, its weights int8 on their channels' grid
    // (QOperator: the branches split the integers themselves)
    let qdq = dw.qdq.as_ref();
    let (x_row, x_col) = match qdq {
        Some(q) if !q.qlinear => (
            qdq::requantized(names, patch, pos, &base, &x_row, &q.x_scale, q.x_zp.as_deref()),
            qdq::requantized(names, patch, pos, &base, &x_col, &q.x_scale, q.x_zp.as_deref()),
        ),
        _ => (x_row, x_col),
    };
    let grids: Option<[Vec<f32>; 2]> = qdq.map(|q| [k.channels.row.iter().map(|&c| q.w_scale[c]).collect(), k.channels.col.iter().map(|&c| q.w_scale[c]).collect()]);
    let mut branch = |tag: &str, x: String, c: usize, weight: &ArrayD<f32>, bias: &Option<ArrayD<f32>>, row: bool| -> String {
        let (kh, kw) = (dw.kernel[0], dw.kernel[1]);
        let (dh, dwl) = (w.dilations[0], w.dilations[1]);
        let kernel = if row { [1, kw] } else { [kh, 1] };
        let dil = if row { [1, dwl] } else { [dh, 1] };
        let mut inputs = vec![x.clone()];
        match (qdq, &grids) {
            (Some(q), Some(grids)) if q.qlinear => {
                // QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B)
                let qdq::IntWeights { weight: [w, ws, wz], bias: b, .. } = qdq::int_weights(names, patch, &format!("{base}.fuse.{tag}"), weight, &grids[usize::from(!row)], bias.as_ref(), q.x_scale_value);
                let opt = |v: &Option<String>| v.clone().unwrap_or_default();
                inputs.extend([q.x_scale.clone(), opt(&q.x_zp), w, ws, wz, q.y_scale.clone(), opt(&q.y_zp)]);
                inputs.extend(b);
            }
            (Some(q), Some(grids)) => {
                let (w, b) = qdq::quantized_weight(names, patch, pos, &format!("{base}.fuse.{tag}"), weight, &grids[usize::from(!row)], bias.as_ref(), q.x_scale_value);
                inputs.push(w);
                inputs.extend(b);
            }
            _ => {
                let wname = names.fresh(&format!("{base}.fuse.{tag}.weight"));
                patch.initializers.push(Tensor::from_f32(&wname, weight));
                inputs.push(wname);
                if let Some(b) = bias {
                    let bname = names.fresh(&format!("{base}.fuse.{tag}.bias"));
                    patch.initializers.push(Tensor::from_f32(&bname, b));
                    inputs.push(bname);
                }
            }
        }
        let out = names.fresh(&format!("{}.fuse.{tag}", dw.output));
        let (node_pads, auto_pad, crop) = match &pads {
            None => (None, Some(w.auto_pad.as_str()), None),
            Some(p) => {
                // p = [top, left, bottom, right]
                if row {
                    let (b, e, cb, ce) = collapsed_pads(p[0], p[2], kh, dh, dw.centre[0] as i64);
                    (Some(vec![b, p[1], e, p[3]]), None, Some((2i64, cb, ce)))
                } else {
                    let (b, e, cb, ce) = collapsed_pads(p[1], p[3], kw, dwl, dw.centre[1] as i64);
                    (Some(vec![p[0], b, p[2], e]), None, Some((3i64, cb, ce)))
                }
            }
        };
        let conv_in = match crop {
            Some((axis, cb, ce)) if cb > 0 || ce > 0 => {
                let cropped = names.fresh(&format!("{}.fuse.{tag}.crop", dw.output));
                let end = if ce > 0 { -ce } else { i64::MAX };
                let mut slice = NodeProto {
                    name: Some(names.fresh(&format!("{base}.fuse.{tag}.crop"))),
                    op_type: Some("Slice".into()),
                    input: vec![x],
                    output: vec![cropped.clone()],
                    ..Default::default()
                };
                if opset >= 10 {
                    for (suffix, v) in [("starts", cb), ("ends", end), ("axes", axis)] {
                        let n = names.fresh(&format!("{base}.fuse.{tag}.crop_{suffix}"));
                        patch.initializers.push(Tensor::from_i64(&n, &[1], &[v]));
                        slice.input.push(n);
                    }
                } else {
                    slice.attribute = vec![a_ints("starts", &[cb]), a_ints("ends", &[end]), a_ints("axes", &[axis])];
                }
                patch.add.push((slice, pos));
                cropped
            }
            _ => x,
        };
        inputs[0] = conv_in;
        let mut node = conv_node(&names.fresh(&format!("{base}.fuse.{tag}")), inputs, &out, kernel, &w.strides, dil, node_pads.as_deref(), auto_pad, c);
        if qdq.is_some_and(|q| q.qlinear) {
            node.op_type = Some("QLinearConv".into());
        }
        patch.add.push((node, pos));
        match qdq {
            // QOperator: the branches' integers share the output's scale; the Concat joins them as they are
            Some(q) if q.qlinear => out,
            // QDQ: on the output's grid before the Concat, as the original's output is
            Some(q) => qdq::requantized(names, patch, pos, &base, &out, &q.y_scale, q.y_zp.as_deref()),
            None => out,
        }
    };
    let y_row = branch("row", x_row, c_row, &k.row, &k.row_bias, true);
    let y_col = branch("col", x_col, c_col, &k.col, &k.col_bias, false);
    let concat_out = if gathered { names.fresh(&format!("{}.fuse.concat", dw.output)) } else { dw.output.clone() };
    let concat = NodeProto {
        name: Some(names.fresh(&format!("{base}.fuse.concat"))),
        op_type: Some("Concat".into()),
        input: vec![y_row, y_col],
        output: vec![concat_out.clone()],
        attribute: vec![a_int("axis", 1)],
        ..Default::default()
    };
    patch.add.push((concat, pos));
    if gathered {
        // back to the original channel order
        let iname = names.fresh(&format!("{base}.fuse.order"));
        let idx: Vec<i64> = k.channels.inverse().iter().map(|&c| c as i64).collect();
        patch.initializers.push(Tensor::from_i64(&iname, &[idx.len() as i64], &idx));
        patch.add.push((gather_node(&names.fresh(&format!("{base}.fuse.order_gather")), &concat_out, &iname, &dw.output), pos));
    }
    patch.remove.push(dw.node);
    Ok(())
}

