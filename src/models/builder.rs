//! `ModelBuilder`: build small ONNX CNNs in code with seeded weights. Used
//! by the tests (generated fixtures) and by `fusec zoo` (reference networks).

use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::onnx::{self, a_float, a_int, a_ints, dtype, Dim, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, ValueInfoProto};
use crate::onnx::tensor::Tensor;

pub struct ModelBuilder {
    pub opset: i64,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    rng: StdRng,
    counter: usize,
    /// How weights are stored: initializers (default) or Constant nodes (Paddle style).
    pub weights_as_constants: bool,
    /// Alias every weight through an Identity node (PyTorch dedup style).
    pub weights_through_identity: bool,
    pub name: String,
}

/// Activations the builder can emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    None,
    Relu,
    Relu6,
    HardSwish,
    HardSigmoid,
    Sigmoid,
}

impl ModelBuilder {
    pub fn new(opset: i64, seed: u64) -> Self {
        ModelBuilder {
            opset,
            nodes: vec![],
            inits: vec![],
            inputs: vec![],
            outputs: vec![],
            rng: StdRng::seed_from_u64(seed),
            counter: 0,
            weights_as_constants: false,
            weights_through_identity: false,
            name: "fusec_builder".into(),
        }
    }

    pub fn fresh(&mut self, base: &str) -> String {
        self.counter += 1;
        format!("{base}_{}", self.counter)
    }

    pub fn input(&mut self, name: &str, shape: &[Dim]) -> String {
        self.inputs.push(onnx::make_value_info(name, dtype::FLOAT, Some(shape)));
        name.to_string()
    }

    pub fn output(&mut self, value: &str) {
        self.outputs.push(onnx::make_value_info(value, dtype::FLOAT, None));
    }

