"""Imported once by the forkserver of the ``processes`` scheduler, so that its forked
workers start with the task modules (and only those) already loaded."""

import astropy.stats
import bottleneck
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
