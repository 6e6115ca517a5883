"""The rendered-glyph source: determinism, jitter, the look-alike rule, and (slow) learnability."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnc import data as gd
from gnc.data.sources import glyphs as G

torch.set_num_threads(1)

SMALL = {"num_classes": 12, "fonts": ["DejaVuSans.ttf", "DejaVuSerif-Italic.ttf", "STIXGeneralBol.ttf"],
         "train_per_font": 2, "test_per_font": 1}


def test_glyphs_prepare_small(tmp_path):
    m = gd.prepare("glyphs", SMALL, tmp_path / "a")
    p = gd.load_prepared(tmp_path / "a")
    assert p.class_names == list(G.GLYPH_CLASSES[:12])
    assert m["class_ids"][10] == f"U+{ord(G.GLYPH_CLASSES[10]):04X}"
    assert p.train_x.shape[1:] == (1, 32, 32)
    assert m["counts"]["train"]["per_class"] == [3 * 2] * 12 and m["counts"]["test"]["per_class"] == [3] * 12
    assert set(m["source"]["fonts"]) == set(SMALL["fonts"])
    # deterministic: same spec, same bytes; another seed, other bytes
    m2 = gd.prepare("glyphs", SMALL, tmp_path / "b")
    assert m2["checksum"] == m["checksum"]
    m3 = gd.prepare("glyphs", {**SMALL, "seed": 1}, tmp_path / "c")
    assert m3["files"]["train_x.npy"] != m["files"]["train_x.npy"]
    # train and test draw different jitters of the same (class, font)
    assert not np.array_equal(p.train_x[0], p.test_x[0])
    # every image has ink and background
    assert (p.train_x.reshape(len(p.train_x), -1).max(1) > 200).all()
    assert (p.train_x[:, 0, 0, 0] == 0).mean() > 0.9


def _ink_box(img: np.ndarray, thr: int = 64):
    ys, xs = np.nonzero(img > thr)
    return xs.min(), xs.max(), ys.min(), ys.max()


def test_zero_jitter_gives_centred_size_normalised_glyphs(tmp_path):
    spec = {**SMALL, "rotation": 0.0, "scale": 0.0, "shear": 0.0, "shift": 0.0, "stroke_levels": 1}
    gd.prepare("glyphs", spec, tmp_path / "z")
    p = gd.load_prepared(tmp_path / "z")
    for img in p.train_x[:, 0]:
        x0, x1, y0, y1 = _ink_box(img)
        longer = max(x1 - x0, y1 - y0) + 1
        assert abs(longer - G.MASTER_FILL * 32) <= 2.0  # the longer side fills 80 % of the canvas
        assert abs((x0 + x1) / 2 - 15.5) <= 1.5 and abs((y0 + y1) / 2 - 15.5) <= 1.5  # centred
    # two repetitions of the same (class, font) are then identical
    np.testing.assert_array_equal(p.train_x[0], p.train_x[1])


def test_shift_and_rotation_jitter_are_bounded(tmp_path):
    spec = {**SMALL, "num_classes": 3, "rotation": 0.0, "scale": 0.0, "shear": 0.0, "shift": 0.1,
            "stroke_levels": 1, "train_per_font": 8}
    gd.prepare("glyphs", spec, tmp_path / "s")
    p = gd.load_prepared(tmp_path / "s")
    centres = []
    for img in p.train_x[:, 0]:
        w = img.astype(float)
        yy, xx = np.mgrid[:32, :32]
        centres.append(((w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()))
    c = np.array(centres).reshape(3, 3, 8, 2)  # class, font, repetition
    spread = c - c.mean(axis=2, keepdims=True)
    assert np.abs(spread).max() <= 2 * 0.1 * 32 + 1  # shifts within ±shift*size
    assert np.abs(spread).max() > 0.5  # and they do move


def test_fonts_cover_the_class_list():
    fonts = G.resolve_fonts(G.DEFAULT_FONTS)
    assert G.missing_glyphs(fonts, G.GLYPH_CLASSES) == {}
    assert len(G.GLYPH_CLASSES) >= 100 and len(set(G.GLYPH_CLASSES)) == len(G.GLYPH_CLASSES)


def test_font_without_coverage_is_an_error(tmp_path):
    with pytest.raises(gd.SpecError, match="cmr10.ttf"):
        gd.prepare("glyphs", {"num_classes": 80, "fonts": ["cmr10.ttf"]}, tmp_path / "x")
    with pytest.raises(gd.DatasetNotFoundError, match="NoSuchFont.ttf"):
        gd.version_id("glyphs", {"fonts": ["NoSuchFont.ttf"]})


def test_homoglyphs_render_identically_and_the_rule_drops_them():
    # Latin A, Greek Alpha, Cyrillic A: the same outline in DejaVu Sans (independent correlation)
    f = G.resolve_fonts(["DejaVuSans.ttf"])[0]
    imgs = [G.render_master(f, c, 32, canvas=32).astype(float).ravel() for c in "AΑА"]
    assert np.allclose(imgs[0], imgs[1]) and np.allclose(imgs[0], imgs[2])
    # the similarity part of the rule alone (no explicit groups) keeps one of each family
    kept, dropped = G.derive_classes(groups=(), candidates="ABHΑΒΗАВН0Oo")
    assert kept.startswith("ABH0") and not set("ΑΒΗАВН") & set(kept)
    assert all(r.startswith("similarity") for r in dropped.values())
    # the explicit groups catch what correlation misses (a different family per face)
    kept, dropped = G.derive_classes(candidates="01lIΙ")
    assert kept == "01" and all("explicit" in dropped[c] for c in "lIΙ")


def test_frozen_class_table_satisfies_the_rule():
    kept, dropped = G.derive_classes()
    assert kept == G.GLYPH_CLASSES
    # independent check of the similarity criterion on the kept set
    fonts = G.resolve_fonts(G.DEFAULT_FONTS)
    chars = G.GLYPH_CLASSES
    worst = np.full((len(chars), len(chars)), -1.0)
    for f in fonts:
        v = np.stack([G.render_master(f, c, 32, canvas=32).astype(float).ravel() for c in chars])
        v = v - v.mean(1, keepdims=True)
        v /= np.sqrt((v ** 2).sum(1, keepdims=True))
        worst = np.maximum(worst, v @ v.T)
    np.fill_diagonal(worst, -1)
    assert worst.max() <= G.LOOKALIKE_THRESHOLD
    for group in G.LOOKALIKE_GROUPS:
        assert sum(c in chars for c in group) <= 1, group
    # every candidate is either kept or dropped with a reason
    assert set(kept) | set(dropped) == set(G.CANDIDATES)


@pytest.mark.slow
def test_small_cnn_separates_the_glyph_classes(tmp_path):
    """K=100 default glyphs: a 4-block CNN reaches ~100 % train and > 97 % test accuracy (distinct classes)."""
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(0)
    gd.prepare("glyphs", {"test_per_font": 2}, tmp_path / "g")
    p = gd.load_prepared(tmp_path / "g")
    X = torch.tensor(p.train_x, dtype=torch.float32) / 255
    Y = torch.tensor(p.train_y)
    Xt = torch.tensor(p.test_x, dtype=torch.float32) / 255
    Yt = torch.tensor(p.test_y)

    def blk(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

    net = nn.Sequential(blk(1, 16), blk(16, 32), blk(32, 64), blk(64, 128), nn.Flatten(), nn.Linear(512, 100))
    epochs = 15
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=epochs * ((len(X) + 127) // 128))
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(X))
        for i in range(0, len(X), 128):
            b = perm[i:i + 128]
            loss = F.cross_entropy(net(X[b]), Y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        train_acc = (net(X).argmax(1) == Y).float().mean().item()
        test_acc = (net(Xt).argmax(1) == Yt).float().mean().item()
    assert train_acc > 0.99 and test_acc > 0.97, (train_acc, test_acc)
