"""The slit spectroscopy simulators and their JWST product writer."""

from __future__ import annotations

import numpy as np
import pytest

from daskod import datasets
from daskod.flag._dq import DO_NOT_USE, NON_SCIENCE


@pytest.fixture(scope="module")
def fixed_slit():
    return datasets.make_nirspec_slits("fixed_slit", seed=1)


@pytest.fixture(scope="module")
def mos2():
    return datasets.make_nirspec_slits("mos", n_detectors=2, n_columns=160, seed=2)


@pytest.fixture(scope="module")
def lrs():
    return datasets.make_lrs_exposures(3, seed=3)


def test_seeded_reproducible_and_seed_dependent():
    a = datasets.make_nirspec_slits("mos", n_columns=120, seed=5)
    b = datasets.make_nirspec_slits("mos", n_columns=120, seed=5)
    c = datasets.make_nirspec_slits("mos", n_columns=120, seed=6)
    for x, y in zip(a.exposures, b.exposures, strict=True):
        np.testing.assert_array_equal(x.sci, y.sci)
        np.testing.assert_array_equal(x.dq, y.dq)
    assert not np.array_equal(a.exposures[0].sci, c.exposures[0].sci, equal_nan=True)


@pytest.mark.parametrize("name", ["fixed_slit", "mos2", "lrs"])
def test_noise_model_and_unusable_pixels(name, request):
    sim = request.getfixturevalue(name)
    n_cr = 0
    for exp in sim.exposures:
        bad = (exp.dq & DO_NOT_USE) != 0
        for arr in (exp.sci, exp.err, exp.var_rnoise, exp.var_poisson, exp.var_flat):
            np.testing.assert_array_equal(np.isnan(arr), bad)
        good = ~bad
        np.testing.assert_allclose(exp.err[good] ** 2,
                                   exp.var_rnoise[good] + exp.var_poisson[good], rtol=1e-5)
        assert np.all(exp.var_flat[good] == 0)
        cr = sim.cosmic_rays[exp.name]
        n_cr += int(cr.sum())
        assert not (cr & bad).any()
        assert np.all(sim.cr_snr[exp.name][cr] >= 4.0)
        assert np.all(sim.cr_snr[exp.name][~cr] == 0)
    assert n_cr > 20


def test_slit_wcs_has_the_reference_frames(fixed_slit):
    exp = fixed_slit.exposures[0]
    wcs = exp.wcs
    assert wcs.available_frames == ["detector", "slit_frame", "world"]
    ny, nx = exp.shape
    assert tuple(map(tuple, wcs.bounding_box.bounding_box(order="F"))) == (
        (-0.5, nx - 0.5), (-0.5, ny - 0.5))
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    ra, dec, lam = wcs(x, y)
    finite = np.isfinite(lam)
    assert finite[:, 0].all() and not finite[:, -1].any()   # NaN past the red end
    xb, yb = wcs.invert(ra, dec, lam)
    assert np.nanmax(np.abs(xb - x)) < 1e-6 and np.nanmax(np.abs(yb - y)) < 1e-6
    s2d = wcs.get_transform("slit_frame", "detector")
    assert np.isfinite(s2d(0.0, 0.1, np.nanmedian(lam))).all()
    # Rows outside the slit's length: NaN and NON_SCIENCE | DO_NOT_USE.
    outside = (exp.dq & NON_SCIENCE) != 0
    assert outside[0].all() and outside[-1].all()
    assert np.all(exp.dq[outside] & DO_NOT_USE)


def test_nods_move_the_source_along_the_slit(fixed_slit):
    point = fixed_slit.by_source()["1"]
    rows = []
    for exp in point:
        column = np.nanmedian(np.nan_to_num(exp.sci[:, 60:120]), axis=1)
        rows.append(int(np.nanargmax(column)))
    # 1 arcsec nods at 10 rows per arcsec: (0, +1, -1) arcsec -> source at 0, -10, +10 rows.
    assert abs((rows[1] - rows[0]) + 10) <= 1
    assert abs((rows[2] - rows[0]) - 10) <= 1


def test_two_detector_mos_groups_and_wavelengths(mos2):
    sources = mos2.by_source()
    assert [len(v) for v in sources.values()] == [6, 6, 6, 3]
    first = next(iter(sources.values()))
    assert len({e.group_id for e in first}) == 3
    assert first[0].group_id == first[1].group_id
    assert first[0].detector == "NRS1" and first[1].detector == "NRS2"
    lam1 = first[0].wcs(*np.mgrid[0:1, 0:160][::-1].astype(float))[2]
    lam2 = first[1].wcs(*np.mgrid[0:1, 0:160][::-1].astype(float))[2]
    assert np.nanmax(lam1) < np.nanmin(lam2)
    assert all(e.meta["source_name"] for e in first)


def test_lrs_disperses_along_y_inside_a_bounding_box(lrs):
    exp = lrs.exposures[0]
    assert exp.meta["dispersion_direction"] == 2
    ny, nx = exp.shape
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    ra, _, lam = exp.wcs(x, y)
    col = int(nx / 2)
    inside = np.isfinite(lam[:, col])
    assert np.all(np.diff(lam[inside, col]) < 0)        # blue at the top
    assert np.isnan(ra[:, 0]).all() and np.isnan(ra[0]).all()
    assert lrs.by_source().keys() == {"all"}


def test_written_products_read_back(tmp_path, mos2, lrs):
    stdatamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    out = datasets.write_spec_cal_files(mos2, tmp_path / "mos")
    assert len(out["files"]) == len(mos2.products)
    with stdatamodels.open(out["files"][0]) as model:
        assert type(model).__name__ == "MultiSlitModel"
        product = mos2.products[0]
        assert [s.name for s in model.slits] == [e.meta["slit_name"] for e in product.items]
        slit, exp = model.slits[1], product.items[1]
        assert slit.source_name == exp.meta["source_name"]
        assert (slit.xstart, slit.ystart) == (exp.meta["xstart"], exp.meta["ystart"])
        assert slit.meta.wcsinfo.dispersion_direction == 1
        np.testing.assert_array_equal(slit.data, exp.sci)
        y, x = np.mgrid[0:exp.shape[0], 0:exp.shape[1]].astype(float)
        np.testing.assert_array_equal(np.array(slit.meta.wcs(x, y)), np.array(exp.wcs(x, y)))
        assert model.meta.exposure.type == "NRS_MSASPEC"
    out = datasets.write_spec_cal_files(lrs, tmp_path / "lrs")
    with stdatamodels.open(out["files"][0]) as model:
        assert type(model).__name__ == "ImageModel"
        assert model.meta.wcsinfo.dispersion_direction == 2
        assert model.meta.exposure.type == "MIR_LRS-FIXEDSLIT"
