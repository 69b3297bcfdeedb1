"""The result of a run: updated DQ (and SCI/ERR/VAR views), the median, statistics."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from daskod._exceptions import SkippedWarning
from daskod.exposure import Exposure
from daskod.flag._dq import DO_NOT_USE

__all__ = ["OutlierResult"]

log = logging.getLogger(__name__)

_FLOATS = ("sci", "err", "var_rnoise", "var_poisson", "var_flat")


@dataclass
class OutlierResult:
    """What :func:`daskod.detect_outliers` returns.

    Attributes
    ----------
    status : str
        ``"COMPLETE"``, or ``"SKIPPED"`` when the reference would skip (fewer than two groups);
        then ``dq`` holds copies of the input DQ.
    reason : str or None
        Why the step was skipped.
    dq : list of array
        Updated DQ per exposure, in input order: numpy (``in_memory=True``) or Dask arrays
        (lazy; ``compute=False`` or ``in_memory=False``).
    median : array or None
        The median frame (output frame, or detector grid when ``resample_data=False``).
    median_wcs : gwcs.WCS or None
        WCS of the median frame.
    ifu : dict
        IFU difference method (which has no median): per detector, ``exposures`` (names),
        ``kernel_size``, ``diffaxis``, ``nfloor``, ``pct`` (the percentile cut), ``minarr``
        and ``minnorm`` (the minimum neighbour difference and its normalised value; flagged
        pixels are ``minnorm > pct``), plus ``normarr`` and ``diffarr`` when intermediate
        results are kept. Empty for other modes.
    spec : dict
        Slit spectroscopy (``mode="spec"``), per source key: ``status`` (``"COMPLETE"`` or
        ``"SKIPPED"`` for a source with fewer than two inputs), ``inputs`` (names),
        ``indices`` (positions in ``exposures``), ``groups``, ``median`` and ``median_err``
        (the rectified frame, or the detector grid without resampling), ``median_wcs``;
        with ``save_intermediate_results`` also ``drizzled`` (groups x (data, weight, error)
        x frame, before the weight threshold) and ``blots`` (per input index: the blotted
        median and median_err). Arrays are numpy in eager in-memory runs, else Dask. Empty
        for other modes.
    n_flagged : list of int
        Pixels newly flagged as outliers per exposure (lazy Delayed when not computed).
    exposures : list of Exposure
        The inputs (validated copies: names and group ids filled in).
    params : dict
        Resolved parameters.
    store : str, zarr Store or None
        The Zarr working store that holds the median and DQ: its local folder, or a
        ``zarr.storage.FsspecStore`` when it is on object storage (``store="s3://..."``);
        None once removed. Open it with ``zarr.open_group(result.store, mode="r")``.
    timings : dict
        Seconds per phase.
    checkpoints : dict
        Per phase, tasks reused from an earlier run of the same store (``{"resample":
        {"reused": 12, "total": 40}, ...}``); empty when the run was not checkpointed.
    """

    status: str
    dq: list[Any]
    exposures: list[Exposure]
    params: dict[str, Any]
    reason: str | None = None
    median: Any = None
    median_wcs: Any = None
    ifu: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    n_flagged: list[Any] = field(default_factory=list)
    store: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    groups: list[list[int]] = field(default_factory=list)
    checkpoints: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Coarse pixel maps of the exposures (imaging with resampling), for :meth:`blot`.
    pixel_maps: list[Any] = field(default_factory=list, repr=False)
    #: The working store (keeps a temporary store alive as long as this result).
    work: Any = field(default=None, repr=False)

    @classmethod
    def skipped_step(cls, reason: str, *, params: dict[str, Any], exposures: list[Exposure],
                     stacklevel: int = 2) -> OutlierResult:
        """The step skipped as the reference skips it: ``SkippedWarning`` (pointing
        ``stacklevel`` frames above the caller), a log line, and copies of the input DQ."""
        warnings.warn(reason, SkippedWarning, stacklevel=stacklevel + 1)
        log.warning("Step skipped: %s", reason)
        return cls(status="SKIPPED", reason=reason, params=params, exposures=exposures,
                   dq=[np.array(e.dq, dtype=np.uint32) for e in exposures])

    def log_stats(self) -> None:
        """One log line per exposure: pixels flagged as outliers."""
        for row in self.stats:
            log.info("%s: %d pixels flagged as outliers (%.4f%%)", row["name"], row["n_flagged"],
                     row["percent"])

    @property
    def skipped(self) -> bool:
        return self.status != "COMPLETE"

    @property
    def stats(self) -> list[dict[str, Any]]:
        """Per exposure: name, group, pixels flagged, percent of the detector."""
        counts = self.n_flagged
        if any(hasattr(n, "compute") for n in counts):
            import dask

            counts = [int(n) for n in dask.compute(*counts)]
        out = []
        for exp, n in zip(self.exposures, counts if len(counts) else [0] * len(self.exposures),
                          strict=True):
            n = int(n)
            size = int(np.prod(exp.shape))
            out.append({"name": exp.name, "group_id": getattr(exp, "group_id", None),
                        "n_flagged": n,
                        "percent": 100.0 * n / size if size else 0.0})
        return out

    def updated_exposures(self) -> list[Exposure]:
        """Exposures with the new DQ and NaN in SCI/ERR/VAR where DO_NOT_USE (as the reference).

        Arrays are numpy when the DQ is numpy, else lazy Dask.
        """
        out = []
        for exp, dq in zip(self.exposures, self.dq, strict=True):
            changes: dict[str, Any] = {"dq": dq}
            lazy = hasattr(dq, "dask")
            bad = (dq & DO_NOT_USE) != 0
            for name in _FLOATS:
                value = getattr(exp, name)
                if value is None:
                    continue
                if lazy:
                    import dask.array as da

                    arr = da.asarray(value, chunks=dq.chunks) if not hasattr(value, "dask") \
                        else value.rechunk(dq.chunks)
                    changes[name] = da.where(bad, np.float32(np.nan), arr.astype(np.float32))
                else:
                    changes[name] = np.where(bad, np.float32(np.nan),
                                             np.asarray(value, dtype=np.float32))
            out.append(replace(exp, **changes))
        return out

    def blot(self, k: int, *, tile: int = 1024) -> np.ndarray:
        """The median blotted onto exposure ``k``'s detector (imaging with resampling).

        Computed tile by tile from the median and the exposure's pixel map, as the flag phase
        does (bilinear, NaN outside the median).
        """
        from daskod.flag._graph import blot_region
        from daskod.geometry._tiles import Tiling

        if not self.pixel_maps or self.median is None:
            msg = "blot() needs an imaging result computed with resample_data=True."
            raise ValueError(msg)
        shape = self.exposures[k].shape
        median = self.median
        out = np.empty(shape, dtype=np.float32)
        for t in Tiling(shape, (tile, tile)):
            out[t.slices] = blot_region(self.pixel_maps[k], (t.y0, t.y1, t.x0, t.x1), median,
                                        tuple(np.shape(median)))
        return out

    def resampled(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """Drizzled image and weight of group ``g`` (read from the working store, local or on
        object storage)."""
        import zarr

        if self.store is None:
            msg = ("The drizzled groups live in the working store, which is gone; run with "
                   "save_intermediate_results=True or store=.")
            raise ValueError(msg)
        resampled = zarr.open_array(self.store, path="resampled", mode="r")
        # Tiles the group does not reach are never written: NaN image, zero weight.
        return np.asarray(resampled[g, 0]), np.nan_to_num(np.asarray(resampled[g, 1]), nan=0.0)

    def to_xarray(self) -> Any:
        """A labelled ``xarray.Dataset``: ``sci``, ``dq`` and ``outlier`` over
        ``(exposure, y, x)`` (``(integration, y, x)`` for cubes), ``n_flagged``, and the
        median as ``median_frame`` with ``ra`` / ``dec`` of its pixels (lazy when the result
        is). See :func:`daskod._xarray.result_to_dataset`."""
        from daskod._xarray import result_to_dataset

        return result_to_dataset(self)

    def to_datatree(self) -> Any:
        """The same as an ``xarray.DataTree`` (one group per exposure when shapes differ)."""
        from daskod._xarray import result_to_datatree

        return result_to_datatree(self)

    def __repr__(self) -> str:
        from daskod._repr import result_repr

        return result_repr(self)

    def _repr_html_(self) -> str:
        from daskod._repr import result_html

        return result_html(self)

    def plot(self, k: int = 0, **kwargs: Any) -> Any:
        """Overview figure: median with footprints, flags of exposure ``k`` on a SCI cutout,
        flag statistics (:func:`daskod.plot.plot_result`; keywords go there)."""
        from daskod.plot import plot_result

        return plot_result(self, k, **kwargs)

    def summary(self) -> str:
        """A short text table of the per-exposure statistics."""
        if self.skipped:
            return f"Step skipped: {self.reason}"
        lines = [f"{'exposure':<32} {'group':<28} {'flagged':>10} {'%':>8}"]
        lines.extend(f"{row['name']:<32} {row['group_id']!s:<28} "
                     f"{row['n_flagged']:>10d} {row['percent']:>8.4f}" for row in self.stats)
        return "\n".join(lines)
