"""JWST products read and written a block at a time: no array whole in memory, the content
the reference writes (new DQ, NaN matching, metadata), metadata read without pixels, and the
reference's weight threshold computed exactly in a few bytes per pixel."""

from __future__ import annotations

import math
import tracemalloc
import warnings

import numpy as np
import pytest

from daskod import datasets
from daskod.flag._dq import DO_NOT_USE, OUTLIER
from daskod.io._regions import regions, row_blocks

dm = pytest.importorskip("stdatamodels.jwst.datamodels")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class RecordingArray:
    """A DQ source that records every block asked of it (shape, dtype, ``__getitem__``)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.shape = values.shape
        self.dtype = values.dtype
        self.sizes: list[int] = []

    def __getitem__(self, key):
        out = self.values[key]
        self.sizes.append(out.size)
        return out


def _cube_file(path, nints=48, shape=(40, 64), seed=0):
    """A CubeModel calints with NaN in SCI and ERR at pixels DQ does not mark."""
    rng = np.random.default_rng(seed)
    cube = datasets.make_tso_cube(nints=nints, shape=shape, seed=seed).cube
    sci = np.array(cube.sci, dtype=np.float32)
    err = np.array(cube.err, dtype=np.float32)
    dq = np.array(cube.dq, dtype=np.uint32)
    sci[rng.random(sci.shape) < 0.002] = np.nan
    err[rng.random(err.shape) < 0.002] = np.nan
    model = dm.CubeModel(data=sci, err=err, dq=dq,
                         var_rnoise=np.array(cube.var_rnoise, dtype=np.float32))
    model.meta.telescope = "JWST"
    model.meta.exposure.type = "NRC_TSIMAGE"
    model.meta.exposure.nints = nints
    model.meta.visit.tsovisit = True
    model.save(str(path))
    model.close()
    return str(path)


def _new_dq(src, seed=1):
    with dm.open(src) as model:
        dq = np.array(model.dq)
    rng = np.random.default_rng(seed)
    dq[rng.random(dq.shape) < 0.003] |= np.uint32(DO_NOT_USE | OUTLIER)
    return dq


def _reference_product(src, dq):
    """What jwst writes: DQ with the new flags, then ``match_nans_and_flags``."""
    with dm.open(src) as model:
        arrays = {n: np.array(getattr(model, n)) for n in ("data", "err", "var_rnoise")}
    invalid = (dq & DO_NOT_USE) != 0
    for values in arrays.values():
        invalid |= np.isnan(values)
    dq = dq.copy()
    dq[invalid] |= np.uint32(DO_NOT_USE)
    for values in arrays.values():
        values[invalid] = np.nan
    return dq, arrays


def test_row_blocks_cover_each_element_once_within_the_bound():
    for shape, most in [((7, 5, 3), 1), ((7, 5, 3), 4), ((7, 5, 3), 16), ((7, 5, 3), 1000),
                        ((10, 9), 20), ((13,), 5)]:
        seen = np.zeros(math.prod(shape), dtype=int)
        for key, first, n in row_blocks(shape, most):
            block = np.arange(math.prod(shape)).reshape(shape)[key].reshape(-1)
            assert block.size == n <= most or (n == 1 and most < 1)
            np.testing.assert_array_equal(block, np.arange(first, first + n))  # contiguous
            seen[block] += 1
        assert (seen == 1).all()


class ChunkedArray(RecordingArray):
    """A recording source with storage chunks (as a Zarr array declares them)."""

    def __init__(self, values: np.ndarray, chunks: tuple[int, ...]) -> None:
        super().__init__(values)
        self.chunks = chunks


@pytest.mark.parametrize(("shape", "chunks", "most", "region"), [
    ((12, 8, 8), (5, 2, 8), 7, 80),     # chunks of rows: regions are chunks, runs are rows
    ((12, 8, 8), (5, 4, 8), 30, 1000),  # widened to whole planes
    ((10, 9), (4, 5), 6, 100),          # 2-D tiles widened to whole rows
    ((10, 9), (4, 5), 6, 15),           # tiles larger than a region: read in parts
])
def test_regions_read_each_chunk_once_and_cover_each_pixel_once(shape, chunks, most, region):
    values = np.arange(math.prod(shape)).reshape(shape)
    source = ChunkedArray(values, chunks)
    seen = np.zeros(values.size, dtype=int)
    for key, runs in regions(shape, source, most, region):
        box = source[key].reshape(-1)
        assert box.size <= region
        for first, n, offset in runs:
            assert n <= most
            np.testing.assert_array_equal(box[offset:offset + n], np.arange(first, first + n))
            seen[first:first + n] += 1
    assert (seen == 1).all()
    n_chunks = math.prod(-(-a // c) for a, c in zip(shape, chunks, strict=True))
    if math.prod(chunks) <= region:
        assert len(source.sizes) <= n_chunks  # no chunk read twice


def test_product_written_block_by_block_equals_the_reference_rule(tmp_path):
    from daskod.io._products import write_product

    src = _cube_file(tmp_path / "jw01_calints.fits")
    dq = _new_dq(src)
    reader = RecordingArray(dq)
    block_bytes = 64 * 1024
    dst = str(tmp_path / "out" / "jw01_crfints.fits")
    write_product(src, dst, reader, block_bytes=block_bytes)
    # Never more than a block of the DQ asked for, every pixel asked for exactly once.
    assert max(reader.sizes) * 4 <= block_bytes < dq.nbytes
    assert sum(reader.sizes) == dq.size
    want_dq, want = _reference_product(src, dq)
    with dm.open(dst) as out:
        out.validate()
        np.testing.assert_array_equal(out.dq, want_dq)
        for name, values in want.items():
            np.testing.assert_array_equal(getattr(out, name), values)
        assert out.meta.cal_step.outlier_detection == "COMPLETE"
        assert out.meta.filename == "jw01_crfints.fits"
        assert out.meta.exposure.nints == 48
    # The NaN matching did something beyond the new flags (NaN in ERR only -> DQ and SCI).
    assert np.count_nonzero(want_dq != dq) > 0


def test_writing_a_product_never_holds_a_whole_array(tmp_path):
    """tracemalloc's peak while writing stays within a few blocks, far below one array."""
    from daskod.io._products import write_product

    src = _cube_file(tmp_path / "big_calints.fits", nints=64, shape=(64, 128))
    dq = _new_dq(src)  # 2 MiB per array, 8 MiB of pixels in the file
    block_bytes = 128 * 1024
    write_product(src, str(tmp_path / "warm_crfints.fits"), dq, block_bytes=block_bytes)
    tracemalloc.start()
    try:
        write_product(src, str(tmp_path / "x_crfints.fits"), dq, block_bytes=block_bytes)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < dq.nbytes / 2, f"peak {peak} bytes for arrays of {dq.nbytes} bytes"
    assert peak < 6 * block_bytes + 512 * 1024  # a few blocks plus the metadata


