"""Imported once by the forkserver of the ``processes`` scheduler, so that its forked
workers start with the task modules already loaded."""

import daskod.flag._graph
import daskod.median._graph
import daskod.modes.imaging
import daskod.resample._graph  # noqa: F401
