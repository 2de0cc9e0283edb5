"""ResNet-50 and its FuSe variants (ResNet50FuSeHalf / ResNet50FuSeFull) in
PyTorch form, for the FuSeConv reference latency model and for the PyTorch
export checks.

The FuSeConv repository defines these in models/resnet.py, which is not in
../shared/reference/fuseconv/; this file is written from the paper's
description of them (fusec issue #28) on the torchvision ResNet-50 layout
(7x7 stem, max pool, bottlenecks [3, 4, 6, 3], expansion 4, stride on the 3x3
conv). In every bottleneck the dense 3x3 conv (width -> width, stride s) is
replaced by 1-D depthwise convs:
  Half: 1x3 on the first width/2 channels, 3x1 on the rest, each with BN and
        ReLU, concatenated (width channels);
  Full: 1x3 and 3x1 on all width channels, each with BN and ReLU,
        concatenated to 2*width; the following 1x1 conv takes 2*width inputs.
Works under real PyTorch and under the shape-only shim of reference_latency.py.
"""
import torch
import torch.nn as nn


class Dense3x3(nn.Module):
    def __init__(self, width, stride):
        super().__init__()
        self.conv = nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = width

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class FuSeHalf3x3(nn.Module):
    def __init__(self, width, stride):
        super().__init__()
        c = width // 2
        self.conv_h = nn.Conv2d(c, c, kernel_size=(1, 3), stride=stride, padding=(0, 1), groups=c, bias=False)
        self.bn_h = nn.BatchNorm2d(c)
        self.conv_v = nn.Conv2d(width - c, width - c, kernel_size=(3, 1), stride=stride, padding=(1, 0), groups=width - c, bias=False)
        self.bn_v = nn.BatchNorm2d(width - c)
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = width

    def forward(self, x):
        a, b = x.chunk(2, 1)
        return torch.cat([self.relu(self.bn_h(self.conv_h(a))), self.relu(self.bn_v(self.conv_v(b)))], 1)


class FuSeFull3x3(nn.Module):
    def __init__(self, width, stride):
        super().__init__()
        self.conv_h = nn.Conv2d(width, width, kernel_size=(1, 3), stride=stride, padding=(0, 1), groups=width, bias=False)
        self.bn_h = nn.BatchNorm2d(width)
        self.conv_v = nn.Conv2d(width, width, kernel_size=(3, 1), stride=stride, padding=(1, 0), groups=width, bias=False)
        self.bn_v = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = 2 * width

    def forward(self, x):
        return torch.cat([self.relu(self.bn_h(self.conv_h(x))), self.relu(self.bn_v(self.conv_v(x)))], 1)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, spatial, in_planes, width, stride):
        super().__init__()
        out = width * self.expansion
        self.conv1 = nn.Conv2d(in_planes, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.spatial = spatial(width, stride)
        self.conv3 = nn.Conv2d(self.spatial.out_channels, out, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != out:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.spatial(y)
        y = self.bn3(self.conv3(y))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(y + identity)


class ResNet(nn.Module):
    def __init__(self, spatial, layers=(3, 4, 6, 3), num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        blocks, in_planes = [], 64
        for width, n, stride in zip((64, 128, 256, 512), layers, (1, 2, 2, 2)):
            for i in range(n):
                blocks.append(Bottleneck(spatial, in_planes, width, stride if i == 0 else 1))
                in_planes = width * Bottleneck.expansion
        self.layers = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.avgpool(self.layers(x))
        return self.fc(x.view(x.size(0), -1))


def ResNet50(num_classes=1000):
    return ResNet(Dense3x3, num_classes=num_classes)


def ResNet50FuSeHalf(num_classes=1000):
    return ResNet(FuSeHalf3x3, num_classes=num_classes)


def ResNet50FuSeFull(num_classes=1000):
    return ResNet(FuSeFull3x3, num_classes=num_classes)
