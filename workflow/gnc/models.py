"""Backbones with a d-dimensional feature layer and the three classifier heads of gnc-study.

``build_model(arch, in_shape, d, K, head)`` returns a :class:`GNCModel`:

    x (uint8 or float in [0, 1]) -> per-channel standardization (buffers, set from the training data)
      -> backbone (width w) -> Linear(w -> d, bias, no ReLU) = the feature h -> head -> logits

Architectures (all take any number of input channels and any input size >= 8x8):

=============  ===============================================================================
``mlp``        flatten, ``depth`` x [Linear(width) (+ BatchNorm1d if ``bn``) + ReLU]
``smallcnn``   4 blocks conv3x3-BN-ReLU-maxpool with widths w, 2w, 4w, 8w (pooling skipped once the
               map is 1x1, so 8x8 digits work), global average pool; default w = 16
``resnet18``   CIFAR-style ResNets (3x3 stride-1 stem, no max-pool), base width ``width`` (64 =
``resnet34``   the standard nets; module names and shapes equal torchvision's, so a torchvision
``resnet50``   state dict with the stem swapped loads into them — tested)
``resnext50``  the same ResNet with grouped bottlenecks (``groups`` 32, ``width_per_group`` 4)
``densenet121`` torchvision's DenseNet-BC-121 with a CIFAR stem (3x3 conv, no pooling);
               ``width`` = initial features (64), growth rate = width / 2
=============  ===============================================================================

The ResNets are torchvision's blocks (bottlenecks v1.5: stride on the 3x3 conv) in our own frame:
``torchvision.models.ResNet`` hard-codes 64 base channels (CPU-sized runs need narrow nets).

Heads (classifier matrices are (K, d): row k is w_k):

``normalized``  W (K, d) parameter, no bias; logits = cos(h, w_k) / tau  (GNC)
``linear``      nn.Linear(d, K) with bias on the raw feature (Papyan et al.; tau unused)
``cmf``         class-mean-feature classifier (docs/methods.md §7): buffer C (K, d), no parameter. Each
                *training* forward with labels: S = per-class SUM of the normalized batch features
                (all-reduced over ranks under torch.distributed), C <- beta*C + (1-beta)*S, rows
                re-normalized; logits = cos(h, C_k) / tau with C detached. Eval uses C frozen.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

HEADS = ("normalized", "linear", "cmf")

# the architectures and the options each accepts (anything else is an error, so typos do not pass silently)
ARCH_OPTIONS: dict[str, dict[str, Any]] = {
    "mlp": {"width": 256, "depth": 2, "bn": False},
    "smallcnn": {"width": 16},
    "resnet18": {"width": 64},
    "resnet34": {"width": 64},
    "resnet50": {"width": 64},
    "resnext50": {"width": 64, "groups": 32, "width_per_group": 4},
    "densenet121": {"width": 64},
}
ARCHS = tuple(ARCH_OPTIONS)


# ----------------------------------------------------------------------------------- backbones

class MLP(nn.Module):
    def __init__(self, in_shape, width=256, depth=2, bn=False):
        super().__init__()
        n_in = int(math.prod(in_shape))
        layers: list[nn.Module] = [nn.Flatten()]
        for _ in range(depth):
            layers.append(nn.Linear(n_in, width, bias=not bn))
            if bn:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU(inplace=True))
            n_in = width
        self.net = nn.Sequential(*layers)
        self.out_features = n_in

    def forward(self, x):
        return self.net(x)


class SmallCNN(nn.Module):
    def __init__(self, in_shape, width=16):
        super().__init__()
        c, h, w = in_shape
        blocks = []
        size = min(h, w)
        for i in range(4):
            out = width * 2**i
            layers = [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            blocks.append(nn.Sequential(*layers))
            c = out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = c
        _init_convs(self)

    def forward(self, x):
        return torch.flatten(self.pool(self.blocks(x)), 1)


def _init_convs(net: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) conv weights, as torchvision's ResNets."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class CifarResNet(nn.Module):
    """torchvision's ``block`` ("BasicBlock" or "Bottleneck") in the frame of the module docstring."""

    def __init__(self, block, layers, in_channels=3, width=64, groups=1, width_per_group=64):
        super().__init__()
        from ._torchvision_compat import import_torchvision

        resnet = import_torchvision().models.resnet
        block = getattr(resnet, block)
        if int(width * (width_per_group / 64.0)) * groups < 1:
            raise ValueError(f"bottleneck width is 0 (width={width}, groups={groups}, "
                             f"width_per_group={width_per_group}); increase width or width_per_group")
        self.inplanes = width
        self.conv1 = resnet.conv3x3(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        for i, n in enumerate(layers):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            downsample = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                downsample = nn.Sequential(resnet.conv1x1(self.inplanes, planes * block.expansion, stride),
                                           nn.BatchNorm2d(planes * block.expansion))
            blocks = [block(self.inplanes, planes, stride, downsample, groups, width_per_group)]
            self.inplanes = planes * block.expansion
            for _ in range(1, n):
                blocks.append(block(self.inplanes, planes, groups=groups, base_width=width_per_group))
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_features = width * 8 * block.expansion
        _init_convs(self)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


class DenseNetBackbone(nn.Module):
    """torchvision DenseNet-BC-121 features with a CIFAR stem, then ReLU + global average pool."""

    def __init__(self, in_channels=3, width=64):
        super().__init__()
        from ._torchvision_compat import import_torchvision

        net = import_torchvision().models.DenseNet(
            growth_rate=max(1, width // 2), block_config=(6, 12, 24, 16), num_init_features=width, bn_size=4,
            drop_rate=0.0, num_classes=1)
        net.features.conv0 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.features.conv0.weight)
        net.features.pool0 = nn.Identity()
        self.features = net.features
        self.out_features = net.classifier.in_features

    def forward(self, x):
        x = F.relu(self.features(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


_RESNETS = {"resnet18": ("BasicBlock", [2, 2, 2, 2]), "resnet34": ("BasicBlock", [3, 4, 6, 3]),
            "resnet50": ("Bottleneck", [3, 4, 6, 3]), "resnext50": ("Bottleneck", [3, 4, 6, 3])}


def build_backbone(arch: str, in_shape, **opts) -> nn.Module:
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")
    allowed = ARCH_OPTIONS[arch]
    unknown = set(opts) - set(allowed)
    if unknown:
        raise ValueError(f"arch {arch!r} does not take option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    o = {**allowed, **opts}
    if arch == "mlp":
        return MLP(in_shape, **o)
    if arch == "smallcnn":
        return SmallCNN(in_shape, **o)
    if arch == "densenet121":
        return DenseNetBackbone(in_shape[0], **o)
    return CifarResNet(*_RESNETS[arch], in_shape[0], **o)


# ----------------------------------------------------------------------------------- heads

def _float32_region(device: torch.device):
    """Autocast off (the heads compute in float32 under bf16 autocast); the meta device used to
    count FLOPs has no autocast."""
    return contextlib.nullcontext() if device.type == "meta" else torch.autocast(device.type, enabled=False)


class NormalizedHead(nn.Module):
    """logits = cos(h, w_k) / tau with a learnable W (K, d), no bias. Computed in float32."""

    def __init__(self, d, K, tau):
        super().__init__()
        self.tau = float(tau)
        self.weight = nn.Parameter(torch.empty(K, d))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's default

    def forward(self, h, y=None):
        with _float32_region(h.device):
            return F.normalize(h.float(), dim=1) @ F.normalize(self.weight.float(), dim=1).t() / self.tau


class LinearHead(nn.Module):
    """Plain nn.Linear(d, K) with bias on the raw feature (Papyan et al.); tau unused."""

    def __init__(self, d, K, tau):
        super().__init__()
        self.fc = nn.Linear(d, K)

    def forward(self, h, y=None):
        return self.fc(h).float()


class CMFHead(nn.Module):
    """Class-mean-feature classifier: no parameters, a (K, d) buffer of running class means."""

    def __init__(self, d, K, tau, beta=0.9):
        super().__init__()
        self.tau, self.beta = float(tau), float(beta)
        self.register_buffer("C", torch.zeros(K, d))

    @torch.no_grad()
    def update(self, h_normalized: torch.Tensor, y: torch.Tensor) -> None:
        """The update of the module docstring."""
        s = torch.zeros_like(self.C).index_add_(0, y, h_normalized.to(self.C.dtype))
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(s)  # summed over the ranks
        self.C.copy_(F.normalize(self.beta * self.C + (1.0 - self.beta) * s, dim=1))

    def forward(self, h, y=None):
        with _float32_region(h.device):
            hn = F.normalize(h.float(), dim=1)
            if self.training and y is not None:
                self.update(hn.detach(), y)
            return hn @ self.C.detach().t() / self.tau


# ----------------------------------------------------------------------------------- model

class GNCModel(nn.Module):
    """backbone -> Linear(width -> d) = h -> head. ``forward(x, y=None)`` returns logits (float32)."""

    def __init__(self, arch, in_shape, d, K, head="normalized", tau=1.0, cmf_beta=0.9, **arch_opts):
        super().__init__()
        self.d, self.K = int(d), int(K)
        in_shape = tuple(int(s) for s in in_shape)
        # per-channel standardization of inputs in [0, 1]; set from the training data by the trainer
        self.register_buffer("input_mean", torch.zeros(in_shape[0]))
        self.register_buffer("input_std", torch.ones(in_shape[0]))
        self.backbone = build_backbone(arch, in_shape, **arch_opts)
        self.proj = nn.Linear(self.backbone.out_features, self.d)
        if head == "cmf":
            self.head = CMFHead(self.d, self.K, tau, cmf_beta)
        else:
            self.head = {"normalized": NormalizedHead, "linear": LinearHead}[head](self.d, self.K, tau)

    @torch.no_grad()
    def set_input_stats(self, mean, std) -> None:
        self.input_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.input_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-6))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The raw (un-normalized) d-dimensional feature h. ``x``: uint8 (0..255) or float in [0, 1]."""
        if not x.is_floating_point():
            x = x.float().div_(255.0)
        x = (x - self.input_mean.view(1, -1, 1, 1).to(x.dtype)) / self.input_std.view(1, -1, 1, 1).to(x.dtype)
        return self.proj(self.backbone(x))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x), y)

    def classifier_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W (K, d), b (K)) as used by the head; b is zero for the normalized and CMF heads."""
        if isinstance(self.head, LinearHead):
            return self.head.fc.weight.detach(), self.head.fc.bias.detach()
        w = (self.head.weight if isinstance(self.head, NormalizedHead) else self.head.C).detach()
        return w, torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)


def build_model(arch: str, in_shape, d: int, K: int, head: str = "normalized", *, tau: float = 1.0,
                cmf_beta: float = 0.9, **arch_opts) -> GNCModel:
    """Build backbone + d-dim feature layer + head. ``in_shape`` = (C, H, W)."""
    if len(in_shape) != 3:
        raise ValueError(f"in_shape must be (C, H, W), got {in_shape}")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")
    if d < 1 or K < 2:
        raise ValueError(f"need d >= 1 and K >= 2, got d={d}, K={K}")
    return GNCModel(arch, in_shape, d, K, head, tau, cmf_beta, **arch_opts)


# ----------------------------------------------------------------------------------- memory

def cmf_memory_saving(K: int, d: int, *, optimizer_states: int = 1, bytes_per_element: int = 4) -> dict:
    """Analytic memory of a learnable classifier vs the CMF buffer (docs/methods.md §7): W costs K*d
    for the parameter, K*d for its gradient and K*d per optimizer state (1: SGD with momentum, 2: Adam);
    CMF one K*d buffer."""
    cmf = K * d * bytes_per_element
    learnable = cmf * (2 + optimizer_states)
    return {"K": K, "d": d, "learnable_bytes": learnable, "cmf_bytes": cmf, "saved_bytes": learnable - cmf,
            "ratio": learnable / cmf}


def training_state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, int]:
    """Measured bytes held by a model's training state: parameters, gradients, buffers, optimizer state."""
    def nbytes(tensors):
        return sum(t.numel() * t.element_size() for t in tensors)

    opt_states = optimizer.state.values() if optimizer is not None else ()
    out = {"parameters": nbytes(model.parameters()),
           "gradients": nbytes(p.grad for p in model.parameters() if p.grad is not None),
           "buffers": nbytes(model.buffers()),
           "optimizer": nbytes(v for st in opt_states for v in st.values() if torch.is_tensor(v) and v.dim())}
    return {**out, "total": sum(out.values())}
