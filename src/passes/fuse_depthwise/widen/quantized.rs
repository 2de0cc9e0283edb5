//! Full's widening through QDQ models: per-tensor QuantizeLinear and
//! DequantizeLinear carry channels through unchanged; a consumer whose weight
//! (or bias) is a DequantizeLinear of integer constants gets its widened
//! integers behind a new DequantizeLinear. The widening only duplicates
//! integers and halves scales (a bias's integers double as its scale, input
//! scale × weight scale, halves), so the widened model computes exactly what
//! the float widening computes, on the quantizer's own grid.

use ndarray::{concatenate, ArrayD, Axis};

use super::{Plan, Planner};
use crate::ir::{Graph, Node};
use crate::onnx::{a_int, attr_int, dtype, make_node};
use crate::onnx::tensor::Tensor;

/// An integer constant behind a DequantizeLinear: (q − zero) · scale, per
/// tensor or along `axis`.
#[derive(Debug, Clone)]
pub(super) struct QWeight {
    ints: ArrayD<i64>,
    dtype: i32,
    scale: Vec<f32>,
    zero: Vec<i64>,
    zero_dtype: Option<i32>,
    axis: Option<usize>,
}

impl QWeight {
    /// The weight `name` when a DequantizeLinear of constants produces it.
    pub(super) fn of(g: &Graph, name: &str) -> Option<QWeight> {
        let (ix, _) = g.producer(name)?;
        let n = g.node(ix);
        if n.op() != "DequantizeLinear" || !n.is_default_domain() {
            return None;
        }
        let t = g.const_tensor(n.input(0)?)?;
        let scale: Vec<f32> = g.const_tensor(n.input(1)?)?.to_f32().ok()?.iter().copied().collect();
        let axis = attr_int(&n.proto, "axis").unwrap_or(1);
        QWeight::from_parts(g, &t, scale, n.input(2), axis)
    }

    /// A QLinearConv's weight (inputs 3, 4, 5: per output channel or per tensor).
    pub(super) fn of_qlinear(g: &Graph, n: &Node) -> Option<QWeight> {
        let t = g.const_tensor(n.input(3)?)?;
        let scale: Vec<f32> = g.const_tensor(n.input(4)?)?.to_f32().ok()?.iter().copied().collect();
        QWeight::from_parts(g, &t, scale, n.input(5), 0)
    }

    /// A QLinearConv's int32 bias (input 8): its scale is the input's times the
    /// weight's, its zero point 0.
    pub(super) fn of_qlinear_bias(g: &Graph, n: &Node, weight: &QWeight) -> Option<QWeight> {
        let t = g.const_tensor(n.input(8)?)?;
        let x_scale = *g.const_tensor(n.input(1)?)?.to_f32().ok()?.iter().next()?;
        let scale: Vec<f32> = weight.scale.iter().map(|s| s * x_scale).collect();
        QWeight::from_parts(g, &t, scale, None, 0)
    }

    /// Integers `t` at `scale` (one value, or one per index of `axis`), with
    /// the zero point initializer `zero` (one value broadcasts).
    fn from_parts(g: &Graph, t: &Tensor, scale: Vec<f32>, zero: Option<&str>, axis: i64) -> Option<QWeight> {
        let dt = t.dtype();
        if !matches!(dt, dtype::INT8 | dtype::UINT8 | dtype::INT32) {
            return None;
        }
        let shape = t.shape();
        let ints = ArrayD::from_shape_vec(ndarray::IxDyn(&shape), t.to_i64().ok()?).ok()?;
        let (zero, zero_dtype) = match zero {
            Some(z) => {
                let zt = g.const_tensor(z)?;
                let v = zt.to_i64().ok()?;
                let v = if v.len() == 1 && scale.len() > 1 { vec![v[0]; scale.len()] } else { v };
                (v, Some(zt.dtype()))
            }
            None => (vec![0; scale.len()], None),
        };
        if scale.is_empty() || zero.len() != scale.len() {
            return None;
        }
        let axis = if scale.len() > 1 {
            let r = shape.len() as i64;
            let a = if axis < 0 { axis + r } else { axis };
            if !(0..r).contains(&a) || shape[a as usize] != scale.len() {
                return None;
            }
            Some(a as usize)
        } else {
            None
        };
        Some(QWeight { ints, dtype: dt, scale, zero, zero_dtype, axis })
    }

    /// The values it stands for.
    pub(super) fn values(&self) -> ArrayD<f32> {
        let mut out = ArrayD::<f32>::zeros(self.ints.raw_dim());
        for (idx, &q) in self.ints.indexed_iter() {
            let c = self.axis.map_or(0, |a| idx[a]);
            out[&idx] = (q - self.zero[c]) as f32 * self.scale[c];
        }
        out
    }

    /// Duplicated along `axis` with its values times `factor` (the scale carries the factor).
    pub(super) fn widened(&self, axis: usize, factor: f32) -> Plan<QWeight> {
        let ints = concatenate(Axis(axis), &[self.ints.view(), self.ints.view()]).map_err(|e| e.to_string())?;
        let along = self.axis == Some(axis);
        let twice = |v: &[f32]| if along { [v, v].concat() } else { v.to_vec() };
        let scale: Vec<f32> = twice(&self.scale).iter().map(|s| s * factor).collect();
        let zero = if along { [self.zero.as_slice(), self.zero.as_slice()].concat() } else { self.zero.clone() };
        Ok(QWeight { ints, dtype: self.dtype, scale, zero, zero_dtype: self.zero_dtype, axis: self.axis })
    }

