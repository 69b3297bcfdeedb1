"""Boxes of local FITS images read in place (:func:`daskod.io._fits_url.read_block`) are the
pixels astropy reads, whatever the box's shape and however the kernel splits the reads."""

from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.io import fits

from daskod.io import _fits_url
from daskod.io._fits_url import image_layout, read_block

BOXES_2D = [
    (slice(None), slice(None)),          # the whole image: one contiguous run
    (slice(3, 9), slice(None)),          # whole rows
    (slice(0, 700), slice(5, 300)),      # wide box: one read of its span, cut out
    (slice(10, 20), slice(0, 40)),       # narrow box in a wide image: one pread per row
    (slice(0, 1), slice(7, 8)),          # one pixel
    (slice(100, 650), slice(299, 300)),  # one column
]


@pytest.fixture
def fits_file(tmp_path):
    rng = np.random.default_rng(3)
    image = rng.normal(size=(700, 300)).astype(np.float32)
    cube = rng.integers(0, 60000, size=(4, 50, 60)).astype(np.uint16)
    path = str(tmp_path / "x.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(image, name="SCI"),
                  fits.ImageHDU(cube, name="CUBE")]).writeto(path)
    return path, {"SCI": image, "CUBE": cube}


def _read(path, extname, key):
    with fits.open(path) as hdul:
        layout = image_layout(hdul, extname)
        shape = hdul[extname].shape  # from the header; no pixels read
    raw = read_block(path, None, layout, shape, key)
    return _fits_url.scale_raw(raw, layout["bzero"], layout["bscale"],
                               np.float32 if extname == "SCI" else np.uint16, inplace=True)


@pytest.mark.parametrize("key", BOXES_2D)
def test_boxes_of_an_image_are_astropys_pixels(fits_file, key):
    path, arrays = fits_file
    np.testing.assert_array_equal(_read(path, "SCI", key), arrays["SCI"][key])


@pytest.mark.parametrize("key", [(slice(1, 3), slice(5, 45), slice(10, 50)),
                                 (slice(0, 4), slice(0, 50), slice(59, 60)),
                                 (slice(2, 3), slice(None), slice(None))])
def test_boxes_of_a_cube_are_astropys_pixels(fits_file, key):
    path, arrays = fits_file
    np.testing.assert_array_equal(_read(path, "CUBE", key), arrays["CUBE"][key])


def test_short_reads_are_resumed(fits_file, monkeypatch):
    """The kernel may fill fewer bytes than asked (a signal, a network file system): the
    read resumes where it stopped."""
    path, arrays = fits_file
    real = os.preadv
    calls = []

    def short(fd, buffers, offset):
        calls.append(len(buffers))
        views = [memoryview(b).cast("B") for b in buffers]
        total = sum(len(v) for v in views)
        # Fill about a third, ending inside a buffer.
        budget, kept = max(1, total // 3 + 1), []
        for v in views:
            if budget <= 0:
                break
            kept.append(v[:budget])
            budget -= len(v)
        return real(fd, kept, offset)

    monkeypatch.setattr(_fits_url.os, "preadv", short)
    key = (slice(0, 700), slice(5, 300))
    np.testing.assert_array_equal(_read(path, "SCI", key), arrays["SCI"][key])
    assert len(calls) > 3


def test_a_file_cut_short_is_an_error_naming_it(fits_file, tmp_path):
    path, _ = fits_file
    with fits.open(path) as hdul:
        layout = image_layout(hdul, "SCI")
    cut = str(tmp_path / "cut.fits")
    with open(path, "rb") as f, open(cut, "wb") as g:
        g.write(f.read()[:layout["offset"] + 4 * 300 * 100])
    with pytest.raises(OSError, match=r"cut\.fits: the file ends inside its SCI data"):
        read_block(cut, None, layout, (700, 300), (slice(50, 200), slice(0, 200)))
