#!/usr/bin/env python3
"""Export the FuSeConv paper's 25 reference networks from PyTorch, the way users
export their own models, and record what PyTorch says about each.

Runs in the PyTorch venv (`bash scripts/torch_env.sh` makes bench/.venv-torch).
The model definitions are the paper's, unmodified, imported from
../shared/reference/fuseconv. For every network (MobileNetV1, MobileNetV2,
MnasNet-B1, MobileNetV3-Small/-Large) and variant (baseline, Full, Half, 50% Full,
50% Half) it writes, at 1x3x224x224 in eval mode:

  NET.VARIANT.legacy13.static.onnx    torch.onnx.export(dynamo=False, opset_version=13)
  NET.VARIANT.legacy13.dynbatch.onnx  ... with dynamic_axes on the batch
  NET.VARIANT.legacy17.static.onnx    opset 17
  NET.VARIANT.legacy17.dynbatch.onnx
  NET.baseline.dynamo18.static.onnx   torch.onnx.export(dynamo=True, opset_version=18), baselines only

ResNet-50 and its FuSe Half/Full (scripts/resnet_reference.py; no hybrids) are
exported the same way, as network `resnet-50`.

and manifest.json: per file, the network, variant, exporter, PyTorch's parameter
count (`params`), and from forward hooks what forward() runs: the
multiply-accumulates of every Conv2d/Linear, the parameters of the modules it
calls (`params_run`: MobileNetV2 Half/Full build an expansion conv that they
never call) and their BatchNorm2d channels. Both exporters fold every
BatchNorm2d into the conv before it (eval mode): its weight and bias (2 per
channel) become the conv's bias (1 per channel), so the ONNX model has
params_run - bn_channels parameters (the reference's convs before a BN have no
bias). BN statistics are
randomised first, as a trained model's are, so nothing folds to an identity.

With --graph-only DIR it also writes each model with its float weights moved to
external data in one shared file of zeros (`weights.zeros`, not written: a
reader creates it), so the graphs can be committed for tests that need shapes,
not weights.

usage: bench/.venv-torch/bin/python scripts/export_reference.py OUT_DIR [--graph-only DIR] [--only NET]

(--only NET keeps the other networks' entries of an existing manifest.json.)
"""
import argparse
import importlib.util
import json
import os
import sys
import types
import warnings

import torch

from graph_only import graph_only

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF = os.path.join(os.path.dirname(ROOT), "shared", "reference", "fuseconv")
NETS = {
    "mobilenet-v1": ("MobileNetV1", None),
    "mobilenet-v2": ("MobileNetV2", None),
    "mnasnet-b1": ("MnasNet", None),
    "mobilenet-v3-small": ("MobileNetV3", "small"),
    "mobilenet-v3-large": ("MobileNetV3", "large"),
    "resnet-50": ("ResNet50", None),
}
VARIANTS = {"baseline": "", "full": "FuSeFull", "half": "FuSeHalf", "50-full": "FuSeFullHybrid", "50-half": "FuSeHalfHybrid"}


