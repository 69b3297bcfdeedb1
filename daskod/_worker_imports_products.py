"""Preloaded by the worker server of runs that write JWST products (``daskod run``): the
product writer's FITS and ASDF modules, which each worker otherwise imports when it writes
its first product (~0.5 s of CPU per worker, found with an import trace of the workers).
Not with :mod:`daskod._worker_imports` itself: a run from Python on Zarr inputs would wait
for them while its workers start."""


import asdf
import astropy.io.fits
import astropy.io.fits.connect

import daskod._worker_imports
import daskod.io._asdf_hdu
import daskod.io._products
