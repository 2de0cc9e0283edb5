//! The per-op edits of the Full widening: per-channel parameters and
//! elementwise operands duplicated, shape tensors rewritten to 2C, and the
//! channel-mixing consumers (Conv, Gemm/MatMul) whose input weights are
//! duplicated and halved.

use petgraph::stable_graph::NodeIndex;

use super::{dup_axis, is_squeeze_excite, Plan, Planner, Wide};
use crate::passes::fuse_depthwise::Layout;
use crate::onnx::{a_int, attr_int, Dim};
use crate::tensor::Tensor;

impl Planner<'_> {
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
                    let a = t.to_f32().map_err(|e| format!("'{label}' constant '{other}': {e}"))?;
                    let wide = self.new_const(other, &dup_axis(&a, ch_axis, 1.0)?);
                    self.added += t.len() as i64;
                    self.edit(ix).input[i] = wide;
                }
                None => self.operands.push((ix, i, ch_axis, c)),
            }
        }
        Ok(())
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

    pub(super) fn conv(&mut self, ix: NodeIndex, c: i64) -> Plan<Option<i64>> {
        let g = self.g;
        let n = g.node(ix);
        let label = n.label();
        let group = attr_int(&n.proto, "group").unwrap_or(1);
        let wn = n.input(1).ok_or("Conv without weight")?.to_string();
        let a = self.const_f32(&wn, &label)?;
        let bias = n.input(2).map(str::to_string);
        if group == c && a.shape()[1] == 1 && a.shape()[0] as i64 == c && (self.joinable)(ix) {
            // a depthwise conv the pass converts anyway: in this rewrite, on the widened input
            self.joined.push((ix, Layout::Widened));
            return Ok(Some(c));
        }
        if group == c && a.shape()[1] == 1 && a.shape()[0] as i64 == c {
            // another depthwise conv: widen to 2C groups
            let w = self.new_const(&wn, &dup_axis(&a, 0, 1.0)?);
            self.added += a.len() as i64;
            let b = match &bias {
                Some(bn) => Some(self.new_const(bn, &dup_axis(&self.const_f32(bn, &label)?, 0, 1.0)?)),
                None => None,
            };
            let p = self.edit(ix);
            p.input[1] = w;
            if let Some(b) = b {
                p.input[2] = b;
            }
            p.attribute.retain(|a| a.name() != "group");
            p.attribute.push(a_int("group", 2 * c));
            return Ok(Some(c));
        }
        if group != 1 || a.shape()[1] as i64 != c {
            return Err(format!("'{label}' is a grouped conv (group {group}) over the widened channels"));
        }
        let win = dup_axis(&a, 1, 0.5)?;
        if is_squeeze_excite(g, ix, &self.widened) {
            let w = self.new_const(&wn, &dup_axis(&win, 0, 1.0)?);
            self.added += 3 * a.len() as i64;
            let b = match &bias {
                Some(bn) => {
                    let bv = self.const_f32(bn, &label)?;
                    self.added += bv.len() as i64;
                    Some(self.new_const(bn, &dup_axis(&bv, 0, 1.0)?))
                }
                None => None,
            };
            let p = self.edit(ix);
            p.input[1] = w;
            if let Some(b) = b {
                p.input[2] = b;
            }
            Ok(Some(a.shape()[0] as i64))
        } else {
            let w = self.new_const(&wn, &win);
            self.added += a.len() as i64;
            self.edit(ix).input[1] = w;
            Ok(None)
        }
    }

    pub(super) fn matmul(&mut self, ix: NodeIndex, c: i64) -> Plan<Option<i64>> {
        let g = self.g;
        let n = g.node(ix);
        let label = n.label();
        if attr_int(&n.proto, "transA").unwrap_or(0) != 0 {
            return Err(format!("'{label}' uses transA"));
        }
        let trans_b = n.op() == "Gemm" && attr_int(&n.proto, "transB").unwrap_or(0) != 0;
        let wn = n.input(1).ok_or("no weight")?.to_string();
        let a = self.const_f32(&wn, &label)?;
        if a.ndim() != 2 {
            return Err(format!("'{label}' weight is not a matrix"));
        }
        let (in_ax, out_ax) = if trans_b { (1, 0) } else { (0, 1) };
        if a.shape()[in_ax] as i64 != c {
            return Err(format!("'{label}' weight does not take {c} inputs"));
        }
        let win = dup_axis(&a, in_ax, 0.5)?;
        if !is_squeeze_excite(g, ix, &self.widened) {
            let w = self.new_const(&wn, &win);
            self.added += a.len() as i64;
            self.edit(ix).input[1] = w;
            return Ok(None);
        }
        let w = self.new_const(&wn, &dup_axis(&win, out_ax, 1.0)?);
        self.added += 3 * a.len() as i64;
        self.edit(ix).input[1] = w;
        // a MatMul's bias comes as a following Add: it is widened as a per-channel constant
        if let Some(bn) = n.input(2).map(str::to_string) {
            let bt = g.const_tensor(&bn).ok_or("bias not constant")?;
            if bt.len() > 1 {
                let b = bt.to_f32().map_err(|e| e.to_string())?;
                let axis = b.ndim().saturating_sub(1);
                self.added += b.len() as i64;
                let nb = self.new_const(&bn, &dup_axis(&b, axis, 1.0)?);
                self.edit(ix).input[2] = nb;
            }
        }
        Ok(Some(a.shape()[out_ax] as i64))
    }

}