    pub fn uniform(&mut self, shape: &[usize], bound: f32) -> ArrayD<f32> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| self.rng.random_range(-bound..=bound)).collect();
        ArrayD::from_shape_vec(IxDyn(shape), v).unwrap_or_else(|_| ArrayD::zeros(IxDyn(shape)))
    }

    /// Add a float constant (initializer, Constant node, or aliased) and return its value name.
    pub fn constant(&mut self, base: &str, a: &ArrayD<f32>) -> String {
        let name = self.fresh(base);
        let t = Tensor::from_f32(&name, a).into_proto();
        self.add_const_proto(name, t)
    }

    /// Add an initializer as it is (integer quantization parameters, for example).
    pub fn initializer(&mut self, t: TensorProto) {
        self.inits.push(t);
    }

    pub fn constant_i64(&mut self, base: &str, dims: &[i64], v: &[i64]) -> String {
        let name = self.fresh(base);
        let t = Tensor::from_i64(&name, dims, v).into_proto();
        self.add_const_proto(name, t)
    }

    fn add_const_proto(&mut self, name: String, t: TensorProto) -> String {
        let stored = if self.weights_as_constants {
            self.nodes.push(NodeProto {
                name: Some(format!("{name}_const")),
                op_type: Some("Constant".into()),
                output: vec![name.clone()],
                attribute: vec![onnx::a_tensor("value", t)],
                ..Default::default()
            });
            name
        } else {
            self.inits.push(t);
            name
        };
        if self.weights_through_identity {
            let alias = format!("{stored}_alias");
            self.node("Identity", &[&stored], &alias, vec![]);
            alias
        } else {
            stored
        }
    }

    pub fn node(&mut self, op: &str, inputs: &[&str], output: &str, attrs: Vec<onnx::AttributeProto>) -> String {
        self.node_multi(op, inputs, &[output], attrs);
        output.to_string()
    }

    /// A node with several outputs.
    pub fn node_multi(&mut self, op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<onnx::AttributeProto>) {
        let name = self.fresh(op);
        self.nodes.push(onnx::make_node(&name, op, inputs, outputs, attrs));
    }

    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<onnx::AttributeProto>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.node(op, inputs, &out, attrs)
    }

    /// Conv with symmetric pads `pad` (or explicit `pads` via conv_full).
    #[allow(clippy::too_many_arguments)]
    pub fn conv(&mut self, x: &str, cin: usize, cout: usize, k: (usize, usize), stride: (usize, usize), pad: (usize, usize), group: usize, bias: bool) -> String {
        let pads = [pad.0 as i64, pad.1 as i64, pad.0 as i64, pad.1 as i64];
        self.conv_full(x, cin, cout, k, stride, Some(&pads), None, group, bias, (1, 1))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn conv_full(
        &mut self,
        x: &str,
        cin: usize,
        cout: usize,
        k: (usize, usize),
        stride: (usize, usize),
        pads: Option<&[i64]>,
        auto_pad: Option<&str>,
        group: usize,
        bias: bool,
        dil: (usize, usize),
    ) -> String {
        let fan_in = (cin / group * k.0 * k.1) as f32;
        let w = self.uniform(&[cout, cin / group, k.0, k.1], (3.0 / fan_in).sqrt());
        let wn = self.constant("w", &w);
        let mut inputs = vec![x.to_string(), wn];
        if bias {
            let b = self.uniform(&[cout], 0.1);
            inputs.push(self.constant("b", &b));
        }
        let mut attrs = vec![a_int("group", group as i64), a_ints("kernel_shape", &[k.0 as i64, k.1 as i64]), a_ints("strides", &[stride.0 as i64, stride.1 as i64])];
        if dil != (1, 1) {
            attrs.push(a_ints("dilations", &[dil.0 as i64, dil.1 as i64]));
        }
        if let Some(p) = pads {
            attrs.push(a_ints("pads", p));
        }
        if let Some(ap) = auto_pad {
            attrs.push(onnx::a_string("auto_pad", ap));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.op("Conv", &refs, attrs)
    }

    /// Set a conv's weight (for exactness tests): replaces the initializer data.
    pub fn set_weight(&mut self, conv_out: &str, f: impl Fn(&[usize]) -> f32) {
        let Some(node) = self.nodes.iter().find(|n| n.output.first().map(String::as_str) == Some(conv_out)) else { return };
        let mut wname = node.input[1].clone();
        if let Some(id) = self.nodes.iter().find(|n| n.op_type() == "Identity" && n.output[0] == wname) {
            wname = id.input[0].clone();
        }
        let replace = |t: &mut TensorProto| {
            let Ok(tensor) = Tensor::from_proto(t.clone()) else { return };
            let Ok(mut a) = tensor.to_f32() else { return };
            for (idx, v) in a.indexed_iter_mut() {
                *v = f(ndarray::Dimension::slice(&idx));
            }
            *t = Tensor::from_f32(t.name(), &a).into_proto();
        };
        if let Some(t) = self.inits.iter_mut().find(|t| t.name() == wname) {
            replace(t);
        }
        for n in self.nodes.iter_mut().filter(|n| n.op_type() == "Constant" && n.output[0] == wname) {
            for a in n.attribute.iter_mut().filter(|a| a.name() == "value") {
                if let Some(t) = a.t.as_mut() {
                    let name = wname.clone();
                    t.name = Some(name);
                    replace(t);
                }
            }
        }
    }

    pub fn bn(&mut self, x: &str, c: usize) -> String {
        let scale = self.uniform(&[c], 0.5).mapv(|v| v + 1.0);
        let bias = self.uniform(&[c], 0.2);
        let mean = self.uniform(&[c], 0.2);
        let var = self.uniform(&[c], 0.3).mapv(|v| v + 1.0);
        let s = self.constant("bn_scale", &scale);
        let b = self.constant("bn_bias", &bias);
        let m = self.constant("bn_mean", &mean);
        let v = self.constant("bn_var", &var);
        self.op("BatchNormalization", &[x, &s, &b, &m, &v], vec![a_float("epsilon", 1e-5)])
    }

    pub fn act(&mut self, x: &str, act: Act) -> String {
        match act {
            Act::None => x.to_string(),
            Act::Relu => self.op("Relu", &[x], vec![]),
            Act::Sigmoid => self.op("Sigmoid", &[x], vec![]),
            Act::HardSigmoid => self.op("HardSigmoid", &[x], vec![a_float("alpha", 1.0 / 6.0), a_float("beta", 0.5)]),
            Act::HardSwish if self.opset >= 14 => self.op("HardSwish", &[x], vec![]),
            Act::HardSwish => {
                let g = self.op("HardSigmoid", &[x], vec![a_float("alpha", 1.0 / 6.0), a_float("beta", 0.5)]);
                self.op("Mul", &[x, &g], vec![])
            }
            Act::Relu6 => {
                if self.opset >= 11 {
                    let lo = self.constant("clip_min", &ndarray::arr0(0.0f32).into_dyn());
                    let hi = self.constant("clip_max", &ndarray::arr0(6.0f32).into_dyn());
                    self.op("Clip", &[x, &lo, &hi], vec![])
                } else {
                    self.op("Clip", &[x], vec![a_float("min", 0.0), a_float("max", 6.0)])
                }
            }
        }
    }

    /// Squeeze-excite: GAP → 1×1 conv (or Gemm) → ReLU → 1×1 conv (or Gemm) → gate → Mul.
    pub fn se(&mut self, x: &str, c: usize, hidden: usize, gate: Act, use_gemm: bool) -> String {
        let p = self.op("GlobalAveragePool", &[x], vec![]);
        let g = if use_gemm {
            let f = self.op("Flatten", &[&p], vec![a_int("axis", 1)]);
            let h = self.gemm(&f, c, hidden, true);
            let h = self.act(&h, Act::Relu);
            let o = self.gemm(&h, hidden, c, true);
            let o = self.act(&o, gate);
            let shape = self.constant_i64("se_shape", &[4], &[-1, c as i64, 1, 1]);
            self.op("Reshape", &[&o, &shape], vec![])
        } else {
            let h = self.conv(&p, c, hidden, (1, 1), (1, 1), (0, 0), 1, true);
            let h = self.act(&h, Act::Relu);
            let o = self.conv(&h, hidden, c, (1, 1), (1, 1), (0, 0), 1, true);
            self.act(&o, gate)
        };
        self.op("Mul", &[x, &g], vec![])
    }

    /// Gemm with transB = 1 (weight [out, in]) and a bias.
    pub fn gemm(&mut self, x: &str, cin: usize, cout: usize, bias: bool) -> String {
        let w = self.uniform(&[cout, cin], (3.0 / cin as f32).sqrt());
        let wn = self.constant("fc_w", &w);
        let mut inputs = vec![x.to_string(), wn];
        if bias {
            let b = self.uniform(&[cout], 0.1);
            inputs.push(self.constant("fc_b", &b));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.op("Gemm", &refs, vec![a_int("transB", 1)])
    }

    /// The model, with graph outputs typed by shape inference.
    pub fn build(self) -> ModelProto {
        let opset = self.opset;
        let mut graph = onnx::GraphProto {
            name: Some(self.name.clone()),
            node: self.nodes,
            initializer: self.inits,
            input: self.inputs,
            output: self.outputs,
            ..Default::default()
        };
        if let Ok(g) = crate::ir::Graph::from_proto(&graph, opset) {
            for o in graph.output.iter_mut() {
                if let Some(shape) = g.shape_of(o.name()) {
                    *o = onnx::make_value_info(o.name(), dtype::FLOAT, Some(shape));
                }
            }
        }
        ModelProto {
            ir_version: Some(if self.opset >= 21 { 10 } else if self.opset >= 15 { 8 } else { 7 }),
            producer_name: Some("fusec".into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(self.opset) }],
            graph: Some(graph),
            ..Default::default()
        }
    }
}
