"""Issue 18 point 2: the architecture diagrams are drawn by code and the committed SVGs are what it draws."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from jsdlib.apps import diagrams  # noqa: E402


def _texts(fig) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)


def test_jsd_diagram_names_every_part():
    text = _texts(diagrams.jsd_architecture())
    for part in ("W_t", "W_v", "sparse head", "S_d = D_i D_t^T / tau", "S_s = Z_i Z_t^T", "S_x = w1 S_d",
                 "log(1 + ReLU(E LN(W_p d)))", "self-KD", "(frozen)", "loss = (L + L') / 2 + (eta_t L1(Z_t)",
                 "L' = (lam1 L'_d + lam2 L'_s) / 2"):
        assert part in text, part


def test_cmc_diagram_follows_its_list_sizes():
    text = _texts(diagrams.cmc_pipeline(k=64, k_ce=8))
    assert "top K = 64" in text and "top K' = 8" in text and "[q; c_1 .. c_64]" in text and "8 forward passes" in text


def test_committed_svgs_are_reproducible(tmp_path):
    written = diagrams.write_figures(tmp_path)
    again = diagrams.write_figures(tmp_path / "again")
    for a, b in zip(written, again):
        assert a.read_bytes() == b.read_bytes()
        # the committed SVG holds the same texts (bytes may differ under another matplotlib version)
        committed = diagrams.FIGURES / a.name
        assert _svg_texts(committed) == _svg_texts(a), f"{committed} is stale: python -m jsdlib.apps.diagrams"
        assert _svg_texts(a)      # text kept as text (svg.fonttype none), so the figure is searchable


def _svg_texts(path) -> list[str]:
    import re
    return sorted(re.findall(r"<text[^>]*>([^<]*)</text>", path.read_text(encoding="utf-8")))
