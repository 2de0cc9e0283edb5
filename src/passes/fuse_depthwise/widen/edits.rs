//! The per-op edits of the Full widening: per-channel parameters and
//! elementwise operands duplicated, shape tensors rewritten to 2C, and the
//! channel-mixing consumers (Conv, Gemm/MatMul) whose input weights are
//! duplicated and halved (float constants, or integers behind a
//! DequantizeLinear: [`super::quantized`]).

use ndarray::ArrayD;
use petgraph::stable_graph::NodeIndex;

use super::quantized::QWeight;
use super::{dup_axis, is_squeeze_excite, Plan, Planner, Wide};
use crate::passes::fuse_depthwise::Layout;
use crate::onnx::{a_int, attr_int, dtype, Dim};
use crate::onnx::tensor::Tensor;

/// A weight or bias input: a float constant, or integers behind a DequantizeLinear.
pub(super) enum Weight {
    Float(ArrayD<f32>),
    Quantized(QWeight),
}

impl Weight {
    fn values(&self) -> ArrayD<f32> {
        match self {
            Weight::Float(a) => a.clone(),
            Weight::Quantized(q) => q.values(),
        }
    }
}

impl Planner<'_> {
    fn weight(&self, name: &str, label: &str) -> Plan<Weight> {
        match QWeight::of(self.g, name) {
            Some(q) => Ok(Weight::Quantized(q)),
            None => self.const_f32(name, label).map(Weight::Float),
        }
    }

    /// `w` duplicated along each (axis, factor) of `steps` in turn; a quantized
    /// bias also moves to a grid `rescale` times its own (its weight's scale
    /// changed by that factor; a float bias keeps its values). The new input's
    /// name, or None when nothing changes.
    fn widened_input(&mut self, base: &str, w: &Weight, steps: &[(usize, f32)], rescale: f32, at: u64) -> Plan<Option<String>> {
        match w {
            Weight::Float(_) if steps.is_empty() => Ok(None),
            Weight::Float(a) => {
                let mut a = a.clone();
                for &(axis, f) in steps {
                    a = dup_axis(&a, axis, f)?;
                }
                Ok(Some(self.new_const(base, &a)))
            }
            Weight::Quantized(q) => {
                let mut q = q.widened_by(steps)?;
                if rescale != 1.0 {
                    q = q.rescaled(rescale)?;
                }
                Ok(Some(self.new_dequantized(base, &q, at)?))
            }
        }
    }

    /// BatchNormalization / InstanceNormalization: every parameter input duplicated.
    pub(super) fn per_channel_params(&mut self, ix: NodeIndex, c: i64) -> Plan<()> {
        let n = self.g.node(ix);
        let label = n.label();
        if n.proto.output.iter().skip(1).any(|o| !o.is_empty()) {
            return Err(format!("'{label}' is in training mode"));
        }
        let params: Vec<(usize, String)> = n.proto.input.iter().enumerate().skip(1).filter(|(_, s)| !s.is_empty()).map(|(i, s)| (i, s.clone())).collect();
        for (i, pn) in params {
            let a = self.const_f32(&pn, &label)?;
            if a.len() as i64 != c {
                return Err(format!("'{label}' input '{pn}' has {} values, expected {c}", a.len()));
            }
            let wide = self.new_const(&pn, &dup_axis(&a, 0, 1.0)?);
            self.added += c;
            self.edit(ix).input[i] = wide;
        }
        Ok(())
    }

    /// An elementwise op: constants along channels duplicated, other tensors
    /// checked (or duplicated) once the region is complete.
    pub(super) fn elementwise(&mut self, ix: NodeIndex, slot: usize, rank: usize, w: Wide) -> Plan<()> {
        let Wide { c, axis } = w;
        let g = self.g;
        let n = g.node(ix);
        let label = n.label();
        let inputs: Vec<String> = n.proto.input.clone();
        for (i, other) in inputs.iter().enumerate() {
            if i == slot || other.is_empty() || self.widened.contains_key(other) {
                continue;
            }
            let Some(oshape) = g.shape_of(other).map(<[Dim]>::to_vec) else {
                return Err(format!("'{label}' combines the widened tensor with '{other}', whose shape is unknown"));
            };
            if oshape.len() > rank {
                return Err(format!("'{label}' operand '{other}' has rank {} > {rank}", oshape.len()));
            }
            // the operand's dims align to the right of the widened tensor's
            let Some(ch_axis) = (axis + oshape.len()).checked_sub(rank) else { continue };
            match oshape[ch_axis].known() {
                Some(1) => continue, // broadcasts along channels
                Some(k) if k == c => {}
                Some(k) => return Err(format!("'{label}' operand '{other}' has {k} channels, expected {c}")),
                None => return Err(format!("'{label}' operand '{other}' has an unknown channel count")),
            }
            match g.const_tensor(other) {
                Some(t) if t.len() <= 1 => {}
                Some(t) => {
                    let wide = self.duplicated_const(other, &t, ch_axis).map_err(|e| format!("'{label}' constant '{other}': {e}"))?;
                    self.added += t.len() as i64;
                    self.edit(ix).input[i] = wide;
                }
                None => self.operands.push((ix, i, ch_axis, c)),
            }
        }
        Ok(())
    }

    /// Constant `t` duplicated along `axis` as a new initializer of its own
    /// type (a QLinearMul's operand is integers).
    fn duplicated_const(&mut self, name: &str, t: &Tensor, axis: usize) -> Plan<String> {
        if t.dtype() == dtype::FLOAT {
            let a = t.to_f32().map_err(|e| e.to_string())?;
            return Ok(self.new_const(name, &dup_axis(&a, axis, 1.0)?));
        }
        let ints = t.to_i64().map_err(|_| format!("a constant of type {}", dtype::name(t.dtype())))?;
        let a = ArrayD::from_shape_vec(ndarray::IxDyn(&t.shape()), ints).map_err(|e| e.to_string())?;
        let wide = ndarray::concatenate(ndarray::Axis(axis), &[a.view(), a.view()]).map_err(|e| e.to_string())?;
        let dims: Vec<i64> = wide.shape().iter().map(|&d| d as i64).collect();
        let nm = self.names.fresh(&format!("{name}.fuse.wide"));
        let v: Vec<i64> = wide.iter().copied().collect();
        self.inits.push(Tensor::from_ints(&nm, t.dtype(), &dims, &v).ok_or_else(|| format!("a constant of type {}", dtype::name(t.dtype())))?);
        Ok(nm)
    }

    /// The shape input `slot` of node `ix` must give 2C at `pos`: a constant C
    /// becomes 2C, entries in `keep` (Reshape's -1 and 0, Expand's 1) stay,
    /// run-time entries must come from a widened tensor's Shape.
    pub(super) fn shape_input(&mut self, ix: NodeIndex, slot: usize, pos: usize, c: i64, keep: &[i64]) -> Plan<()> {
        let g = self.g;
        let n = g.node(ix);
        let label = n.label();
        let sname = n.input(slot).ok_or_else(|| format!("'{label}' has no shape input"))?.to_string();
        let value = g.fact(&sname).and_then(|f| f.value.clone()).ok_or_else(|| format!("'{label}' takes its shape from '{sname}', which fusec cannot evaluate"))?;
        match value.get(pos) {
            Some(Dim::Known(v)) if keep.contains(v) => Ok(()),
            Some(Dim::Known(v)) if *v == c && g.is_const(&sname) => {
                let new = self.shape_with(&sname, pos, 2 * c, g.node(ix).pos)?;
                self.edit(ix).input[slot] = new;
                Ok(())
            }
            // computed: it may read the widened tensor's own shape (2C at run time);
            // decided once the region is known
            Some(Dim::Known(v)) if *v == c => {
                self.runtime_shapes.push((ix, slot, pos, c));
                Ok(())
            }
            Some(Dim::Known(v)) => Err(format!("'{label}' gives the widened tensor {v} channels, expected {c}")),
            Some(Dim::Sym(_)) => {
                self.runtime_shapes.push((ix, slot, pos, c));
                Ok(())
            }
            None => Err(format!("'{label}' shape {} has no channel position", crate::onnx::fmt_shape(&value))),
        }
    }

    /// A value equal to shape tensor `s` with element `pos` set to `v`: a new
    /// constant when `s` is constant, else a new Concat of `s`'s parts with the
    /// part holding `pos` replaced by a constant.
    pub(super) fn shape_with(&mut self, s: &str, pos: usize, v: i64, at: u64) -> Plan<String> {
        let g = self.g;
        let f = g.fact(s).ok_or("shape tensor without facts")?;
        let value = f.value.clone().ok_or("shape value unknown")?;
        let dtype = f.dtype.unwrap_or(crate::onnx::dtype::INT64);
        // only a constant of the graph becomes a new constant: a value known only
        // through --input-shape must not be baked into the model
        if let Some(mut k) = crate::ir::values::known(&value).filter(|_| g.is_const(s)) {
            k[pos] = v;
            let nm = self.names.fresh(&format!("{s}.fuse.wide"));
            let t = Tensor::from_ints(&nm, dtype, &[k.len() as i64], &k).ok_or("shape tensor of an unusual type")?;
            self.inits.push(t);
            return Ok(nm);
        }
        let (cix, _) = g.producer(s).ok_or_else(|| format!("'{s}' is computed at run time"))?;
        let cat = g.node(cix);
        if cat.op() != "Concat" {
            return Err(format!("'{s}' is computed by '{}' ({}), not a Concat fusec can edit", cat.label(), cat.op()));
        }
        let mut offset = 0usize;
        let mut proto = cat.proto.clone();
        for (i, part) in cat.proto.input.iter().enumerate() {
            let len = g.fact(part).and_then(|f| f.value.as_ref()).map(Vec::len).ok_or_else(|| format!("part '{part}' of '{s}' is unknown"))?;
            if (offset..offset + len).contains(&pos) {
                let new_part = self.shape_with(part, pos - offset, v, at)?;
                proto.input[i] = new_part;
                let out = self.names.fresh(&format!("{s}.fuse.wide"));
                proto.output = vec![out.clone()];
                proto.name = Some(self.names.fresh(&format!("{}.fuse.wide", cat.label())));
                self.adds.push((proto, at));
                return Ok(out);
            }
            offset += len;
        }
        Err(format!("'{s}' has no element {pos}"))
    }

    /// A Conv or QLinearConv reading the widened tensor: another depthwise
    /// conv (converted in this rewrite, or widened to 2C groups), the first
    /// conv of a squeeze-excite gate (the 2×2 block matrix), or a pointwise
    /// conv (input weights duplicated and halved).
    pub(super) fn conv(&mut self, ix: NodeIndex, c: i64) -> Plan<Option<i64>> {
        let g = self.g;
        let n = g.node(ix);
        let (label, at) = (n.label(), n.pos);
        let qlinear = n.op() == "QLinearConv";
        // QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B)
        let (w_slot, b_slot) = if qlinear { (3, 8) } else { (1, 2) };
        let group = attr_int(&n.proto, "group").unwrap_or(1);
        let wn = n.input(w_slot).ok_or_else(|| format!("'{label}' has no weight"))?.to_string();
        let weight = if qlinear {
            Weight::Quantized(QWeight::of_qlinear(g, n).ok_or_else(|| format!("'{label}' weight is not integer constants with constant scales"))?)
        } else {
            self.weight(&wn, &label)?
        };
        let a = weight.values();
        let depthwise = group == c && a.shape()[1] == 1 && a.shape()[0] as i64 == c;
        let se = !depthwise && group == 1 && is_squeeze_excite(g, ix, &self.widened);
        // a bias is read where it changes: duplicated (depthwise, SE), or on a new grid (quantized)
        let bias = match n.input(b_slot) {
            Some(bn) if qlinear => {
                let Weight::Quantized(wq) = &weight else { unreachable!("a QLinearConv's weight is integers") };
                let q = QWeight::of_qlinear_bias(g, n, wq).ok_or_else(|| format!("'{label}' bias is not an int32 constant"))?;
                Some((bn.to_string(), Weight::Quantized(q)))
            }
            Some(bn) if depthwise || se => Some((bn.to_string(), self.weight(bn, &label)?)),
            Some(bn) => QWeight::of(g, bn).map(|q| (bn.to_string(), Weight::Quantized(q))),
            None => None,
        };
        if depthwise && (self.joinable)(ix) {
            // a depthwise conv the pass converts anyway: in this rewrite, on the widened input
            self.joined.push((ix, Layout::Widened));
            return Ok(Some(c));
        }
        // (weight steps, bias steps, the weight scale's factor) of each kind of consumer
        let (w_steps, b_steps, factor, out): (&[(usize, f32)], &[(usize, f32)], f32, Option<i64>) = if depthwise {
            // another depthwise conv: widen to 2C groups
            self.added += a.len() as i64;
            (&[(0, 1.0)], &[(0, 1.0)], 1.0, Some(c))
        } else if group != 1 || a.shape()[1] as i64 != c {
            return Err(format!("'{label}' is a grouped conv (group {group}) over the widened channels"));
        } else if se {
            self.added += 3 * a.len() as i64 + bias.as_ref().map_or(0, |(_, b)| b.values().len() as i64);
            (&[(1, 0.5), (0, 1.0)], &[(0, 1.0)], 0.5, Some(a.shape()[0] as i64))
        } else {
            self.added += a.len() as i64;
            (&[(1, 0.5)], &[], 0.5, None)
        };
        if qlinear {
            // the integers duplicated, the scales halved where the inputs are; the
            // bias (at input scale × weight scale) on its new grid
            let (Weight::Quantized(wq), bias) = (&weight, &bias) else { unreachable!() };
            let (wi, ws, wz) = self.new_parts(&wn, &wq.widened_by(w_steps)?)?;
            let b = match bias {
                Some((bn, Weight::Quantized(bq))) => Some(self.new_ints(bn, &bq.widened_by(b_steps)?.rescaled(factor)?)?),
                _ => None,
            };
            let p = self.edit(ix);
            p.input[3] = wi;
            p.input[4] = ws;
            if let Some(z) = wz {
                p.input[5] = z;
            }
            if let Some(b) = b {
                p.input[8] = b;
            }
        } else {
            let w = self.widened_input(&wn, &weight, w_steps, 1.0, at)?.ok_or("no weight change")?;
            let b = match &bias {
                Some((bn, bw)) => self.widened_input(bn, bw, b_steps, factor, at)?,
                None => None,
            };
            let p = self.edit(ix);
            p.input[1] = w;
            if let Some(b) = b {
                p.input[2] = b;
            }
        }
        if out == Some(c) {
            let p = self.edit(ix);
            p.attribute.retain(|a| a.name() != "group");
            p.attribute.push(a_int("group", 2 * c));
        }
        Ok(out)
    }

    pub(super) fn matmul(&mut self, ix: NodeIndex, c: i64) -> Plan<Option<i64>> {
        let g = self.g;
        let n = g.node(ix);
        let (label, at) = (n.label(), n.pos);
        if attr_int(&n.proto, "transA").unwrap_or(0) != 0 {
            return Err(format!("'{label}' uses transA"));
        }
        let trans_b = n.op() == "Gemm" && attr_int(&n.proto, "transB").unwrap_or(0) != 0;
        let wn = n.input(1).ok_or("no weight")?.to_string();
        let weight = self.weight(&wn, &label)?;
        let a = weight.values();
        if a.ndim() != 2 {
            return Err(format!("'{label}' weight is not a matrix"));
        }
        let (in_ax, out_ax) = if trans_b { (1, 0) } else { (0, 1) };
        if a.shape()[in_ax] as i64 != c {
            return Err(format!("'{label}' weight does not take {c} inputs"));
        }
        // a MatMul's bias comes as a following Add (widened there as a per-channel constant);
        // a Gemm's is read where it changes: duplicated (SE), or on a new grid (quantized)
        let se = is_squeeze_excite(g, ix, &self.widened);
        let bias = match n.input(2) {
            Some(bn) if se => Some((bn.to_string(), self.weight(bn, &label)?)),
            Some(bn) => QWeight::of(g, bn).map(|q| (bn.to_string(), Weight::Quantized(q))),
            None => None,
        };
        let (w_steps, b_steps): (&[(usize, f32)], &[(usize, f32)]) = if se { (&[(in_ax, 0.5), (out_ax, 1.0)], &[(0, 1.0)]) } else { (&[(in_ax, 0.5)], &[]) };
        self.added += if se { 3 } else { 1 } * a.len() as i64;
        let w = self.widened_input(&wn, &weight, w_steps, 1.0, at)?.ok_or("no weight change")?;
        self.edit(ix).input[1] = w;
        if let Some((bn, bw)) = &bias {
            let scalar = bw.values().len() <= 1;
            if se && !scalar {
                self.added += bw.values().len() as i64;
            }
            // a scalar float bias broadcasts to any width; a bias axis is the last one
            let steps: Vec<(usize, f32)> = if scalar { vec![] } else { b_steps.iter().map(|&(_, f)| (bw.values().ndim().saturating_sub(1), f)).collect() };
            if let Some(nb) = self.widened_input(bn, bw, &steps, 0.5, at)? {
                self.edit(ix).input[2] = nb;
            }
        }
        Ok(se.then(|| a.shape()[out_ax] as i64))
    }
}
