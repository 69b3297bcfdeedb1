"""Imported once by the forkserver of the ``processes`` scheduler, so that its forked
workers start with the task modules (and only those) already loaded. ``dask.array`` is one:
the tasks that assemble an output array's blocks (``dask.compute`` of the run's counts) use
it, and each worker importing it again costs ~0.7 s of CPU. The product writer's FITS and
ASDF modules and the blot's ``scipy.ndimage`` are others (~0.5 s per worker, found with an
import trace of the workers)."""

import asdf
import astropy.io.fits
import astropy.io.fits.connect
import astropy.stats
import bottleneck
import dask.array
import drizzle.resample
import scipy.ndimage
import zarr

import daskod.blot._kernels
import daskod.engine._graph
import daskod.engine._store
import daskod.flag._cube
import daskod.flag._graph
import daskod.ifu._cube_tasks
import daskod.ifu.difference
import daskod.io._asdf_hdu
import daskod.io._products
import daskod.median._graph
import daskod.resample._graph
