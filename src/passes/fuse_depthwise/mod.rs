//! `fuse_depthwise`: rewrite K×K depthwise convolutions into FuSe blocks.
//!
//! ```text
//! Before:  x ──Conv(group=C, K×K)──▶ y ──▶ BN ─▶ act ─▶ [SE] ─▶ pointwise
//!
//! Half:    x ─Split[⌈C/2⌉,⌊C/2⌋]─┬─ Conv(1×K, group ⌈C/2⌉) ─┐
//!                                └─ Conv(K×1, group ⌊C/2⌋) ─┴─ Concat ▶ y (C ch.) ▶ unchanged
//!
//! Full:    x ─┬─ Conv(1×K, group C) ─┐
//!             └─ Conv(K×1, group C) ─┴─ Concat ▶ y' (2C ch.) ▶ widened BN/act/SE ▶ widened pointwise
//! ```
//!
//! Preconditions (a Conv that fails one is left alone and reported with the reason):
//! 1. 2-D Conv in the default domain, group == C_in == C_out > 1 (channel multiplier 1);
//! 2. constant float weight [C, 1, kh, kw] with kh > 1 and kw > 1 (1×1 and already-1-D
//!    kernels are skipped, which makes the pass idempotent); constant bias if any;
//! 3. Full only: every consumer of y can be widened (see below).
//!
//! Weight mapping (`--init`): with c_h and c_w the middle row and column of
//! the kernel (⌊(K−1)/2⌋ for odd K; for even K the middle tap the padding
//! aligns with the output, see `Window::centre_taps`), `center` takes row c_h
//! of each kernel for 1×K and column c_w for K×1;
//! `sum` sums the rows (1×K) or the columns (K×1). Half gives channels
//! [0, ⌈C/2⌉) to 1×K and the rest to K×1, each with its share of the bias
//! (`--assign fit`: each channel to the branch that reproduces it best, the
//! branches taking their channels with a Gather and a third Gather putting
//! the Concat back in the original channel order);
//! Full gives every channel to both branches, each with the whole bias.
//!
//! Padding: the 1×K branch keeps the original pads along the width; along the
//! height it drops the pads that centred the K rows (pad_top − c_h·d_h, and the
//! rest at the bottom), so its output is aligned with the original's centre
//! row and has the same size. Where that would need negative pads (VALID,
//! or SAME with stride 2) the input is cropped with a Slice instead. K×1 is
//! the same with height and width swapped. `auto_pad` SAME on inputs whose
//! spatial size is symbolic and whose stride is > 1 keeps `auto_pad` on the
//! 1-D convs (same output size; alignment may differ by one pixel).
//!
//! BN and activations stay after the Concat: they act per channel, so one op
//! over the concatenated channels equals each branch keeping its own share
//! (Half) or its own copy (Full).
//!
//! Full widening: the 2C tensor is carried through channel-wise consumers to
//! the ops that mix channels, which compute the mean of the two branches; a
//! squeeze-excite block becomes an SE over 2C. The rules are in [`widen`].
//!
//! Dense convs (`dense = true`, `--dense`): a group-1 K×K conv with C_in =
//! C_out whose output reaches a pointwise conv or Gemm through channel-wise
//! ops only (BN, activations) becomes the same block, its kernels taken from
//! the diagonal W[c, c] (`center`, `sum`) or fitted on data (`lsq`), as the
//! bottlenecks of the paper's ResNet-50 FuSe variants. The block keeps no
//! cross-channel terms, so the model needs fine-tuning afterwards. A dense
//! conv on the graph input, with C_in ≠ C_out, or feeding a residual Add
//! directly is left alone with the reason. With `dense`, the layer indices
//! count depthwise and dense convs together, in topological order.
//!
//! Layout: [`matcher`] (which convs, and why not), [`kernels`] (the 1-D
//! kernels), [`block`] (the Split / 1-D convs / Concat), [`widen`] (Full).

