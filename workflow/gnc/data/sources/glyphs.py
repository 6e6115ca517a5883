"""Rendered glyphs: a many-class image set that needs nothing beyond the fonts matplotlib ships.

Classes are characters of the Latin, Greek and Cyrillic alphabets and the digits, each drawn from
the 16 TrueType faces in ``matplotlib/mpl-data/fonts/ttf`` (DejaVu Sans / Serif / Sans Mono and
STIXGeneral, each regular, bold, italic/oblique, bold italic). A sample is one face of one
character with a seeded random affine jitter (rotation, scale, shear, shift) and a random stroke
width, white on black, 1 channel.

Rendering (fast: masters are drawn once per character, face and stroke level, samples are affine
warps of the masters; 6,400 images of 32×32 in about 1 s):

1. master: the character is drawn with PIL ``ImageFont`` at font size ``3*size`` px with stroke
   width ``level/(stroke_levels-1) * stroke_max * font_size`` (levels 0..stroke_levels-1), cropped to
   its ink bounding box, scaled (aspect kept, box filter) so its longer side is ``fill * 2*size``
   (fill = 0.8) and centred on a ``2*size`` square canvas. Size and position are normalised: a
   class is a shape, not a size (so C/c, S/s, Cyrillic К/к ... are look-alikes, see below).
2. sample: affine warp of the master (rotation U(-rotation, rotation) degrees, scale
   U(1-scale, 1+scale), horizontal shear U(-shear, shear), shift U(-shift, shift)*size in x and y),
   bilinear, then a 2×2 box reduction to ``size``×``size``. Parameters are drawn from
   ``numpy.random.default_rng([seed, 0 (train) | 1 (test)])`` in sample order (class, font, repetition).

Look-alike rule (which characters are classes). Candidates (:data:`SCRIPTS`, 212) in priority order:
digits, the basic Latin, Greek and Cyrillic alphabets (upper, then lower case), then letters with new
base shapes (no accented variants). Walking the candidates in that order, a character is *dropped* when

* it belongs to one of the explicit groups :data:`LOOKALIKE_GROUPS` together with a character
  already kept (cross-script homoglyphs such as Latin A / Greek Α / Cyrillic А, the O/0/o family,
  1/l/I, and upper/lower case pairs whose shapes coincide once size is normalised, e.g. C/c,
  Cyrillic К/к), or
* its similarity to a character already kept exceeds :data:`LOOKALIKE_THRESHOLD`. Similarity is the
  maximum over the faces of the Pearson correlation of the two 32×32 masters (stroke 0, no jitter)
  drawn with the same face.

Greedy selection (instead of connected components) avoids chains such as H–Н–н–п–n removing
distinct characters. The threshold 0.95 catches identical outlines (homoglyphs correlate at 1.00 in
every face) and near-identical ones (italic Cyrillic п / Latin n: 1.00, Θ / mono 0: 0.98); it is
conservative, so pairs a CNN would still separate also go when one face makes them close
(Π/H 0.965, Λ/A 0.964, Ł/L 0.958). The explicit groups were completed with the most confused pairs
of a small CNN trained on all candidates (Ø/ø, Њ/њ, Ґ/ґ, Ŋ/ŋ, ϵ/Є, y/У, Φ/ф, æ/œ).
:func:`derive_classes` applies the rule; its result with the default fonts (117 of the 212
candidates) is frozen in :data:`GLYPH_CLASSES`, so the class list does not move with FreeType
versions; a test re-derives it and checks the table against the rule. ``num_classes: K`` takes the
first K characters of that table (digits, Latin, Greek, Cyrillic, then the extra letters).

Learnability: a small CNN separates the K=100 default classes (> 97 % test accuracy; a slow test).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from pathlib import Path

import numpy as np

from .._files import hash_file
from ..errors import DatasetNotFoundError, SpecError
from .base import RawData, Source

DEFAULT_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
)


def _crange(a: int, b: int, skip: tuple[int, ...] = ()) -> str:
    return "".join(chr(c) for c in range(a, b + 1) if c not in skip)


SCRIPTS = {
    "digit": "0123456789",
    "latin_upper": _crange(0x41, 0x5A),
    "latin_lower": _crange(0x61, 0x7A),
    "greek_upper": _crange(0x391, 0x3A9, skip=(0x3A2,)),
    "greek_lower": _crange(0x3B1, 0x3C9, skip=(0x3C2,)),
    "cyrillic_upper": _crange(0x410, 0x42F),
    "cyrillic_lower": _crange(0x430, 0x44F),
    # letters outside the basic alphabets whose base shape is new (no accented variants)
    "latin_extra": "ßÆæŒœØøÞþÐðŊŋŁłĦħđ",
    "greek_extra": "ςϑϕϖϱϵ",
    "cyrillic_extra": "ЂЄЉЊЋЏҐђєљњћџґ",
}
#: all candidate characters in priority order (212)
CANDIDATES = "".join(SCRIPTS.values())

#: explicit look-alike groups (Latin / Greek / Cyrillic / digits). Within a group only the first
#: candidate in priority order survives.
LOOKALIKE_GROUPS = (
    # cross-script homoglyphs (Unicode confusables among these alphabets)
    "0OoΟοОо", "1lIΙ", "3Зз", "AΑА", "BΒВв", "CcСс", "EΕЕ", "HΗНн", "KΚКκк", "MΜМм", "NΝ",
    "PΡР", "pρр", "TΤТт", "XxΧХх", "YΥ", "yуУ", "ZzΖ", "aа", "eе", "ΓГг", "ΠПп", "ΦФфϕ", "ϵЄє",
    # upper/lower pairs with the same shape once size is normalised
    "Ss", "Vv", "Ww", "Ψψ", "Øø", "Ŋŋ", "Њњ", "Ґґ",
    # found by training a small CNN on the candidates (most confused pairs at 32 px)
    "æœ",
    "Дд", "Жж", "Ии", "Йй", "Лл", "Цц", "Чч", "Шш", "Щщ", "Ъъ", "Ыы", "Ьь", "Ээ", "Юю", "Яя",
)
#: similarity above which a candidate counts as a look-alike of an already kept character
LOOKALIKE_THRESHOLD = 0.95

#: derive_classes() with the default fonts and the rule above (frozen; see module docstring)
GLYPH_CLASSES = ("0123456789ABCDEFGHJKLMNPQRSTUVWXYZabdefghijkmnpqrtuyΓΔΞΣΦΨΩαβγδεζηιλμνξπστυφχωБДЖИЙЛЦЧШЩЪЫЬЭЮЯбßÆæŒØÞþðŊłςϑϖϱϵЂЉЊЋҐђџ")

MASTER_FILL = 0.8
#: bump when the rendering code changes the images it produces (enters the version)
RENDER_VERSION = 1
LOOKALIKE_SIZE = 32


def font_dir() -> Path:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError("glyphs: matplotlib is not installed (its fonts are the glyph source)")
    return Path(list(spec.submodule_search_locations)[0]) / "mpl-data" / "fonts" / "ttf"


def resolve_fonts(names) -> list[Path]:
    out = []
    for name in names:
        p = Path(os.path.expanduser(name))
        if not p.is_absolute():
            p = font_dir() / name
        if not p.is_file():
            raise DatasetNotFoundError(f"glyphs: font file {p} not found")
        out.append(p)
    return out


@functools.lru_cache(maxsize=64)
def _cmap(path: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont  # deferred: only to render

    with TTFont(path, lazy=True) as f:
        return frozenset(f.getBestCmap())


def missing_glyphs(fonts, chars: str) -> dict[str, str]:
    """{font file: characters it has no glyph for} (checked with fontTools' cmap)."""
    missing = {Path(p).name: "".join(c for c in chars if ord(c) not in _cmap(str(p))) for p in fonts}
    return {name: miss for name, miss in missing.items() if miss}


@functools.lru_cache(maxsize=256)
def _font(path: str, px: int):
    from PIL import ImageFont  # deferred: PIL only to render

    return ImageFont.truetype(path, px)


def render_master(font_path, ch: str, size: int, canvas: int | None = None) -> np.ndarray:
    """One size-normalised master without stroke: uint8 (canvas × canvas), canvas defaults to 2*size."""
    return np.asarray(_master_image(font_path, ch, size, 0.0, canvas or 2 * size))


def _master_image(font_path, ch: str, size: int, stroke: float, canvas: int):
    from PIL import Image, ImageDraw  # deferred: PIL only to render

    px = 3 * size
    font = _font(str(font_path), px)
    sw = int(round(stroke * px))
    x0, y0, x1, y1 = font.getbbox(ch, stroke_width=sw, anchor="ls")
    pad = 2 + sw
    im = Image.new("L", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), 0)
    ImageDraw.Draw(im).text((pad - x0, pad - y0), ch, font=font, fill=255, anchor="ls",
                            stroke_width=sw, stroke_fill=255)
    bbox = im.getbbox()
    if bbox is None:
        raise ValueError(f"glyphs: {Path(font_path).name} draws nothing for {ch!r} (U+{ord(ch):04X})")
    g = im.crop(bbox)
    w, h = g.size
    s = MASTER_FILL * canvas / max(w, h)
    g = g.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BOX)
    out = Image.new("L", (canvas, canvas), 0)
    out.paste(g, ((canvas - g.size[0]) // 2, (canvas - g.size[1]) // 2))
    return out


def similarity_matrix(chars: str, fonts) -> np.ndarray:
    """Max over fonts of the Pearson correlation between the masters of each pair of characters."""
    best = None
    for f in fonts:
        imgs = np.stack([render_master(f, c, LOOKALIKE_SIZE, LOOKALIKE_SIZE).astype(np.float64).ravel()
                         for c in chars])
        imgs -= imgs.mean(1, keepdims=True)
        imgs /= np.linalg.norm(imgs, axis=1, keepdims=True)
        c = imgs @ imgs.T
        best = c if best is None else np.maximum(best, c)
    np.fill_diagonal(best, 1.0)
    return best


def derive_classes(groups=LOOKALIKE_GROUPS, candidates: str = CANDIDATES) -> tuple[str, dict[str, str]]:
    """Apply the look-alike rule with the default fonts. Returns (kept characters in priority order,
    {dropped: reason})."""
    sim = similarity_matrix(candidates, resolve_fonts(DEFAULT_FONTS))
    kept: list[int] = []
    dropped: dict[str, str] = {}
    for j, c in enumerate(candidates):
        mate = next((candidates[k] for k in kept if any(c in g and candidates[k] in g for g in groups)), None)
        k_best = max(kept, key=lambda k: sim[j, k], default=None)
        if mate is not None:
            dropped[c] = f"explicit group with {mate}"
        elif k_best is not None and sim[j, k_best] > LOOKALIKE_THRESHOLD:
            dropped[c] = f"similarity {sim[j, k_best]:.3f} with {candidates[k_best]}"
        else:
            kept.append(j)
    return "".join(candidates[k] for k in kept), dropped


# ------------------------------------------------------------------------------------ rendering

def _affine_inverse(rot_deg, scale, shear, tx, ty, size: int) -> tuple:
    """PIL AFFINE coefficients (output -> input) on a size × size canvas with centre c for the forward map
    p_out = c + t + scale * R(rot) @ Sh(shear) @ (p_in - c)."""
    th = math.radians(rot_deg)
    c, s = math.cos(th), math.sin(th)
    # A = scale * R @ [[1, shear], [0, 1]]
    a00, a01, a10, a11 = scale * c, scale * (c * shear - s), scale * s, scale * (s * shear + c)
    det = a00 * a11 - a01 * a10
    i00, i01, i10, i11 = a11 / det, -a01 / det, -a10 / det, a00 / det
    cs = size / 2
    cdx, cdy = cs + tx, cs + ty
    return (i00, i01, cs - (i00 * cdx + i01 * cdy), i10, i11, cs - (i10 * cdx + i11 * cdy))


def render_samples(chars: str, fonts, per_font: int, size: int, seed: int, split: str, masters: dict, *,
                   rotation: float, scale: float, shear: float, shift: float, stroke_max: float,
                   stroke_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Render ``per_font`` jittered samples of every (character, font); ``masters`` caches the master
    image of each (class, font, stroke level) across calls.

    Sample order: class-major, then font, then repetition. Returns x (N,1,size,size) uint8, y (N,) int64.
    """
    from PIL import Image  # deferred: PIL only to render

    n_font, k = len(fonts), len(chars)
    n = k * n_font * per_font
    rng = np.random.default_rng([int(seed), {"train": 0, "test": 1}[split]])
    level = rng.integers(0, stroke_levels, size=n)
    rot = rng.uniform(-rotation, rotation, size=n)
    sc = rng.uniform(1 - scale, 1 + scale, size=n)
    shr = rng.uniform(-shear, shear, size=n)
    txy = rng.uniform(-shift, shift, size=(n, 2)) * size
    y = np.repeat(np.arange(k, dtype=np.int64), n_font * per_font)
    font_idx = np.tile(np.repeat(np.arange(n_font), per_font), k)
    x = np.empty((n, 1, size, size), dtype=np.uint8)
    src = 2 * size
    strokes = [stroke_max * i / max(1, stroke_levels - 1) for i in range(stroke_levels)]
    for i in range(n):
        key = (int(y[i]), int(font_idx[i]), int(level[i]))
        m = masters.get(key)
        if m is None:
            m = masters[key] = _master_image(fonts[key[1]], chars[key[0]], size, strokes[key[2]], src)
        coeffs = _affine_inverse(rot[i], sc[i], shr[i], txy[i, 0] * 2, txy[i, 1] * 2, src)
        warped = m.transform((src, src), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
        x[i, 0] = np.frombuffer(warped.reduce(2).tobytes(), dtype=np.uint8).reshape(size, size)
    return x, y


#: the jitter options: spec key -> (default, maximum, description); all >= 0
JITTER = {
    "rotation": (10.0, 180, "max rotation (degrees)"),
    "scale": (0.1, 0.9, "scale jitter: factor in [1-scale, 1+scale]"),
    "shear": (0.15, 1, "max horizontal shear factor"),
    "shift": (0.06, 0.5, "max shift in x and y (fraction of size)"),
    "stroke_max": (0.03, 0.2, "largest stroke width added to the outline (fraction of the font size)"),
}


def _renderer_versions() -> dict:
    import PIL  # deferred: PIL only to render
    from PIL import features  # deferred: as above

    return {"pillow": PIL.__version__, "freetype2": features.version("freetype2")}


class Glyphs(Source):
    kind = "glyphs"
    description = ("characters of the Latin, Greek and Cyrillic alphabets and digits rendered from "
                   "matplotlib's TrueType faces with seeded affine and stroke jitter; look-alikes dropped")
    schema = {
        "num_classes": {"type": "integer", "minimum": 2, "maximum": len(GLYPH_CLASSES), "default": 100,
                        "description": "number of classes: the first num_classes characters of GLYPH_CLASSES"},
        "train_per_font": {"type": "integer", "minimum": 1, "default": 3,
                           "description": "train samples per class and font"},
        "test_per_font": {"type": "integer", "minimum": 1, "default": 1,
                          "description": "test samples per class and font"},
        "size": {"type": "integer", "minimum": 8, "maximum": 256, "default": 32, "description": "image side (px)"},
        "seed": {"type": "integer", "minimum": 0, "default": 0, "description": "jitter seed"},
        "fonts": {"type": "array", "items": {"type": "string"}, "minItems": 1, "default": list(DEFAULT_FONTS),
                  "description": "font files: names in matplotlib's mpl-data/fonts/ttf or absolute paths"},
        **{key: {"type": "number", "minimum": 0, "maximum": maximum, "default": default, "description": text}
           for key, (default, maximum, text) in JITTER.items()},
        "stroke_levels": {"type": "integer", "minimum": 1, "maximum": 8, "default": 3,
                          "description": "stroke widths 0..stroke_max in this many even steps"},
    }
    non_content = frozenset()

    def num_classes(self, opts):
        return int(opts["num_classes"])

    def identity(self, opts):
        fonts = [{"name": p.name, "size": p.stat().st_size} for p in resolve_fonts(opts["fonts"])]
        return {"classes": GLYPH_CLASSES[: opts["num_classes"]], "fonts": fonts, "renderer": _renderer_versions(),
                "master_fill": MASTER_FILL, "render_version": RENDER_VERSION}

    def unavailable(self, opts):
        try:
            resolve_fonts(opts["fonts"])
        except DatasetNotFoundError as exc:
            return str(exc)
        return None

    def load(self, opts):
        chars = GLYPH_CLASSES[: opts["num_classes"]]
        fonts = resolve_fonts(opts["fonts"])
        missing = missing_glyphs(fonts, chars)
        if missing:
            raise SpecError(f"glyphs: these fonts lack characters of the class list: {missing}; "
                            f"remove them from 'fonts' or lower num_classes")
        jitter = {key: opts[key] for key in (*JITTER, "stroke_levels")}
        masters: dict = {}  # shared by the splits

        def render(split):
            return render_samples(chars, fonts, opts[f"{split}_per_font"], opts["size"], opts["seed"], split,
                                  masters, **jitter)

        (trx, try_), (tex, tey) = render("train"), render("test")
        info = {
            "generator": "gnc.data.sources.glyphs.render_samples",
            "params": {"size": opts["size"], "seed": opts["seed"], "train_per_font": opts["train_per_font"],
                       "test_per_font": opts["test_per_font"], **jitter, "master_fill": MASTER_FILL,
                       "render_version": RENDER_VERSION},
            "fonts": {p.name: hash_file(p) for p in fonts},
            "renderer": _renderer_versions(),
            "lookalike_rule": {"threshold": LOOKALIKE_THRESHOLD, "groups": list(LOOKALIKE_GROUPS),
                               "candidates": CANDIDATES},
            "sample_order": "class, font, repetition",
        }
        return RawData(trx, try_, tex, tey, list(chars), info, class_ids=[f"U+{ord(c):04X}" for c in chars])
