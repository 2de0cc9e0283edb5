#!/usr/bin/env python3
"""Run the FuSeConv reference latency model (analyticalLatencyModel.py and the
PyTorch model definitions, unmodified) without PyTorch, and print per-layer
cycles as JSON.

PyTorch is a 5 GB install; the reference code only needs module structure and
tensor shapes. `torch_shim` below provides that much of the torch API (modules,
forward hooks, shape-only tensors), so the reference files run as published.

ResNet-50 (baseline, Full, Half) comes from scripts/resnet_reference.py (the
FuSeConv repository's models/resnet.py is not in ../shared); --resnet prints
those three for every array size of --arrays instead of the five mobile nets.

usage: reference_latency.py REFERENCE_DIR [--array 64] > golden.json
       reference_latency.py REFERENCE_DIR --resnet [--arrays 16,64,256] > resnet.json
"""
import argparse
import importlib.util
import json
import math
import os
import sys
import types


# ------------------------------------------------------------------ torch shim
class Tensor:
    def __init__(self, shape):
        self.shape = tuple(int(s) for s in shape)

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def dim(self):
        return len(self.shape)

    def view(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        total = math.prod(self.shape)
        known = math.prod(s for s in shape if s != -1)
        return Tensor([total // known if s == -1 else s for s in shape])

    reshape = view

    def mean(self, dims, keepdim=False):
        dims = [dims] if isinstance(dims, int) else list(dims)
        dims = [d % len(self.shape) for d in dims]
        return Tensor([1 if i in dims else s for i, s in enumerate(self.shape) if keepdim or i not in dims])

    def chunk(self, n, dim):
        size = self.shape[dim]
        step = -(-size // n)
        out = []
        for start in range(0, size, step):
            s = list(self.shape)
            s[dim] = min(step, size - start)
            out.append(Tensor(s))
        return out

    def expand_as(self, other):
        return Tensor(other.shape)

    def _bin(self, other):
        if not isinstance(other, Tensor):
            return Tensor(self.shape)
        a, b = self.shape, other.shape
        n = max(len(a), len(b))
        a = (1,) * (n - len(a)) + a
        b = (1,) * (n - len(b)) + b
        return Tensor([max(x, y) for x, y in zip(a, b)])

    __add__ = __radd__ = __mul__ = __rmul__ = __sub__ = __rsub__ = __truediv__ = _bin


class _Data:
    def __getattr__(self, name):  # normal_, fill_, zero_, ...
        return lambda *a, **k: self


class Parameter:
    def __init__(self, *shape):
        self.shape = shape
        self.data = _Data()

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self):
        return math.prod(self.shape)


class Module:
    def __init__(self, *args, **kwargs):
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_hooks", [])

    def __setattr__(self, name, value):
        if isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def add_module(self, name, m):
        self._modules[name] = m
        object.__setattr__(self, name, m)

    def modules(self):
        yield self
        for m in self._modules.values():
            yield from m.modules()

    def parameters(self):
        for m in self.modules():
            for v in vars(m).values():
                if isinstance(v, Parameter):
                    yield v

    def register_forward_hook(self, fn):
        self._hooks.append(fn)

    def __call__(self, *inputs):
        out = self.forward(*inputs)
        for h in self._hooks:
            h(self, inputs, out)
        return out


class Sequential(Module):
    def __init__(self, *layers):
        super().__init__()
        for i, l in enumerate(layers):
            self.add_module(str(i), l)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class Conv2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True):
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.padding = _pair(kernel_size), _pair(stride), _pair(padding)
        self.weight = Parameter(out_channels, in_channels // groups, *self.kernel_size)
        self.bias = Parameter(out_channels) if bias else None

    def forward(self, x):
        n, c, h, w = x.shape
        assert c == self.in_channels, (c, self.in_channels)
        oh = (h + 2 * self.padding[0] - self.kernel_size[0]) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.kernel_size[1]) // self.stride[1] + 1
        return Tensor([n, self.out_channels, oh, ow])


class Linear(Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(out_features, in_features)
        self.bias = Parameter(out_features) if bias else None

    def forward(self, x):
        assert x.shape[-1] == self.in_features
        return Tensor(list(x.shape[:-1]) + [self.out_features])


class BatchNorm2d(Module):
    def __init__(self, c, *a, **k):
        super().__init__()
        self.weight = Parameter(c)
        self.bias = Parameter(c)

    def forward(self, x):
        return x


class _Same(Module):
    def __init__(self, *a, **k):
        super().__init__()

    def forward(self, x):
        return x


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.k, self.s, self.p = _pair(kernel_size), _pair(stride or kernel_size), _pair(padding)

    def forward(self, x):
        n, c, h, w = x.shape
        return Tensor([n, c, (h + 2 * self.p[0] - self.k[0]) // self.s[0] + 1, (w + 2 * self.p[1] - self.k[1]) // self.s[1] + 1])


class AdaptiveAvgPool2d(Module):
    def __init__(self, size):
        super().__init__()

    def forward(self, x):
        return Tensor(list(x.shape[:2]) + [1, 1])


def _install():
    torch = types.ModuleType("torch")
    nn = types.ModuleType("torch.nn")
    F = types.ModuleType("torch.nn.functional")
    init = types.ModuleType("torch.nn.init")
    for name, cls in dict(Module=Module, Sequential=Sequential, Conv2d=Conv2d, Linear=Linear, BatchNorm2d=BatchNorm2d,
                          ReLU=_Same, ReLU6=_Same, Dropout=_Same, Sigmoid=_Same, Hardswish=_Same,
                          AdaptiveAvgPool2d=AdaptiveAvgPool2d, MaxPool2d=MaxPool2d).items():
        setattr(nn, name, cls)
    for name in ["relu", "relu6", "sigmoid", "dropout"]:
        setattr(F, name, lambda x, *a, **k: x)
    for name in ["kaiming_normal_", "zeros_", "ones_", "normal_", "constant_", "xavier_uniform_", "uniform_"]:
        setattr(init, name, lambda *a, **k: None)
    nn.functional, nn.init = F, init
    torch.nn = nn
    torch.Tensor = Tensor
    torch.rand = torch.randn = lambda *shape: Tensor(shape[0] if len(shape) == 1 and isinstance(shape[0], (list, tuple)) else shape)
    torch.cat = lambda ts, dim=0: Tensor([sum(t.shape[dim] for t in ts) if i == dim % len(ts[0].shape) else s for i, s in enumerate(ts[0].shape)])
    sys.modules.update({"torch": torch, "torch.nn": nn, "torch.nn.functional": F, "torch.nn.init": init})


# ------------------------------------------------------------------ driver
def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("reference_dir")
    ap.add_argument("--array", type=int, default=64)
    ap.add_argument("--resnet", action="store_true", help="ResNet-50 and its FuSe variants, on every size of --arrays")
    ap.add_argument("--arrays", default="16,64,256")
    a = ap.parse_args()
    _install()
    ref = a.reference_dir
    models = types.ModuleType("models")
    for f in ["mobilenetv1", "mobilenetv2", "mnasnet", "mobilenetv3"]:
        m = _load(f"models.{f}", os.path.join(ref, f + ".py"))
        for k, v in vars(m).items():
            if not k.startswith("_"):
                setattr(models, k, v)
    sys.modules["models"] = models
    alm = _load("analyticalLatencyModel", os.path.join(ref, "analyticalLatencyModel.py"))

    # per-layer cycles: wrap the reference hook and record what each call adds
    orig_call = alm.ForwardHook.__call__

    def recording_call(self, module, inp, out):
        before = self.latency.time
        orig_call(self, module, inp, out)
        self.records.append({"module": type(module).__name__, "cycles": self.latency.time - before})

    alm.ForwardHook.__call__ = recording_call
    orig_init = alm.ForwardHook.__init__

    def init(self, *args, **kw):
        orig_init(self, *args, **kw)
        self.records = []

    alm.ForwardHook.__init__ = init
    layers_of = {}
    orig_get = alm.getModelLatency

    def get(model, x, ax, ay, hw):
        hook_holder = {}
        real = alm.ForwardHook

        class Capturing(real):
            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                hook_holder["h"] = self

        alm.ForwardHook = Capturing
        try:
            total = orig_get(model, x, ax, ay, hw)
        finally:
            alm.ForwardHook = real
        layers_of["last"] = hook_holder["h"].records
        return total

    nets = {
        "mobilenet-v1": ("MobileNetV1", None), "mobilenet-v2": ("MobileNetV2", None), "mnasnet-b1": ("MnasNet", None),
        "mobilenet-v3-small": ("MobileNetV3", "small"), "mobilenet-v3-large": ("MobileNetV3", "large"),
    }
    variants = {"baseline": "", "full": "FuSeFull", "half": "FuSeHalf", "50-full": "FuSeFullHybrid", "50-half": "FuSeHalfHybrid"}
    x = Tensor([1, 3, 224, 224])

    def cost(model, array, hw):
        total = get(model, x, array, array, hw)
        params = sum(p.numel() for p in model.parameters())
        return {"hardware": hw, "total_cycles": int(total), "params": params, "layers": [int(r["cycles"]) for r in layers_of["last"]]}

    if a.resnet:
        resnet = _load("resnet_reference", os.path.join(os.path.dirname(os.path.abspath(__file__)), "resnet_reference.py"))
        out = {"arrays": {}}
        for size in [int(s) for s in a.arrays.split(",")]:
            out["arrays"][str(size)] = {"resnet-50": {
                var: cost(getattr(resnet, "ResNet50" + suffix)(1000), size, "Systolic" if var == "baseline" else "FuSe")
                for var, suffix in [("baseline", ""), ("full", "FuSeFull"), ("half", "FuSeHalf")]
            }}
        json.dump(out, sys.stdout, indent=1)
        print()
        return
    out = {"array": a.array, "networks": {}}
    for net, (ctor, mode) in nets.items():
        out["networks"][net] = {}
        for var, suffix in variants.items():
            fn = getattr(models, ctor + suffix)
            model = fn(mode, 1000) if mode else fn(1000)
            out["networks"][net][var] = cost(model, a.array, "Systolic" if var == "baseline" else "FuSe")
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