def test_product_keeps_the_metadata_and_the_hash_stdatamodels_trusts(tmp_path):
    from astropy.io import fits
    from stdatamodels.fits_support import fits_hash

    from daskod.io._asdf_hdu import load_tree, split_asdf
    from daskod.io._products import write_product

    sim = datasets.make_dithered_imaging(n_exposures=2, shape=(64, 64), seed=2)
    files = datasets.write_cal_files(sim.exposures, tmp_path / "in", asn_name=None)
    src = files["files"][0]
    dst = str(tmp_path / "out_crf.fits")
    write_product(src, dst, _new_dq(src), status="COMPLETE", block_bytes=4096)
    with fits.open(dst) as hdul:
        hdul.verify("exception")
        tree = load_tree(split_asdf(hdul["ASDF"].data.tobytes())[0])
        assert tree["_fits_hash"] == fits_hash(hdul)  # metadata comes from the tree alone
        assert hdul[0].header["S_OUTLIR"] == "COMPLETE"
        assert hdul[0].header["FILENAME"] == "out_crf.fits"
    with dm.open(src) as a, dm.open(dst) as b:
        np.testing.assert_array_equal(a.area, b.area)  # extensions not patched: copied
        x = np.linspace(0, 63, 5)
        np.testing.assert_array_equal(np.array(a.meta.wcs(x, x)), np.array(b.meta.wcs(x, x)))
        meta_a, meta_b = a.meta.instance, b.meta.instance
        for key in ("date", "filename", "cal_step", "wcs"):
            meta_a.pop(key, None)
            meta_b.pop(key, None)
        assert meta_a == meta_b


