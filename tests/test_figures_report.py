"""The Snakemake-report captions of the figures render without RST warnings: the generic caption
(workflow/report/figure.rst, or a figure's own caption file named in the registry) includes the
generated per-figure caption (``<prefix>.caption.rst`` written by save_figure), and the front page
includes the index of the figures drawn and not drawn."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import gnc.figures as F

REPORT = Path(__file__).resolve().parents[1] / "workflow" / "report"


class _Snakemake:  # the object Snakemake passes to caption templates
    def __init__(self, output, config=None):
        self.output = output
        self.params = []
        self.wildcards = []
        self.config = config or {}


def _render(path: Path, output, config=None) -> str:
    from docutils.core import publish_parts
    from jinja2 import Environment

    env = Environment(trim_blocks=True, lstrip_blocks=True)  # as in snakemake.report
    text = env.from_string(path.read_text()).render(snakemake=_Snakemake(output, config), categories={}, files={})
    # halt_level 2: any RST warning (e.g. an unknown reference target from a stray "name_") raises
    return publish_parts(text, writer="html", settings_overrides={"halt_level": 2})["body"]


@pytest.mark.parametrize("kind", sorted(F.REGISTRY))
def test_report_caption_renders_and_includes_generated_caption(kind, tmp_path, monkeypatch):
    rst = REPORT / F.REGISTRY[kind].report_caption
    assert rst.is_file()
    monkeypatch.chdir(tmp_path)  # the report resolves output paths relative to the workdir
    frame = pd.DataFrame({"dataset": ["glyphs_v2*"], "arch": ["smallcnn"], "tau": [1 / 7], "epoch": [3],
                          "variant": ["normalized-ce"]})
    frame.attrs.update({"missing": [{"tau": 0.2, "seed": 1, "metrics": ["ncc_test_acc", "gnc2_"]}],
                        "seeds": [0, 1], "notes": ["a note with `backticks` and |pipes|"]})
    caption = F.figure_caption(kind, frame=frame) if kind != "sphere" else "sphere caption ncc_test_acc_"
    (tmp_path / "fig.caption.rst").write_text(F.rst_escape(caption) + "\n")
    html = _render(rst, ["fig.png", "fig.caption.rst"])
    assert "System Message" not in html
    assert "1/7" in html or kind == "sphere"
    assert F.REGISTRY[kind].title in html or kind == "sphere"


def test_captions_say_different_things():
    """No two figures share a description, and no description promises bands (the caption's seed
    sentence says when bands are drawn)."""
    texts = [spec.description for spec in F.REGISTRY.values()]
    assert len(set(texts)) == len(texts)
    assert not [t for t in texts if "band" in t]


def test_front_page_lists_figures_drawn_and_not_drawn(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = [{"variant": "normalized-ce", "dataset": "glyphs", "arch": "smallcnn", "tau": t, "d": 10, "K": 100,
             "seed": 0} for t in (1.0, 0.1)]
    (tmp_path / "res" / "figures").mkdir(parents=True)
    (tmp_path / "res" / "figures" / "index.rst").write_text(F.registry.figure_index_rst(F.plan_figures(runs)))
    html = _render(REPORT / "workflow.rst", [], {"results": "res", "figures": {"formats": ["png"]}})
    assert "System Message" not in html
    assert "Temperature sweep" in html and "Not drawn in this study" in html
    assert "no two runs that differ only in the architecture" in html
