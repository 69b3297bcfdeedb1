"""Preloaded by the worker server of runs that write JWST products (``daskod run``), which
start it while they read the inputs' metadata: the product writer's FITS and ASDF modules
and the blot's ``scipy.ndimage``, which each worker otherwise imports when it first needs
them (~0.5 s of CPU per worker, found with an import trace of the workers). Not with
:mod:`daskod._worker_imports` itself: a run from Python on Zarr inputs starts the server
when its graph starts, and would wait for them (measured ~0.5 s slower)."""


import asdf
import astropy.io.fits
import astropy.io.fits.connect
import scipy.ndimage

import daskod._worker_imports
import daskod.blot._kernels
import daskod.io._asdf_hdu
import daskod.io._products