pub(crate) mod block;
pub(crate) mod kernels;
pub(crate) mod matcher;
pub(crate) mod qdq;
pub(crate) mod widen;

use std::collections::{HashMap, HashSet};

use petgraph::stable_graph::NodeIndex;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ir::{Graph, Patch};
use crate::passes::{LayerSelection, Pass, PassCx, PassReport, Rewrite, Selector, Semantics};

pub use block::{build_block, Layout, Names};
pub use kernels::{split_kernels, Assign, Channels, FuseKernels, Init, KernelInit};
pub use matcher::{candidates, depthwise_convs, find, find_dense, reaches_mixing, subgraph_depthwise, Candidate, DepthwiseConv};
pub use widen::{plan_widen, WidenPlan};

crate::choice_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Variant {
        /// Split channels in two: 1×K on the first half, K×1 on the second.
        Half = "half",
        /// 1×K and K×1 on all channels, concatenated to 2C; consumers widened.
        Full = "full",
    }
}


/// Options of the pass, shared by the CLI and pipeline TOML files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub variant: Variant,
    #[serde(default)]
    pub init: Init,
    /// Half: which channels go to 1×K and which to K×1.
    #[serde(default)]
    pub assign: Assign,
    #[serde(default)]
    pub layers: LayerSelection,
    #[serde(default)]
    pub skip: Vec<String>,
    /// Also rewrite dense K×K convs (group 1, C_in = C_out) whose output
    /// reaches a channel-mixing op, as the paper's ResNet-50 FuSe variants do.
    #[serde(default)]
    pub dense: bool,
}

pub struct FuseDepthwise {
    pub opts: Options,
    pub init: Box<dyn KernelInit>,
}

impl FuseDepthwise {
    pub fn new(opts: Options) -> Result<Self> {
        opts.layers.validate()?;
        if opts.variant == Variant::Full && opts.assign != Assign::Ordered {
            return Err(crate::error::Error::option("--assign", format!("{} applies to --variant half (Full gives every channel to both branches)", opts.assign)));
        }
        for s in &opts.skip {
            crate::passes::Selector::parse(s)?;
        }
        let init = Box::new(opts.init);
        Ok(FuseDepthwise { opts, init })
    }

    pub fn with_init(mut self, init: Box<dyn KernelInit>) -> Self {
        self.init = init;
        self
    }
}

