"""Imported once by the forkserver of the ``processes`` scheduler, so that its forked
workers start with the task modules (and only those) already loaded. ``dask.array`` is one:
the tasks that assemble an output array's blocks (``dask.compute`` of the run's counts) use
it, and each worker importing it again costs ~0.7 s of CPU. Runs that write JWST products
preload :mod:`daskod._worker_imports_products` too."""

import astropy.stats
import bottleneck
import dask.array
import drizzle.resample
import zarr

import daskod.engine._graph
import daskod.engine._store
import daskod.flag._cube
import daskod.flag._graph
import daskod.ifu._cube_tasks
import daskod.ifu.difference
import daskod.median._graph
import daskod.resample._graph
