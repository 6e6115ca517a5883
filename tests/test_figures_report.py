"""The Snakemake-report captions of the figures (workflow/report/<kind>.rst) render without RST warnings,
and the generated per-figure caption (``<prefix>.caption.rst`` written by save_figure) is included."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import gnc.figures as F

REPORT = Path(__file__).resolve().parents[1] / "workflow" / "report"


class _Snakemake:  # the object Snakemake passes to caption templates (only .output is used)
    def __init__(self, output):
        self.output = output
        self.params = []
        self.wildcards = []
        self.config = {}


def _render(path: Path, output) -> str:
    from docutils.core import publish_parts
    from jinja2 import Environment

    env = Environment(trim_blocks=True, lstrip_blocks=True)  # as in snakemake.report
    text = env.from_string(path.read_text()).render(snakemake=_Snakemake(output), categories={}, files={})
    # halt_level 2: any RST warning (e.g. an unknown reference target from a stray "name_") raises
    return publish_parts(text, writer="html", settings_overrides={"halt_level": 2})["body"]


@pytest.mark.parametrize("kind", sorted(F.FIGURES))
def test_report_caption_renders_and_includes_generated_caption(kind, tmp_path, monkeypatch):
    rst = REPORT / f"{kind}.rst"
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
    # without a declared caption output the static text alone renders
    html2 = _render(rst, ["fig.png"])
    assert len(html2) > 100 and "include" not in html2
