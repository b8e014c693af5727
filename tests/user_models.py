"""Small networks written as users write them (torchvision's style), one per structural pattern
the channel tracer must handle. Each is a factory ``f(num_classes=..., in_channels=...)``
usable as ``--arch user_models:NAME`` with this directory on the import path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_act(cin, cout, kernel=3, stride=1, groups=1, act=nn.ReLU):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), act(inplace=True))


class Bottleneck(nn.Module):
    """1x1 - 3x3 (grouped for ResNeXt) - 1x1 with a projection shortcut where the shape changes."""

    def __init__(self, cin, mid, cout, stride=1, groups=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class BottleneckResNet(nn.Module):
    def __init__(self, num_classes=10, in_channels=3, groups=1, mid=(8, 16)):
        super().__init__()
        self.stem = conv_bn_act(in_channels, 16)
        self.layer1 = nn.Sequential(Bottleneck(16, mid[0], 32, groups=groups), Bottleneck(32, mid[0], 32, groups=groups))
        self.layer2 = nn.Sequential(Bottleneck(32, mid[1], 64, 2, groups), Bottleneck(64, mid[1], 64, groups=groups))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def bottleneck_resnet(num_classes=10, in_channels=3):
    """A ResNet-50-like net: bottleneck blocks, projection shortcuts."""
    return BottleneckResNet(num_classes, in_channels)


def resnext(num_classes=10, in_channels=3):
    """Bottlenecks with a grouped 3x3 conv (4 groups): widths stay multiples of 4."""
    return BottleneckResNet(num_classes, in_channels, groups=4, mid=(8, 16))


class SqueezeExcite(nn.Module):
    def __init__(self, channels, squeeze):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x):
        scale = F.hardsigmoid(self.fc2(F.relu(self.fc1(self.pool(x)))))
        return x * scale


class InvertedResidual(nn.Module):
    """Expand 1x1 - depthwise 3x3 - (squeeze-excite) - project 1x1, residual when shapes match."""

    def __init__(self, cin, expand, cout, stride=1, se=False, act=nn.Hardswish):
        super().__init__()
        layers = [conv_bn_act(cin, expand, 1, act=act), conv_bn_act(expand, expand, 3, stride, groups=expand, act=act)]
        if se:
            layers.append(SqueezeExcite(expand, max(8, expand // 4)))
        layers += [nn.Conv2d(expand, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x):
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetLike(nn.Module):
    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_act(in_channels, 16, 3, act=nn.Hardswish),
            InvertedResidual(16, 32, 16),
            InvertedResidual(16, 48, 24, 2, se=True),
            InvertedResidual(24, 64, 24, se=True),
            conv_bn_act(24, 96, 1, act=nn.Hardswish))
        self.classifier = nn.Sequential(nn.Linear(96, 64), nn.Hardswish(inplace=True), nn.Dropout(0.2),
                                        nn.Linear(64, num_classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(x.flatten(1))


def mobilenet(num_classes=10, in_channels=3):
    """MobileNetV3-like: inverted residuals, depthwise convs, squeeze-excite, hard-swish."""
    return MobileNetLike(num_classes, in_channels)


class DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, 2 * growth, 1, bias=False)
        self.norm2, self.conv2 = nn.BatchNorm2d(2 * growth), nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False)

    def forward(self, features):
        x = torch.cat(features, 1)
        x = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(x)))


class DenseNetLike(nn.Module):
    def __init__(self, num_classes=10, in_channels=3, growth=6):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 12, 3, padding=1, bias=False)
        self.block1 = nn.ModuleList([DenseLayer(12 + i * growth, growth) for i in range(3)])
        self.transition = nn.Sequential(nn.BatchNorm2d(12 + 3 * growth), nn.ReLU(),
                                        nn.Conv2d(12 + 3 * growth, 16, 1, bias=False), nn.AvgPool2d(2))
        self.block2 = nn.ModuleList([DenseLayer(16 + i * growth, growth) for i in range(2)])
        self.norm = nn.BatchNorm2d(16 + 2 * growth)
        self.fc = nn.Linear(16 + 2 * growth, num_classes)

    def forward(self, x):
        features = [self.stem(x)]
        for layer in self.block1:
            features.append(layer(features))
        features = [self.transition(torch.cat(features, 1))]
        for layer in self.block2:
            features.append(layer(features))
        x = F.relu(self.norm(torch.cat(features, 1)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


def densenet(num_classes=10, in_channels=3):
    """DenseNet-like: every layer reads the concatenation of all earlier ones."""
    return DenseNetLike(num_classes, in_channels)


def channel_shuffle(x, groups):
    batchsize, num_channels, height, width = x.size()
    x = x.view(batchsize, groups, num_channels // groups, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, num_channels, height, width)


class ShuffleUnit(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                                         nn.Conv2d(cin, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True))
        branch_in = cin if stride > 1 else half
        self.branch2 = nn.Sequential(
            nn.Conv2d(branch_in, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, stride, 1, groups=half, bias=False), nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetLike(nn.Module):
    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.conv1 = conv_bn_act(in_channels, 12)
        self.stage2 = nn.Sequential(ShuffleUnit(12, 24, 2), ShuffleUnit(24, 24, 1))
        self.conv5 = conv_bn_act(24, 48, 1)
        self.fc = nn.Linear(48, num_classes)

    def forward(self, x):
        x = self.conv5(self.stage2(self.conv1(x)))
        return self.fc(x.mean([2, 3]))


def shufflenet(num_classes=10, in_channels=3):
    """ShuffleNetV2-like: channel split, concatenation and channel shuffle."""
    return ShuffleNetLike(num_classes, in_channels)


class FlattenHead(nn.Module):
    """A VGG-like net whose classifier reads the flattened 2x2 map: the flattened width scales."""

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.features = nn.Sequential(conv_bn_act(in_channels, 8), nn.MaxPool2d(2), conv_bn_act(8, 16),
                                      nn.AdaptiveAvgPool2d(2))
        self.classifier = nn.Sequential(nn.Linear(16 * 4, 32), nn.ReLU(), nn.Linear(32, num_classes))

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


def flatten_head(num_classes=10, in_channels=3):
    return FlattenHead(num_classes, in_channels)


def rgb_only(num_classes=10):
    """A factory that takes no in_channels: a 3-channel stem that grey data must be repeated for."""
    return BottleneckResNet(num_classes, 3)


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 3, 3, 3))
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(F.conv2d(x, self.weight).mean((2, 3)))


def functional_conv(num_classes=10):
    """Convolves with F.conv2d: MACs netadjust cannot count, so it must refuse the model."""
    return Functional()


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:  # data-dependent control flow: not traceable
            y = -y
        return self.fc(y.mean((2, 3)))


def branchy(num_classes=10):
    return Branchy()


class LiteralWidth(nn.Module):
    """A hard-coded channel count in forward (``view(-1, 16, ...)``): those widths must stay fixed."""

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.conv1 = conv_bn_act(in_channels, 16)
        self.conv2 = conv_bn_act(16, 24)
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        x = x.reshape(-1, 16, x.shape[2], x.shape[3])
        return self.fc(self.conv2(x).mean((2, 3)))


def literal_width(num_classes=10, in_channels=3):
    return LiteralWidth(num_classes, in_channels)


PATTERNS = ("bottleneck_resnet", "resnext", "mobilenet", "densenet", "shufflenet", "flatten_head", "literal_width")
