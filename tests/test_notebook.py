"""Every notebook runs top to bottom (their cells assert on the results) and uses only daskod's
public API."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
#: Per notebook: text its outputs must show.
EXPECTED = {
    "quickstart.ipynb": ["recall(>10 sigma)", "6.0 5.0 1.8 0.7"],
    "tso.ipynb": ["recall(>10 sigma)", "flags on the star's core that are not cosmic rays: 0",
                  "coron recall"],
    "ifu.ipynb": ["same in every exposure: True"],
    "distributed.ipynb": ["identical flags:"],
}


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebooks_use_public_api_only(name):
    source = "\n".join("".join(c["source"]) for c in
                       json.loads((NOTEBOOKS / name).read_text())["cells"]
                       if c["cell_type"] == "code")
    assert not re.search(r"daskod(\.\w+)*\._\w+", source), "private daskod module used"
    assert "matplotlib.use(" not in source


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_executes(name, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            outputs.append(out.get("text", ""))
            outputs.append(str(out.get("data", {}).get("text/plain", "")))
    text = "".join(outputs)
    for expected in EXPECTED[name]:
        assert expected in text, expected
    if name == "quickstart.ipynb":
        assert (tmp_path / "quickstart.png").stat().st_size > 10_000
        figures = [out for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
        assert len(figures) == 2  # result.plot() shown once, the zoom once