def load_models():
    models = types.ModuleType("models")
    for f in ["mobilenetv1", "mobilenetv2", "mnasnet", "mobilenetv3"]:
        spec = importlib.util.spec_from_file_location(f"models.{f}", os.path.join(REF, f + ".py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[f"models.{f}"] = mod
        spec.loader.exec_module(mod)
        for k, v in vars(mod).items():
            if not k.startswith("_"):
                setattr(models, k, v)
    spec = importlib.util.spec_from_file_location("resnet_reference", os.path.join(ROOT, "scripts", "resnet_reference.py"))
    resnet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(resnet)
    for k in ["ResNet50", "ResNet50FuSeHalf", "ResNet50FuSeFull"]:
        setattr(models, k, getattr(resnet, k))
    sys.modules["models"] = models
    return models


def run_stats(model, x):
    """What forward() runs: multiply-accumulates of every Conv2d and Linear, the
    parameters of the Conv2d/Linear/BatchNorm2d modules it calls (a module built
    but never called is not exported), and the channels of those BatchNorm2d."""
    macs, params, bn = [0], [0], [0]
    seen = set()

    def hook(m, inp, out):
        if isinstance(m, torch.nn.Conv2d):
            macs[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, torch.nn.Linear):
            macs[0] += out.numel() * m.in_features
        if id(m) not in seen:
            seen.add(id(m))
            params[0] += sum(p.numel() for p in m.parameters(recurse=False))
            if isinstance(m, torch.nn.BatchNorm2d):
                bn[0] += m.num_features

    kinds = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.BatchNorm2d)
    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return macs[0], params[0], bn[0]


def export(model, x, path, flavor):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if flavor.startswith("dynamo"):
            torch.onnx.export(model, (x,), path, dynamo=True, opset_version=18, input_names=["x"], output_names=["y"],
                              external_data=False, verbose=False)
        else:
            opset = int(flavor[len("legacy"):].split(".")[0])
            dyn = {"x": {0: "batch"}, "y": {0: "batch"}} if flavor.endswith("dynbatch") else None
            torch.onnx.export(model, (x,), path, dynamo=False, opset_version=opset, input_names=["x"], output_names=["y"],
                              dynamic_axes=dyn, do_constant_folding=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--graph-only", help="also write weight-less copies here")
    ap.add_argument("--only", help="one network")
    ap.add_argument("--manifest-only", action="store_true", help="write manifest.json only (no exports)")
    a = ap.parse_args()
    torch.manual_seed(0)
    models = load_models()
    os.makedirs(a.out, exist_ok=True)
    if a.graph_only:
        os.makedirs(a.graph_only, exist_ok=True)
    x = torch.randn(1, 3, 224, 224)
    manifest = {}
    for net, (ctor, mode) in NETS.items():
        if a.only and net != a.only:
            continue
        for var, suffix in VARIANTS.items():
            if not hasattr(models, ctor + suffix):
                continue  # ResNet-50: no hybrids
            fn = getattr(models, ctor + suffix)
            model = (fn(mode, 1000) if mode else fn(1000)).eval()
            # BN statistics as a trained model has them (untrained BN is an identity that
            # exporters drop together with the zero bias it folds into)
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    with torch.no_grad():
                        m.running_mean.normal_(0, 0.1)
                        m.running_var.uniform_(0.5, 1.5)
                        m.weight.uniform_(0.5, 1.5)
                        m.bias.normal_(0, 0.1)
                elif isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and m.bias is not None:
                    with torch.no_grad():
                        m.bias.normal_(0, 0.01)  # a zero bias is dropped by the dynamo exporter
            params = sum(p.numel() for p in model.parameters())
            macs, params_run, bn_channels = run_stats(model, x)
            flavors = ["legacy13.static", "legacy13.dynbatch", "legacy17.static", "legacy17.dynbatch"]
            if var == "baseline":
                flavors.append("dynamo18.static")
            for fl in flavors:
                name = f"{net}.{var}.{fl}.onnx"
                path = os.path.join(a.out, name)
                manifest[name] = {"network": net, "variant": var, "exporter": fl, "params": params, "params_run": params_run,
                                  "macs": macs, "bn_channels": bn_channels}
                if a.manifest_only:
                    continue
                export(model, x, path, fl)
                if a.graph_only:
                    graph_only(path, os.path.join(a.graph_only, name))
                print(name, file=sys.stderr)
    for d in [a.out] + ([a.graph_only] if a.graph_only else []):
        path = os.path.join(d, "manifest.json")
        models_all = manifest
        if a.only and os.path.exists(path):
            # one network re-exported: the others' entries stay
            with open(path) as f:
                models_all = {k: v for k, v in json.load(f)["models"].items() if v["network"] != a.only}
            models_all.update(manifest)
        with open(path, "w") as f:
            json.dump({"torch": torch.__version__, "input": [1, 3, 224, 224], "models": models_all}, f, indent=1, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()
