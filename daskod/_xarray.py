"""Labelled xarray views of a result: inputs, new outliers, DQ, and the median on the sky.

:func:`result_to_dataset` (what ``OutlierResult.to_xarray()`` returns) and
:func:`result_to_datatree` build the same variables:

- per exposure, dims ``(exposure, y, x)`` (cubes: ``(integration, y, x)``): ``sci`` (the
  input science array), ``dq`` (the updated DQ), ``outlier`` (pixels newly flagged by this
  run); coordinates ``exposure`` (names), ``group_id``, ``y``, ``x`` (detector pixels);
  ``n_flagged`` per exposure when it is known;
- ``median_frame`` (named so that ``ds.median`` stays xarray's method), dims
  ``(median_y, median_x)``, with 2-D coordinates ``ra`` and ``dec`` (degrees, ICRS, of every
  median-frame pixel centre, from ``result.median_wcs``).

Arrays stay what they are: numpy results give numpy variables; Dask results (``compute=False``,
``in_memory=False``) and inputs read on demand (Zarr, FITS) give Dask variables, and ``ra``
/ ``dec`` of a lazy median are computed lazily, block by block. Nothing is computed here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from daskod.flag._dq import OUTLIER

__all__ = ["result_to_dataset", "result_to_datatree", "median_world_coordinates"]


def _is_numpy(array: Any) -> bool:
    return isinstance(array, np.ndarray)


def _lazy(array: Any) -> Any:
    import dask.array as da

    if hasattr(array, "dask"):
        return array
    chunks = getattr(array, "chunks", None)
    if isinstance(chunks, tuple) and chunks and all(isinstance(c, int) for c in chunks):
        return da.from_array(array, chunks=chunks)  # zarr: its own chunks
    return da.from_array(array, chunks="auto")


def _stack(arrays: list[Any]) -> Any:
    """numpy when every array is numpy, else one lazy Dask stack (nothing read)."""
    if all(_is_numpy(a) for a in arrays):
        return np.stack(arrays)
    import dask.array as da

    return da.stack([_lazy(a) for a in arrays])


def _new_outliers(dq_out: Any, dq_in: Any) -> Any:
    if not _is_numpy(dq_out) or not _is_numpy(dq_in):
        dq_out, dq_in = _lazy(dq_out), _lazy(dq_in)
    return ((dq_out & OUTLIER) != 0) & ((dq_in & OUTLIER) == 0)


def _world_block(wcs: Any, y0: int, x0: int, shape: tuple[int, int]) -> np.ndarray:
    y, x = np.mgrid[y0:y0 + shape[0], x0:x0 + shape[1]].astype(np.float64)
    forward = getattr(wcs, "forward_transform", None)
    world = forward(x, y) if forward is not None else wcs.pixel_to_world_values(x, y)
    return np.stack([np.asarray(world[0], dtype=np.float64),
                     np.asarray(world[1], dtype=np.float64)])


def _world_chunk(template: np.ndarray, wcs: Any, block_info: Any = None) -> np.ndarray:
    (y0, y1), (x0, x1) = block_info[0]["array-location"]
    return _world_block(wcs, y0, x0, (y1 - y0, x1 - x0))


def median_world_coordinates(median: Any, median_wcs: Any) -> tuple[Any, Any]:
    """RA and Dec (degrees) of every pixel centre of the median frame.

    numpy for a numpy median; for a Dask median, Dask arrays with its chunks whose blocks
    evaluate the WCS when computed (the WCS is one graph key shared by the blocks).
    """
    shape = tuple(int(n) for n in np.shape(median))
    if _is_numpy(median) or not hasattr(median, "chunks"):
        world = _world_block(median_wcs, 0, 0, shape)
        return world[0], world[1]
    import dask
    import dask.array as da

    wcs_key = dask.delayed(median_wcs, pure=True)
    template = da.empty(shape, chunks=median.chunks, dtype=np.uint8)  # positions only
    world = da.map_blocks(_world_chunk, template, wcs_key, dtype=np.float64,
                          chunks=((2,), *median.chunks), new_axis=0)
    return world[0], world[1]


def _exposure_arrays(result: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Variables and coordinates of the exposures (one shape) or per exposure (several)."""
    exposures = result.exposures
    names = [str(e.name) for e in exposures]
    shapes = {tuple(np.shape(d)) for d in result.dq}
    cube = len(shapes) == 1 and len(next(iter(shapes))) == 3
    data_vars: dict[str, Any] = {}
    coords: dict[str, Any] = {}
    if cube:  # time series / coronagraphy: one exposure of integrations
        exp, dq = exposures[0], result.dq[0]
        dims = ("integration", "y", "x")
        nints, ny, nx = np.shape(dq)
        data_vars["sci"] = (dims, exp.sci)
        data_vars["dq"] = (dims, dq)
        data_vars["outlier"] = (dims, _new_outliers(dq, exp.dq))
        coords.update(integration=np.arange(nints), y=np.arange(ny), x=np.arange(nx))
        return data_vars, coords
    if len(shapes) == 1:
        dims = ("exposure", "y", "x")
        ny, nx = next(iter(shapes))
        data_vars["sci"] = (dims, _stack([e.sci for e in exposures]))
        data_vars["dq"] = (dims, _stack(list(result.dq)))
        data_vars["outlier"] = (dims, _stack([_new_outliers(d, e.dq) for d, e in
                                              zip(result.dq, exposures, strict=True)]))
        coords.update(y=np.arange(ny), x=np.arange(nx))
    else:  # detectors of several shapes: one set of variables (and dims) per exposure
        for k, (exp, dq) in enumerate(zip(exposures, result.dq, strict=True)):
            dims = (f"y_{k}", f"x_{k}")
            data_vars[f"sci_{k}"] = (dims, exp.sci)
            data_vars[f"dq_{k}"] = (dims, dq)
            data_vars[f"outlier_{k}"] = (dims, _new_outliers(dq, exp.dq))
    # Variable-length strings: Zarr v3 has a specification for them (fixed-width unicode
    # has none and warns).
    coords["exposure"] = np.asarray(names, dtype=object)
    coords["group_id"] = ("exposure", np.asarray([str(e.group_id or "") for e in exposures],
                                                 dtype=object))
    counts = list(result.n_flagged or [])
    if counts and not any(hasattr(n, "compute") for n in counts):
        data_vars["n_flagged"] = ("exposure", np.asarray(counts, dtype=np.int64))
    return data_vars, coords


