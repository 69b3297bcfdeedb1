"""Short text and HTML reprs of results, exposures and cubes: size, content, escaping, and no
Dask compute triggered by looking at a lazy result."""

from __future__ import annotations

from html.parser import HTMLParser

import dask.array as da
import numpy as np
import pytest
from dask.callbacks import Callback

import daskod
from daskod import datasets

VOID = {"br", "hr", "img", "input", "meta", "link", "col", "wbr"}


class _TagChecker(HTMLParser):
    """Checks that every opened tag is closed in order and collects the text."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check_html(markup: str) -> str:
    parser = _TagChecker()
    parser.feed(markup)
    parser.close()
    assert not parser.errors, parser.errors
    assert not parser.stack, f"unclosed tags {parser.stack}"
    return "".join(parser.text)


class CountComputes(Callback):
    """Counts Dask computes (each call of a local scheduler)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def _start(self, dsk):
        self.count += 1


@pytest.fixture(scope="module")
def sim():
    return datasets.make_dithered_imaging(n_exposures=8, shape=(64, 64), seed=3)


@pytest.fixture(scope="module")
def result(sim):
    return daskod.detect_outliers(sim.exposures, tile_size=32, scheduler="synchronous")


def test_result_repr_is_short_and_says_what_matters(result):
    text = repr(result)
    assert len(text) < 2000
    assert "dataclass" not in text and "array(" not in text
    assert "COMPLETE" in text and "imaging" in text and "8 exposures" in text
    assert "uint32" in text and "numpy" in text
    for exp, n in zip(result.exposures, result.n_flagged, strict=True):
        line = next(line for line in text.splitlines() if exp.name in line)
        assert f" {int(n)} px" in line
    assert f"total   {sum(result.timings.values()):.2f}" in text
    assert "snr='5.0 4.0'" in text


def test_result_repr_of_many_exposures_is_elided():
    sim = datasets.make_dithered_imaging(n_exposures=30, shape=(32, 32), seed=1,
                                         n_stars=10, n_cosmic_rays=10)
    # 10 cosmic rays on a 32 x 32 detector are ~5 % of it: not the warning's concern here.
    with daskod.set_options(implausible_flag_fraction=None):
        result = daskod.detect_outliers(sim.exposures, tile_size=32, scheduler="synchronous")
    text = repr(result)
    assert len(text) < 2000
    assert "more)" in text
    assert result.exposures[0].name in text and result.exposures[-1].name in text
    assert result.exposures[15].name not in text


def test_exposure_and_cube_reprs_are_short(sim):
    text = repr(sim.exposures[0])
    assert len(text) < 2000
    assert "(64, 64)" in text and "float32" in text and "gwcs.WCS" in text
    assert "not subtracted" in text
    cube = datasets.make_tso_cube(nints=20, shape=(16, 32)).cube
    text = repr(cube)
    assert len(text) < 2000
    assert "20 integrations of (16, 32)" in text and "NRC_TSIMAGE" in text
    lazy = daskod.Cube(sci=da.zeros((5, 8, 8), chunks=(1, 8, 8)), err=np.ones((5, 8, 8)),
                       dq=np.zeros((5, 8, 8), np.uint32))
    assert "dask (lazy), 5 chunks of (1, 8, 8)" in repr(lazy)


def test_zarr_inputs_say_so(tmp_path):
    sim = datasets.make_dithered_imaging(n_exposures=2, shape=(32, 32), seed=1,
                                         store=str(tmp_path / "sim.zarr"))
    assert "zarr array (read on demand)" in repr(sim.exposures[0])


def test_lazy_result_repr_triggers_no_compute(sim):
    lazy = daskod.detect_outliers(sim.exposures, tile_size=32, compute=False,
                                  scheduler="synchronous")
    exp = sim.exposures[0].copy_with(sci=da.from_array(np.asarray(sim.exposures[0].sci),
                                                       chunks=16))
    with CountComputes() as counter:
        text = repr(lazy)
        markup = lazy._repr_html_()
        exp_text = repr(exp) + exp._repr_html_()
    assert counter.count == 0
    assert len(text) < 2000
    assert "not computed" in text and "dask (lazy)" in text
    assert "temporary, removed with this result" in text
    assert "not computed" in check_html(markup)
    assert "dask (lazy), 16 chunks of (16, 16)" in exp_text
    # Computing the counts afterwards works, and then the repr shows them.
    with CountComputes() as counter:
        stats = lazy.stats
    assert counter.count > 0
    assert stats[0]["n_flagged"] >= 0


def test_html_is_balanced_and_escapes_names(sim):
    evil = sim.exposures[0].copy_with(name="<script>alert('x')</script>&co")
    markup = evil._repr_html_()
    assert "<script>" not in markup
    assert "&lt;script&gt;" in markup
    assert "<script>alert('x')</script>&co" in check_html(markup)
    exposures = [evil, *sim.exposures[1:4]]
    result = daskod.detect_outliers(exposures, tile_size=32, scheduler="synchronous")
    markup = result._repr_html_()
    assert "<script>" not in markup
    text = check_html(markup)
    assert "COMPLETE" in text and "New outliers" in text
    cube = datasets.make_coron_cube(nints=4, shape=(16, 16)).cube
    assert "integrations" in check_html(cube._repr_html_())


def test_skipped_and_cube_results_have_short_reprs(sim):
    with pytest.warns(daskod.SkippedWarning):
        skipped = daskod.detect_outliers(sim.exposures[:1])
    text = repr(skipped)
    assert "SKIPPED" in text and "at least 2" in text and len(text) < 2000
    cube = datasets.make_tso_cube(nints=30, shape=(16, 32)).cube
    result = daskod.detect_outliers(cube, rolling_window_width=5, scheduler="synchronous")
    text = repr(result)
    assert "mode tso, cube" in text and "(30, 16, 32)" in text and len(text) < 2000
    check_html(result._repr_html_())
