"""gnc.models and gnc.losses: shapes, equivalence with torchvision, head math, HardMax, CMF memory."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from gnc.losses import compute_loss, hardmax_loss
from gnc.models import (ARCHS, build_backbone, build_model, cmf_memory_saving, training_state_bytes)

SMALL = {
    "mlp": {"width": 16},
    "smallcnn": {"width": 4},
    "resnet18": {"width": 4},
    "resnet34": {"width": 4},
    "resnet50": {"width": 4},
    "resnext50": {"width": 16, "groups": 4, "width_per_group": 4},
    "densenet121": {"width": 4},
}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("in_shape", [(1, 8, 8), (3, 32, 32)])
def test_shapes_every_arch(arch, in_shape):
    if arch in ("resnet34", "resnet50", "resnext50", "densenet121") and in_shape[1] == 32:
        pytest.skip("deep nets: 8x8 covers the code path; 32x32 checked for the others")
    torch.manual_seed(0)
    d, K = 3, 7
    heads = ("normalized", "linear", "cmf") if arch in ("mlp", "smallcnn") else ("normalized",)
    for head in heads:  # the heads do not depend on the backbone
        m = build_model(arch, in_shape, d, K, head, tau=0.1, **SMALL[arch])
        x = torch.randint(0, 256, (4, *in_shape), dtype=torch.uint8)
        y = torch.tensor([0, 1, 2, 6])
        h = m.features(x)
        assert h.shape == (4, d)
        logits = m(x, y)
        assert logits.shape == (4, K) and logits.dtype == torch.float32
        assert torch.isfinite(logits).all()
        W, b = m.classifier_weights()
        assert W.shape == (K, d) and b.shape == (K,)
        if head != "cmf":
            logits.sum().backward()
            assert m.proj.weight.grad is not None


def test_uint8_and_float_inputs_agree():
    m = build_model("smallcnn", (1, 8, 8), 3, 5, width=4).eval()
    m.set_input_stats([0.3], [0.2])
    x = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    torch.testing.assert_close(m.features(x), m.features(x.float() / 255))


@pytest.mark.parametrize("arch,factory", [("resnet18", "resnet18"), ("resnet34", "resnet34"),
                                          ("resnet50", "resnet50"), ("resnext50", "resnext50_32x4d")])
def test_resnets_equal_torchvision_with_cifar_stem(arch, factory):
    """At width 64 our ResNets are torchvision's nets with a 3x3 stride-1 stem and no max-pool:
    the torchvision state dict loads strictly and gives the same output."""
    from gnc._torchvision_compat import import_torchvision

    tv = import_torchvision()
    torch.manual_seed(0)
    ref = getattr(tv.models, factory)()
    ref.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    ref.maxpool, ref.fc = nn.Identity(), nn.Identity()
    ours = build_backbone(arch, (3, 32, 32))
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.eval(), ours.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)
    assert ours.out_features == ref.layer4[-1].conv1.in_channels  # 512 / 2048


def test_densenet121_matches_torchvision_densenet121():
    from gnc._torchvision_compat import import_torchvision

    tv = import_torchvision()
    ref = tv.models.densenet121()
    ref.features.conv0 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    ours = build_backbone("densenet121", (3, 32, 32))
    n_ref = sum(p.numel() for n, p in ref.named_parameters() if not n.startswith("classifier"))
    assert sum(p.numel() for p in ours.parameters()) == n_ref
    assert ours.out_features == 1024


def test_bad_options_are_errors():
    with pytest.raises(ValueError, match="does not take"):
        build_model("smallcnn", (1, 8, 8), 3, 5, widht=4)
    with pytest.raises(ValueError, match="unknown arch"):
        build_model("vgg", (1, 8, 8), 3, 5)
    with pytest.raises(ValueError, match="unknown head"):
        build_model("mlp", (1, 8, 8), 3, 5, head="arcface")


def test_normalized_logits_are_cosines_over_tau():
    torch.manual_seed(1)
    tau = 0.07
    m = build_model("mlp", (1, 8, 8), 4, 9, "normalized", tau=tau, width=8).eval()
    x = torch.rand(50, 1, 8, 8)
    with torch.no_grad():
        logits = m(x).double().numpy()
        h = m.features(x).double().numpy()
    W = m.head.weight.detach().double().numpy()
    expected = (h / np.linalg.norm(h, axis=1, keepdims=True)) @ (W / np.linalg.norm(W, axis=1, keepdims=True)).T / tau
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(logits).max() <= 1 / tau * (1 + 1e-6)
    b = m.classifier_weights()[1]
    assert torch.count_nonzero(b) == 0
    assert not any("bias" in n for n, _ in m.head.named_parameters())


def test_linear_head_is_affine_in_raw_features():
    torch.manual_seed(2)
    m = build_model("mlp", (1, 8, 8), 4, 6, "linear", tau=0.5, width=8).eval()
    x = torch.rand(10, 1, 8, 8)
    with torch.no_grad():
        W, b = m.classifier_weights()
        torch.testing.assert_close(m(x), m.features(x) @ W.t() + b)
    assert b.abs().sum() > 0


def test_cmf_buffer_update_math():
    """Two training steps against a direct numpy recursion; eval forwards do not update."""
    K, d, beta, tau = 4, 3, 0.7, 0.2
    torch.manual_seed(3)
    m = build_model("mlp", (1, 4, 4), d, K, "cmf", tau=tau, cmf_beta=beta, width=8)
    assert sum(p.numel() for p in m.head.parameters()) == 0
    C = np.zeros((K, d))
    for step in range(2):
        x = torch.rand(6, 1, 4, 4)
        y = torch.tensor([0, 0, 2, 3, 2, 0]) if step == 0 else torch.tensor([1, 1, 0, 3, 3, 3])
        m.train()
        logits = m(x, y)
        with torch.no_grad():
            h = m.features(x).double().numpy()
        hn = h / np.linalg.norm(h, axis=1, keepdims=True)
        S = np.zeros((K, d))
        for i, yi in enumerate(y.tolist()):
            S[yi] += hn[i]
        C = beta * C + (1 - beta) * S
        norms = np.linalg.norm(C, axis=1, keepdims=True)
        C = np.where(norms > 0, C / np.maximum(norms, 1e-12), 0.0)
        np.testing.assert_allclose(m.head.C.double().numpy(), C, atol=1e-6)
        # logits of this step use the updated buffer, detached
        np.testing.assert_allclose(logits.detach().double().numpy(), hn @ C.T / tau, atol=1e-4)
    assert not m.head.C.requires_grad
    assert set(np.nonzero(np.linalg.norm(C, axis=1))[0]) == {0, 1, 2, 3}
    before = m.head.C.clone()
    m.eval()
    m(torch.rand(5, 1, 4, 4), torch.tensor([0, 1, 2, 3, 0]))
    assert torch.equal(before, m.head.C)
    W, b = m.classifier_weights()
    assert torch.equal(W, m.head.C) and torch.count_nonzero(b) == 0


def _hardmax_direct(cos, y, scale):
    best = -np.inf
    for i in range(cos.shape[0]):
        for k in range(cos.shape[1]):
            if k != y[i]:
                best = max(best, cos[i, k] - cos[i, y[i]])
    return scale * best


def test_hardmax_loss_against_direct_formula():
    rng = np.random.default_rng(0)
    cos = rng.uniform(-1, 1, size=(7, 5))
    y = rng.integers(0, 5, size=7)
    got = hardmax_loss(torch.tensor(cos), torch.tensor(y), scale=100.0).item()
    assert got == pytest.approx(_hardmax_direct(cos, y, 100.0), rel=1e-6)
    # through compute_loss: logits = cos / tau, so the loss is tau-free
    tau = 0.1
    got2 = compute_loss("hardmax", torch.tensor(cos / tau), torch.tensor(y), tau=tau).item()
    assert got2 == pytest.approx(got, rel=1e-5)
    # its gradient touches only the worst (sample, class) pair
    c = torch.tensor(cos, requires_grad=True)
    hardmax_loss(c, torch.tensor(y)).backward()
    assert torch.count_nonzero(c.grad) == 2


def test_ce_ddp_scaling_gives_global_mean():
    """sum over a shard * world / global_batch, averaged over ranks == mean over the global batch."""
    rng = np.random.default_rng(1)
    logits, y = torch.tensor(rng.normal(size=(9, 4))), torch.tensor(rng.integers(0, 4, 9))
    full = compute_loss("ce", logits, y, tau=1.0)
    parts = [compute_loss("ce", logits[s], y[s], tau=1.0, world_size=2, global_batch=9)
             for s in (slice(0, 4), slice(4, 9))]
    assert (sum(parts) / 2).item() == pytest.approx(full.item(), rel=1e-6)  # float32 loss
    ref = -np.mean([np.log(np.exp(r[t]) / np.exp(r).sum()) for r, t in zip(logits.numpy(), y.numpy())])
    assert full.item() == pytest.approx(ref, rel=1e-6)


def test_cmf_memory_saving_analytic_and_measured():
    # docs/methods.md §7: K = 10^4, d = 512, fp32, SGD momentum: ~61 MB -> ~20 MB
    s = cmf_memory_saving(10_000, 512)
    assert s["learnable_bytes"] == 3 * 10_000 * 512 * 4 and s["cmf_bytes"] == 10_000 * 512 * 4
    assert s["learnable_bytes"] / 1e6 == pytest.approx(61.44) and s["ratio"] == 3
    # measured: one SGD+momentum step of the same backbone with either head
    K, d = 50, 6
    measured = {}
    for head in ("normalized", "cmf"):
        torch.manual_seed(0)
        m = build_model("mlp", (1, 4, 4), d, K, head, tau=0.1, width=8)
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        x, y = torch.rand(8, 1, 4, 4), torch.randint(0, K, (8,))
        compute_loss("ce", m(x, y), y, tau=0.1).backward()
        opt.step()
        measured[head] = training_state_bytes(m, opt)["total"]
    analytic = cmf_memory_saving(K, d)
    assert measured["normalized"] - measured["cmf"] == analytic["saved_bytes"] == 2 * K * d * 4


def test_build_model_deterministic_given_seed():
    torch.manual_seed(5)
    a = build_model("smallcnn", (1, 8, 8), 3, 5, width=4).state_dict()
    torch.manual_seed(5)
    b = build_model("smallcnn", (1, 8, 8), 3, 5, width=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert math.isfinite(float(a["proj.weight"].sum()))