def _median_arrays(result: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    median = result.median
    if median is None:
        return {}, {}
    if np.ndim(median) == 3:  # the TSO rolling median: one per integration
        return {"median_frame": (("integration", "y", "x"), median)}, {}
    ny, nx = (int(n) for n in np.shape(median))
    data_vars = {"median_frame": (("median_y", "median_x"), median)}
    coords: dict[str, Any] = {"median_y": np.arange(ny), "median_x": np.arange(nx)}
    if result.median_wcs is not None:
        ra, dec = median_world_coordinates(median, result.median_wcs)
        coords["ra"] = (("median_y", "median_x"), ra,
                        {"units": "deg", "long_name": "right ascension (ICRS)"})
        coords["dec"] = (("median_y", "median_x"), dec,
                         {"units": "deg", "long_name": "declination (ICRS)"})
    return data_vars, coords


def _attrs(result: Any) -> dict[str, Any]:
    attrs = {"status": str(result.status)}
    if result.reason:
        attrs["reason"] = str(result.reason)
    attrs.update({k: str(v) for k, v in (result.params or {}).items()})
    return attrs


def _variable_attrs(ds: Any) -> Any:
    descriptions = {"sci": "input science array", "dq": "DQ after outlier detection",
                    "outlier": "pixels newly flagged as outliers by this run",
                    "median_frame": "the median frame (median of the resampled groups, or the "
                                    "(rolling) median over integrations)",
                    "n_flagged": "pixels newly flagged per exposure"}
    for name, var in ds.data_vars.items():
        base = name.rsplit("_", 1)[0] if name[-1].isdigit() else name
        if base in descriptions:
            var.attrs.setdefault("long_name", descriptions[base])
    return ds


def result_to_dataset(result: Any) -> Any:
    """An ``xarray.Dataset`` of a result (see the module docstring for its layout).

    Parameters
    ----------
    result : OutlierResult
        Any mode's result.

    Returns
    -------
    xarray.Dataset
        Exposures of several detector shapes get per-exposure variables ``sci_<k>``,
        ``dq_<k>``, ``outlier_<k>`` with dims ``(y_<k>, x_<k>)``;
        :func:`result_to_datatree` gives them a group each instead.
    """
    import xarray as xr

    data_vars, coords = _exposure_arrays(result)
    median_vars, median_coords = _median_arrays(result)
    ds = xr.Dataset({**data_vars, **median_vars}, coords={**coords, **median_coords},
                    attrs=_attrs(result))
    return _variable_attrs(ds)


def result_to_datatree(result: Any) -> Any:
    """An ``xarray.DataTree``: ``/exposures`` (or ``/exposures/<name>`` per exposure when
    detector shapes differ) and ``/median`` with its ``ra`` / ``dec``; attributes at the root."""
    import xarray as xr

    data_vars, coords = _exposure_arrays(result)
    tree: dict[str, Any] = {"/": xr.Dataset(attrs=_attrs(result))}
    if any(name.startswith("sci_") for name in data_vars):
        for k, exp in enumerate(result.exposures):
            group = {base: (("y", "x"), data_vars[f"{base}_{k}"][1])
                     for base in ("sci", "dq", "outlier")}
            name = str(exp.name).replace("/", "_")
            tree[f"/exposures/{name}"] = _variable_attrs(xr.Dataset(group))
    else:
        tree["/exposures"] = _variable_attrs(xr.Dataset(data_vars, coords=coords))
    median_vars, median_coords = _median_arrays(result)
    if median_vars:
        tree["/median"] = _variable_attrs(xr.Dataset(median_vars, coords=median_coords))
    return xr.DataTree.from_dict(tree)