    /// Widened along each (axis, factor) of `steps` in turn.
    pub(super) fn widened_by(&self, steps: &[(usize, f32)]) -> Plan<QWeight> {
        let mut q = self.clone();
        for &(axis, f) in steps {
            q = q.widened(axis, f)?;
        }
        Ok(q)
    }

    /// The same values on a grid `factor` times as fine or coarse: a bias whose
    /// weight's scale was multiplied by `factor` (its integers divided by it).
    pub(super) fn rescaled(&self, factor: f32) -> Plan<QWeight> {
        if self.zero.iter().any(|&z| z != 0) {
            return Err("a quantized bias with a zero point".into());
        }
        let ints = self.ints.mapv(|q| (q as f64 / factor as f64).round() as i64);
        let (lo, hi) = (i32::MIN as i64, i32::MAX as i64);
        if self.dtype != dtype::INT32 || ints.iter().any(|&q| q < lo || q > hi) {
            return Err("a quantized bias that does not stay within int32".into());
        }
        Ok(QWeight { ints, scale: self.scale.iter().map(|s| s * factor).collect(), ..self.clone() })
    }
}

impl Planner<'_> {
    /// QuantizeLinear / DequantizeLinear on a widened tensor: one scale for all
    /// channels passes through.
    pub(super) fn quantize_pass(&mut self, label: &str, scale: Option<&str>) -> Plan<()> {
        let n = scale.and_then(|s| self.g.const_tensor(s)).map(|t| t.len());
        match n {
            Some(0 | 1) => Ok(()),
            Some(_) => Err(format!("'{label}' quantizes the widened tensor per channel")),
            None => Err(format!("'{label}' has no constant scale")),
        }
    }

    /// The scales and zero points at `slots` of a QOperator op (QLinearAdd,
    /// QLinearGlobalAveragePool, ...) reading the widened integers: one value
    /// each, so they hold for 2C channels as for C.
    pub(super) fn per_tensor_slots(&mut self, label: &str, n: &Node, slots: &[usize]) -> Plan<()> {
        for &s in slots {
            if let Some(x) = n.input(s) {
                self.quantize_pass(label, Some(x))?;
            }
        }
        Ok(())
    }

    /// `q` as new initializers: its integers, scales and (if it has one) zero
    /// point, as a DequantizeLinear or a QLinearConv takes them.
    pub(super) fn new_parts(&mut self, base: &str, q: &QWeight) -> Plan<(String, String, Option<String>)> {
        let dims: Vec<i64> = q.ints.shape().iter().map(|&d| d as i64).collect();
        let per = q.scale.len() as i64;
        let sdims: Vec<i64> = if q.axis.is_some() { vec![per] } else { vec![] };
        let qn = self.names.fresh(&format!("{base}.fuse.wide_quantized"));
        let sn = self.names.fresh(&format!("{base}.fuse.wide_scale"));
        let ints: Vec<i64> = q.ints.iter().copied().collect();
        self.inits.push(Tensor::from_ints(&qn, q.dtype, &dims, &ints).ok_or("an integer weight of an unusual type")?);
        let s = ArrayD::from_shape_vec(ndarray::IxDyn(&sdims.iter().map(|&d| d as usize).collect::<Vec<_>>()), q.scale.clone()).map_err(|e| e.to_string())?;
        self.inits.push(Tensor::from_f32(&sn, &s));
        let zn = match q.zero_dtype {
            Some(zd) => {
                let zn = self.names.fresh(&format!("{base}.fuse.wide_zero_point"));
                self.inits.push(Tensor::from_ints(&zn, zd, &sdims, &q.zero).ok_or("a zero point of an unusual type")?);
                Some(zn)
            }
            None => None,
        };
        Ok((qn, sn, zn))
    }

    /// Only `q`'s integers as a new initializer (a QLinearConv's bias, whose
    /// scale is implied).
    pub(super) fn new_ints(&mut self, base: &str, q: &QWeight) -> Plan<String> {
        let dims: Vec<i64> = q.ints.shape().iter().map(|&d| d as i64).collect();
        let qn = self.names.fresh(&format!("{base}.fuse.wide_quantized"));
        let ints: Vec<i64> = q.ints.iter().copied().collect();
        self.inits.push(Tensor::from_ints(&qn, q.dtype, &dims, &ints).ok_or("an integer bias of an unusual type")?);
        Ok(qn)
    }

    /// A new DequantizeLinear of `q`'s integers (new initializers), placed at `at`.
    pub(super) fn new_dequantized(&mut self, base: &str, q: &QWeight, at: u64) -> Plan<String> {
        let (qn, sn, zn) = self.new_parts(base, q)?;
        let mut inputs = vec![qn, sn];
        inputs.extend(zn);
        let out = self.names.fresh(&format!("{base}.fuse.wide"));
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let attrs = q.axis.map(|a| vec![a_int("axis", a as i64)]).unwrap_or_default();
        let node = make_node(&self.names.fresh(&format!("{base}.fuse.wide_dequantize")), "DequantizeLinear", &refs, &[&out], attrs);
        self.adds.push((node, at));
        Ok(out)
    }
}
