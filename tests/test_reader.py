"""The public JWST reader, Exposure.from_datamodel, and the implausible-flags warning."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import daskod
from daskod import Exposure, ImplausibleFlagsWarning, datasets
from daskod._flag_fractions import check_flag_fractions

dm = pytest.importorskip("stdatamodels.jwst.datamodels")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    """Four dithered 96 x 112 exposures, sky 0.5-1.5 e/s NOT subtracted (in meta.background)."""
    sim = datasets.make_dithered_imaging(n_exposures=4, shape=(96, 112), seed=32)
    return sim, datasets.write_cal_files(sim.exposures, tmp_path_factory.mktemp("reader"))


def _usable(exposures):
    return [int(np.count_nonzero(((np.asarray(e.dq[...]) & 1) == 0)
                                 & np.isfinite(np.asarray(e.sci[...])))) for e in exposures]


def test_read_jwst_carries_what_the_run_needs(products):
    sim, written = products
    exps = daskod.read_jwst(written["asn"])
    assert [e.name for e in exps] == [os.path.basename(p) for p in written["files"]]
    for exp, truth in zip(exps, sim.exposures, strict=True):
        assert exp.background_level == pytest.approx(truth.background_level)
        assert exp.background_subtracted is False
        assert exp.exposure_time == truth.exposure_time
        assert exp.group_id.startswith("jw01234001001_02101_")
        assert exp.meta["exp_type"] == "NRC_IMAGE" and exp.detector == "NRCB1"
        assert exp.wcsinfo["s_region"].startswith("POLYGON ICRS")
        for key in ("ra_ref", "dec_ref", "roll_ref", "v3yangle", "vparity"):
            assert exp.wcsinfo[key] == pytest.approx(truth.wcsinfo[key])
    assert len({e.group_id for e in exps}) == 4


def test_members_share_one_asdf_configuration(products, monkeypatch):
    """A new asdf configuration costs ~75 ms: the reader makes at most one for all members
    (none when reading without validation is asdf's default already, as in asdf 6)."""
    import asdf

    made = []
    original = asdf.config_context

    def counting():
        made.append(1)
        return original()

    monkeypatch.setattr(asdf, "config_context", counting)
    before = asdf.get_config().validate_on_read
    for validating in (False, True):
        made.clear()
        with original() as config:
            config.validate_on_read = validating
            exps = daskod.read_jwst(products[1]["asn"])
            assert asdf.get_config().validate_on_read is validating  # left as it was
        assert len(exps) == 4 and all(e.wcs is not None for e in exps)
        assert len(made) == int(validating)
    assert asdf.get_config().validate_on_read is before


def test_the_command_line_reads_the_same_way(products, tmp_path):
    """``daskod run`` and detect_outliers(read_jwst(...)) give the same flags."""
    _sim, written = products
    result = daskod.detect_outliers(daskod.read_jwst(written["asn"]), scheduler="synchronous")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "daskod.cli", "run", written["asn"], "-o",
                           str(out), "--no-progress"], capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    for k, path in enumerate(written["files"]):
        crf = out / os.path.basename(path).replace("_cal", "_crf")
        with dm.open(str(crf)) as model:
            np.testing.assert_array_equal(model.dq, result.dq[k])
    assert 0 < sum(result.n_flagged)


def test_from_datamodel_equals_the_reader(products):
    _sim, written = products
    lazy = daskod.read_jwst(written["asn"])
    for path, ref in zip(written["files"], lazy, strict=True):
        with dm.open(path) as model:
            exp = Exposure.from_datamodel(model)
            assert exp.name == ref.name and exp.group_id == ref.group_id
            assert exp.background_level == ref.background_level
            assert exp.background_subtracted is ref.background_subtracted
            assert exp.wcsinfo == ref.wcsinfo and exp.exposure_time == ref.exposure_time
            np.testing.assert_array_equal(exp.sci, np.asarray(ref.sci[...]))
            assert exp.var_rnoise is not None
            assert Exposure.from_datamodel(model, group_id="g").group_id == "g"


def test_handmade_exposures_without_background_are_warned_about(products):
    """issue 14's trap: Exposures built by hand from datamodels without the background
    metadata flag a large share of the detector; the warning names them and the cause.
    The same files through from_datamodel flag little and give no warning."""
    _sim, written = products
    handmade, proper = [], []
    for path in written["files"]:
        with dm.open(path) as m:
            handmade.append(Exposure(sci=np.array(m.data), err=np.array(m.err),
                                     dq=np.array(m.dq), wcs=m.meta.wcs,
                                     var_rnoise=np.array(m.var_rnoise),
                                     name=os.path.basename(path)))
            proper.append(Exposure.from_datamodel(m))
            proper[-1] = proper[-1].copy_with(sci=np.array(m.data), err=np.array(m.err),
                                              dq=np.array(m.dq),
                                              var_rnoise=np.array(m.var_rnoise))
    # The run itself warns, naming the exposures and the likely causes.
    with pytest.warns(ImplausibleFlagsWarning, match="background metadata missing") as record:
        bad = daskod.detect_outliers(handmade, scheduler="synchronous")
    with pytest.warns(ImplausibleFlagsWarning):  # the same, from the public function
        warned = check_flag_fractions([e.name for e in handmade], bad.n_flagged,
                                      _usable(handmade), threshold=0.05)
    assert warned and all(name in str(record[0].message) for name, _ in warned)
    assert len(warned) >= 2 and max(f for _, f in warned) > 0.1
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ImplausibleFlagsWarning)
        good = daskod.detect_outliers(proper, scheduler="synchronous")  # no warning
        assert check_flag_fractions([e.name for e in proper], good.n_flagged,
                                    _usable(proper)) == []
    assert sum(good.n_flagged) * 10 < sum(bad.n_flagged)


def test_threshold_is_an_option():
    names, flagged, usable = ["a", "b"], [30, 2], [1000, 1000]
    with pytest.warns(ImplausibleFlagsWarning, match=r"'a' \(3.0 %\)"):
        assert check_flag_fractions(names, flagged, usable, threshold=0.01) == [("a", 0.03)]
    with daskod.set_options(implausible_flag_fraction=0.02), \
            pytest.warns(ImplausibleFlagsWarning, match="more than 2 %"):
        check_flag_fractions(names, flagged, usable)
    with daskod.set_options(implausible_flag_fraction=None):
        assert check_flag_fractions(names, [900, 900], usable) == []
    assert check_flag_fractions(names, flagged, usable) == []  # default 5 %: quiet
    with pytest.raises(ValueError, match="implausible_flag_fraction"):
        daskod.set_options(implausible_flag_fraction=1.5)
    with pytest.raises(ValueError, match="one entry per exposure"):
        check_flag_fractions(names, [1], usable)
