"""Per-phase progress on a small synthetic Dask graph whose key names carry phase prefixes."""

from __future__ import annotations

import io
import pickle

import dask
import dask.array as da
import numpy as np
import pytest
from dask.base import tokenize

from daskod import progress as prog
from daskod.progress import PhaseNamer, PhaseProgress, key_prefix

PHASES = {"daskod-drizzle": "resample", "daskod-median": "median", "daskod-flag": "flag"}


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _add(block, value):
    return block + value


def synthetic_graph():
    """drizzle (16 blocks) -> median (4 blocks, rechunked) -> flag (16 blocks) + an
    unlabelled sum; every phase's tasks named with its prefix and a token."""
    x = da.ones((64, 64), chunks=16)
    drizzle = da.map_blocks(_add, x, 1.0, dtype=x.dtype,
                            name="daskod-drizzle-" + tokenize(x, 1))
    wide = drizzle.rechunk(32)
    median = da.map_blocks(_add, wide, 2.0, dtype=x.dtype,
                           name="daskod-median-" + tokenize(wide, 2))
    flag = da.map_blocks(_add, median.rechunk(16), 3.0, dtype=x.dtype,
                         name="daskod-flag-" + tokenize(median, 3))
    return flag, flag.sum()


def test_key_prefix():
    token = "4f3a9c0e1b2d4e5f8a7b6c5d4e3f2a1b"
    assert key_prefix((f"daskod-drizzle-{token}", 0, 1)) == "daskod-drizzle"
    assert key_prefix(f"median-tile-{token}-{token[:8]}") == "median-tile"
    assert key_prefix("finalize") == "finalize"
    assert key_prefix(("rechunk-merge-" + token, 3)) == "rechunk-merge"


def test_phase_namer_exact_longest_prefix_other_and_pickles():
    namer = PhaseNamer({"drizzle": "resample", "drizzle-weights": "threshold"})
    assert namer(("drizzle-abcdef012345", 0)) == "resample"
    assert namer(("drizzle-weights-abcdef012345", 0)) == "threshold"
    assert namer(("drizzle-tile-abcdef012345", 0)) == "resample"   # starts with a prefix
    assert namer("getitem-abcdef012345") == "other"
    assert pickle.loads(pickle.dumps(namer))(("drizzle-abcdef012345", 1)) == "resample"


@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
def test_counts_each_phase_of_one_graph(scheduler):
    flag, total = synthetic_graph()
    stream = FakeTerminal()
    with PhaseProgress(PHASES, display="text", stream=stream, minimum=0, dt=0.01) as bar:
        values, s = dask.compute(flag, total, scheduler=scheduler)
    assert np.all(values == 7.0)
    assert s == 64 * 64 * 7.0
    counts = bar.counts()
    assert counts["resample"] == (16, 16)
    assert counts["median"] == (4, 4)
    assert counts["flag"] == (16, 16)
    done, n = counts["other"]  # rechunks, the sum: unknown prefixes, still counted
    assert done == n > 0
    assert list(counts)[-1] == "other"
    text = stream.getvalue()
    final = text.rsplit("\r", 1)[-1]
    assert final.endswith("\n")
    assert "resample 16/16" in final and "median 4/4" in final and "flag 16/16" in final


def test_silent_when_stderr_is_not_a_terminal(capsys):
    flag, _ = synthetic_graph()
    with PhaseProgress(PHASES, minimum=0, dt=0.01) as bar:  # stderr is captured: no tty
        flag.compute(scheduler="synchronous")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert bar.display is None
    assert bar.counts()["resample"] == (16, 16)


def test_text_goes_to_stderr_not_stdout(capsys, monkeypatch):
    monkeypatch.setattr("sys.stderr", FakeTerminal())
    import sys

    flag, _ = synthetic_graph()
    with PhaseProgress(PHASES, minimum=0, dt=0.01):
        flag.compute(scheduler="synchronous")
    assert capsys.readouterr().out == ""
    assert "resample 16/16" in sys.stderr.getvalue()


def test_accumulates_over_several_computes_and_stays_quiet_when_short():
    flag, total = synthetic_graph()
    stream = FakeTerminal()
    with PhaseProgress(PHASES, display="text", stream=stream, minimum=60) as bar:
        flag.compute(scheduler="synchronous")
        total.compute(scheduler="synchronous")
    assert bar.counts()["resample"] == (32, 32)
    assert stream.getvalue() == ""  # finished before `minimum` seconds: nothing drawn


def test_widget_in_a_notebook(monkeypatch):
    pytest.importorskip("ipywidgets")
    shown = []
    monkeypatch.setattr(prog, "in_notebook", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    flag, _ = synthetic_graph()
    with PhaseProgress(PHASES, minimum=0, dt=0.01) as bar:
        flag.compute(scheduler="synchronous")
    assert isinstance(bar.display, prog._WidgetDisplay)
    assert len(shown) == 1
    rows = bar.display.rows
    assert rows["resample"][0].value == rows["resample"][0].max == 16
    assert rows["median"][0].value == 4
    assert rows["flag"][1].value.startswith("16/16 tasks")


def test_bad_display_is_refused():
    with pytest.raises(ValueError, match="display must be"):
        PhaseProgress(PHASES, display="bar")


def test_distributed_bar_and_dashboard_link_on_the_terminal_stream(capsys):
    distributed = pytest.importorskip("distributed")
    flag, _ = synthetic_graph()
    stream = FakeTerminal()
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1,
                            dashboard_address="127.0.0.1:0") as client:
        futures = client.compute([flag])
        prog.track_futures(futures, client=client, phases=PHASES, stream=stream)
        result = client.gather(futures)[0]
        link = client.dashboard_link
    assert np.all(result == 7.0)
    text = stream.getvalue()
    assert f"Dask dashboard: {link}" in text
    assert "100% Completed" in text
    assert capsys.readouterr().out == ""