impl Pass for FuseDepthwise {
    fn name(&self) -> &'static str {
        "fuse_depthwise"
    }
    fn semantics(&self) -> Semantics {
        Semantics::Changing
    }

    fn run(&self, g: &mut Graph, cx: &PassCx) -> Result<PassReport> {
        let mut report = PassReport::default();
        for (owner, conv) in subgraph_depthwise(g) {
            report.skipped.push((conv, format!("inside a subgraph of '{owner}': subgraphs are left unchanged")));
        }
        let cands = candidates(g, self.opts.dense)?;
        let selected = self.opts.layers.resolve(&cands)?;
        let skip: Vec<Selector> = self.opts.skip.iter().map(|s| Selector::parse(s)).collect::<Result<_>>()?;
        // why each candidate is not converted, or None: the ones this pass converts
        let verdict = |c: &Candidate| -> Option<String> {
            match c {
                Candidate::Skipped { reason, .. } => Some(reason.clone()),
                Candidate::Convertible(d) if !selected.contains(&d.index) => Some("not selected".into()),
                Candidate::Convertible(d) if skip.iter().any(|s| s.matches(d.index, &d.name)) => Some("excluded by --skip".into()),
                Candidate::Convertible(_) => None,
            }
        };
        let by_node: HashMap<NodeIndex, &DepthwiseConv> =
            cands.iter().filter(|c| verdict(c).is_none()).filter_map(|c| if let Candidate::Convertible(d) = c { Some((d.node, &**d)) } else { None }).collect();
        let mut names = Names::new(g.used_names());
        let mut patch = Patch::default();
        // Full regions must not overlap; converted convs (some joined to another's rewrite)
        let mut claimed: HashSet<NodeIndex> = HashSet::new();
        let mut converted: HashSet<NodeIndex> = HashSet::new();
        for cand in &cands {
            if let Some(reason) = verdict(cand) {
                report.skipped.push((cand.name().to_string(), reason));
                continue;
            }
            let dw = by_node[&cand.node()];
            if converted.contains(&dw.node) {
                continue; // converted in an earlier rewrite it was joined to
            }
            if cx.max_rewrites.is_some_and(|m| report.rewrites.len() >= m) {
                report.skipped.push((dw.name.clone(), "over --max-rewrites".into()));
                continue;
            }
            // names the plan reserves are given back unless the rewrite is applied
            let mark = names.mark();
            let joinable = |ix: NodeIndex| ix != dw.node && by_node.contains_key(&ix) && !converted.contains(&ix) && !claimed.contains(&ix);
            let widen = match self.opts.variant {
                Variant::Half => None,
                Variant::Full => match plan_widen(g, &dw.output, dw.channels as i64, &mut names, &joinable) {
                    Ok(p) if p.edits.iter().map(|(ix, _)| ix).chain(p.joined.iter().map(|(ix, _)| ix)).any(|ix| claimed.contains(ix)) => {
                        names.rollback(mark);
                        report.skipped.push((dw.name.clone(), "its widened region overlaps another converted layer".into()));
                        continue;
                    }
                    Ok(p) => Some(p),
                    Err(reason) => {
                        names.rollback(mark);
                        report.skipped.push((dw.name.clone(), format!("cannot widen for Full: {reason}")));
                        continue;
                    }
                },
            };
            let mut blocks: Vec<(&DepthwiseConv, Layout, String)> = vec![(dw, self.opts.variant.into(), String::new())];
            let mut extra_params: i64 = 0;
            if let Some(w) = widen {
                for (ix, p) in w.edits {
                    claimed.insert(ix);
                    patch.replace.push((ix, p));
                }
                patch.add.extend(w.adds);
                extra_params += w.added_params;
                patch.initializers.extend(w.initializers);
                for (ix, layout) in w.joined {
                    let how = match layout {
                        Layout::Widened => format!(" (joined to {}: on its widened input, 1xK on the first C channels, Kx1 on the second)", dw.name),
                        _ => format!(" (joined to {}: summed with it)", dw.name),
                    };
                    blocks.push((by_node[&ix], layout, how));
                }
            }
            for (d, layout, how) in blocks {
                converted.insert(d.node);
                claimed.insert(d.node);
                let kernels = self.init.kernels(d, self.opts.variant, self.opts.assign)?;
                let how = if layout == Layout::Half && !kernels.channels.is_ordered() {
                    // each channel that enters 1×K from the second half displaces one from the first
                    let moved = 2 * kernels.channels.row.iter().filter(|&&c| c >= kernels.channels.row.len()).count();
                    format!(" ({moved} of {} channels in the other branch than the ordered split's, by --assign fit){how}", d.channels)
                } else {
                    how
                };
                build_block(g, d, layout, &kernels, &mut names, &mut patch)?;
                let after = kernels.row.len() + kernels.col.len() + kernels.row_bias.as_ref().map_or(0, |b| b.len()) + kernels.col_bias.as_ref().map_or(0, |b| b.len());
                report.rewrites.push(Rewrite {
                    node: d.name.clone(),
                    index: d.index,
                    rule: format!("fuse_depthwise.{}", self.opts.variant),
                    detail: format!("{}, {} ch → 1x{} + {}x1{how}", d.kind(), d.channels, d.kernel[1], d.kernel[0]),
                    params_delta: after as i64 - d.params() as i64 + std::mem::take(&mut extra_params),
                });
            }
        }
        report.rewrites.sort_by_key(|r| r.index);
        if !patch.is_empty() {
            patch.apply(g)?;
        }
        Ok(report)
    }
}