def test_skipped_product_copies_the_arrays(tmp_path):
    from daskod.io._products import write_product

    src = _cube_file(tmp_path / "s_calints.fits", nints=8, shape=(10, 12))
    dst = str(tmp_path / "s_crfints.fits")
    write_product(src, dst, None, status="SKIPPED")
    with dm.open(src) as a, dm.open(dst) as b:
        assert b.meta.cal_step.outlier_detection == "SKIPPED"
        for name in ("dq", "data", "err"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_product_refuses_a_dq_of_the_wrong_shape(tmp_path):
    from daskod._exceptions import InputError
    from daskod.io._products import write_product

    src = _cube_file(tmp_path / "w_calints.fits", nints=8, shape=(10, 12))
    with pytest.raises(InputError, match="DQ shape"):
        write_product(src, str(tmp_path / "w_crfints.fits"), np.zeros((8, 10, 11), np.uint32))
    assert not (tmp_path / "w_crfints.fits").exists()


def test_open_metadata_reads_no_pixels(tmp_path):
    from daskod.io._fits_url import open_metadata

    src = _cube_file(tmp_path / "m_calints.fits", nints=64, shape=(64, 128))  # 2 MiB arrays
    with open_metadata(src) as model:  # schemas and converters load once
        pass
    tracemalloc.start()
    try:
        with open_metadata(src) as model:
            meta = model.meta.instance
            arrays = [n for n in ("data", "dq", "err") if model.hasattr(n)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert arrays == []
    assert peak < 64 * 64 * 128 * 4 / 2, peak  # loading any one array would take 2 MiB
    with dm.open(src) as full:
        assert meta == full.meta.instance


def test_open_metadata_honours_edited_keywords(tmp_path):
    """A header edited outside stdatamodels wins over the tree, as in datamodels.open."""
    from astropy.io import fits

    from daskod.io._fits_url import open_metadata

    src = _cube_file(tmp_path / "e_calints.fits", nints=8, shape=(10, 12))
    fits.setval(src, "EXP_TYPE", value="NRC_TSGRISM")
    with open_metadata(src) as light, dm.open(src) as full:
        assert light.meta.exposure.type == full.meta.exposure.type == "NRC_TSGRISM"


def test_intermediate_cube_written_in_blocks(tmp_path):
    import dask.array as da

    from daskod.io._products import write_image

    cube = np.random.default_rng(4).normal(size=(30, 12, 20))
    lazy = da.from_array(cube, chunks=(4, 12, 20))
    reader = RecordingArray(np.asarray(lazy))
    write_image(str(tmp_path / "x_median.fits"), reader, block_bytes=2000)
    assert max(reader.sizes) * 8 <= 2000
    with dm.open(str(tmp_path / "x_median.fits")) as model:
        model.validate()
        assert type(model).__name__ == "CubeModel"
        np.testing.assert_array_equal(model.data, cube.astype(np.float32))


def test_write_cube_file_round_trips(tmp_path):
    sim = datasets.make_tso_cube(nints=20, shape=(8, 10), seed=7, store=str(tmp_path / "c.zarr"))
    path = datasets.write_cube_file(sim.cube, tmp_path / "c_calints.fits", block_bytes=1000)
    with dm.open(path) as model:
        model.validate()
        assert model.meta.visit.tsovisit
        assert model.meta.exposure.nints == 20
        np.testing.assert_array_equal(model.data, np.asarray(sim.cube.sci[...]))
        np.testing.assert_array_equal(model.dq, np.asarray(sim.cube.dq[...]))


def _stcal_threshold(weights, maskpt):
    """stcal's compute_weight_threshold, transcribed (same numpy and astropy)."""
    from astropy.stats import sigma_clip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.mean(sigma_clip(weights[np.isfinite(weights) & (weights != 0)], sigma=3,
                                  maxiters=5, masked=False, copy=False), dtype="f8") * maskpt


@pytest.mark.parametrize("kind", ["gamma", "low tail", "ties", "quantised", "signed", "tiny",
                                  "empty"])
def test_weight_threshold_is_the_reference_bit_for_bit(kind):
    from daskod.resample._weights import weight_threshold

    rng = np.random.default_rng(len(kind))
    shape = (257, 301)
    if kind == "gamma":
        w = rng.gamma(5, 20, shape).astype(np.float32)
    elif kind == "low tail":  # partly covered pixels: iterations clip low weights
        w = rng.gamma(20, 5, shape).astype(np.float32)
        edge = rng.random(shape) < 0.08
        w[edge] *= rng.random(int(edge.sum())).astype(np.float32) ** 3
    elif kind == "ties":  # exptime weights: ties everywhere but edge-partial pixels
        w = np.full(shape, 300.0, np.float32)
        w[:, :3] *= rng.random((shape[0], 3)).astype(np.float32)
        w[rng.random(shape) < 0.05] = 150.0
    elif kind == "quantised":
        w = np.round(rng.normal(50, 5, shape), 1).astype(np.float32)
    elif kind == "signed":
        w = rng.normal(0, 1, shape).astype(np.float32)
        w[rng.random(shape) < 0.01] *= 1000
    elif kind == "tiny":
        w = np.array([[0, 3.0, 5.0]], np.float32)
    else:
        w = np.zeros((4, 4), np.float32)
    if w.size > 100:
        w[rng.random(shape) < 0.3] = 0
        w[0, 0], w[-1, -1] = np.nan, np.inf
    want = _stcal_threshold(w.copy(), 0.7)
    got = weight_threshold(w, 0.7, block_bytes=7000)
    assert got == want or (math.isnan(got) and math.isnan(want))


def test_weight_threshold_holds_about_four_bytes_per_pixel():
    from daskod.resample._weights import compute_weight_threshold, weight_threshold

    rng = np.random.default_rng(0)
    w = rng.gamma(50, 2, (1500, 1500)).astype(np.float32)

    def peak_of(fn):
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    lean = peak_of(lambda: weight_threshold(w, 0.7, block_bytes=256 * 1024))
    old = peak_of(lambda: compute_weight_threshold(w, 0.7))
    assert lean < 4 * w.size + 10 * 2**20  # the values (4 B/px) and a few small blocks
    assert lean < old / 2


def test_compressed_input_falls_back_to_the_whole_model(tmp_path, caplog):
    """A tile-compressed SCI is not patched in place: the product is written whole, with the
    same content rule."""
    from astropy.io import fits

    from daskod.io._products import write_product

    src = _cube_file(tmp_path / "plain_calints.fits", nints=8, shape=(10, 12))
    packed = str(tmp_path / "packed_calints.fits")
    with fits.open(src) as hdul:
        hdus = [hdu if hdu.name != "SCI" else
                fits.CompImageHDU(data=hdu.data, header=hdu.header, name="SCI",
                                  compression_type="GZIP_1", quantize_level=0.0)
                for hdu in hdul]
        fits.HDUList(hdus).writeto(packed)
    dq = _new_dq(src)
    dst = str(tmp_path / "packed_crfints.fits")
    with caplog.at_level("WARNING", logger="daskod.io._products"):
        write_product(packed, dst, dq)
    assert "written whole" in caplog.text
    want_dq, want = _reference_product(src, dq)
    with dm.open(dst) as out:
        np.testing.assert_array_equal(out.dq, want_dq)
        np.testing.assert_array_equal(out.data, want["data"])
        np.testing.assert_array_equal(out.err, want["err"])


def test_product_from_a_chunked_dq_reads_each_chunk_once(tmp_path):
    """The engine's DQ arrives in storage chunks (here rows of ~10 integrations): each is
    read once, and the product is the same."""
    from daskod.io._products import write_product

    src = _cube_file(tmp_path / "k_calints.fits", nints=40, shape=(16, 32))
    dq = _new_dq(src)
    chunked = ChunkedArray(dq, (10, 4, 32))
    # 4 KiB blocks: a chunk (5 KiB of DQ) is read whole (up to two blocks), whole planes
    # (20 KiB) are not merged.
    write_product(src, str(tmp_path / "k_crfints.fits"), chunked, block_bytes=4096)
    assert len(chunked.sizes) == 4 * 4 and sum(chunked.sizes) == dq.size
    want_dq, want = _reference_product(src, dq)
    with dm.open(str(tmp_path / "k_crfints.fits")) as out:
        np.testing.assert_array_equal(out.dq, want_dq)
        np.testing.assert_array_equal(out.data, want["data"])


@pytest.mark.parametrize("sharded", [False, True])
def test_product_from_the_working_store_decodes_each_dq_chunk_once(tmp_path, monkeypatch,
                                                                    sharded):
    """The flag phase's DQ lives in the working store in compressed chunks (tiles): the
    product writer reads them whole, once each, however its blocks fall (the store's array
    exposes its chunks and shards as a zarr array does)."""
    from daskod.engine._store import StoredArray, WorkingStore
    from daskod.io._products import write_product

    src = _cube_file(tmp_path / "jw01_calints.fits")
    dq = _new_dq(src)
    store = WorkingStore.create(str(tmp_path / "store"))
    block = (16, 24, 40)  # tiles that do not divide the (48, 40, 64) cube
    chunks = (16, 12, 40) if sharded else block
    stored = store.phase_array("outputs/0/dq", dq.shape, np.uint32, block, 0,
                               fingerprint="t", chunks=chunks)
    for index in np.ndindex(*stored.manifest.shape):  # one manifest entry per block
        stored.write(index, dq[stored.region(index)])
    decoded = np.zeros(dq.shape, dtype=int)
    read = StoredArray.__getitem__

    def counting(self, key):
        out = read(self, key)
        # Every chunk the read touches is decoded whole.
        boxes = [range(s.start // c, -(-s.stop // c))
                 for s, c in zip(key, chunks, strict=True)]
        for index in np.ndindex(*(len(b) for b in boxes)):
            corner = [b[i] for b, i in zip(boxes, index, strict=True)]
            decoded[tuple(slice(i * c, (i + 1) * c)
                          for i, c in zip(corner, chunks, strict=True))] += 1
        return out

    monkeypatch.setattr(StoredArray, "__getitem__", counting)
    dst = str(tmp_path / "out" / "jw01_crfints.fits")
    write_product(src, dst, stored, block_bytes=40 * 64 * 13 * 8)  # ~8 rows per block
    assert (decoded == 1).all(), f"chunks decoded {sorted(set(decoded.ravel()))} times"
    want_dq, _ = _reference_product(src, dq)
    with dm.open(dst) as out:
        np.testing.assert_array_equal(out.dq, want_dq)
