"""The input container: one detector exposure with its arrays, WCS and metadata."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from daskod._exceptions import InputError, WCSError

__all__ = ["Exposure", "validate_exposures"]


@dataclass(eq=False)
class Exposure:
    """One calibrated exposure (one detector), as the imaging engine takes it in.

    Parameters
    ----------
    sci, err : array_like, shape (ny, nx)
        Science and error arrays (numpy or Dask). Any float dtype; worked on as float32.
    dq : array_like of int, shape (ny, nx)
        Data-quality bit flags (JWST convention: bit 0 DO_NOT_USE, bit 4 OUTLIER).
    wcs : gwcs.WCS or None
        Detector pixel (x, y) -> sky (ra, dec) in degrees. Only the forward direction is used.
        May be None for ``resample_data=False`` runs, which need no geometry.
    var_rnoise, var_poisson, var_flat : array_like, optional
        Variance arrays. ``var_rnoise`` gives the ``ivm`` weights; all three are set to NaN
        where DO_NOT_USE, as the reference does.
    group_id : str, optional
        Exposures with the same group id (the detectors of one exposure) are drizzled together;
        the median is over groups. Default: each exposure is its own group.
    exposure_time : float
        Seconds; used by ``weight_type="exptime"``. Default 1.0.
    background_level : float, optional
        Sky level; used in the flag rule instead of ``backg`` when ``background_subtracted``
        is False (as ``meta.background`` in the reference).
    background_subtracted : bool, optional
        Whether the sky was already subtracted from ``sci``.
    name : str, optional
        Used in messages, logs and output names. Default ``"exposure<k>"`` by position.
    detector, instrument : str, optional
        Detector and instrument names (JWST ``meta.instrument.detector`` / ``.name``, for
        example ``"MIRIFUSHORT"`` / ``"MIRI"``); IFU mode groups exposures by detector and
        takes the dispersion axis from the instrument.
    meta : dict
        Free-form metadata carried along (not used by the algorithm).
    wcsinfo : dict, optional
        JWST pointing metadata (``meta.wcsinfo``) the reference builds its output frame from:
        ``s_region`` (the footprint polygon, ``"POLYGON ICRS ra1 dec1 ..."``), ``ra_ref``,
        ``dec_ref``, ``roll_ref``, ``v3yangle``, ``vparity`` (also ``v2_ref``, ``v3_ref``).
        Filled by :func:`daskod.read_jwst`; without it the frame uses the WCS (footprints at
        the detector edges, orientation from the Jacobian at the detector centre), see
        :func:`daskod.geometry.compute_output_frame`.
    """

    sci: Any
    err: Any
    dq: Any
    wcs: Any = None
    var_rnoise: Any = None
    var_poisson: Any = None
    var_flat: Any = None
    group_id: str | None = None
    exposure_time: float = 1.0
    background_level: float | None = None
    background_subtracted: bool | None = None
    name: str | None = None
    detector: str | None = None
    instrument: str | None = None
    meta: dict = field(default_factory=dict)
    wcsinfo: dict | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """Detector shape ``(ny, nx)``."""
        return tuple(int(n) for n in np.shape(self.sci))

    def variance_arrays(self) -> dict[str, Any]:
        """The variance arrays that are present, by name."""
        out = {}
        for key in ("var_rnoise", "var_poisson", "var_flat"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def background_for_flagging(self, backg: float) -> float:
        """The background ``b`` of the flag rule: metadata level if not subtracted, else backg."""
        if self.background_subtracted is False and self.background_level is not None:
            return float(self.background_level)
        return float(backg)

    def sky_to_subtract(self) -> float:
        """Sky level the reference subtracts before drizzling (0 when already subtracted)."""
        if self.background_subtracted is False and self.background_level is not None:
            return float(self.background_level)
        return 0.0

    @classmethod
    def from_datamodel(cls, model: Any, *, name: str | None = None,
                       group_id: str | None = None) -> Exposure:
        """An Exposure of an open JWST datamodel (ImageModel, IFUImageModel), with its
        arrays (not copied) and everything the run needs from its metadata.

        Group id (``meta.group_id`` or the observation identifiers), exposure time
        (``measurement_time``, else ``exposure_time``), ``meta.background`` level and
        ``subtracted``, the pointing metadata of the output frame (``wcsinfo``), detector,
        instrument and ``meta["exp_type"]``: building an Exposure by hand from ``data``,
        ``err``, ``dq`` and ``meta.wcs`` alone drops the background level, and the flags
        are then wrong (see :func:`daskod.read_jwst`, which reads files lazily).

        Parameters
        ----------
        model : stdatamodels DataModel
            An open ImageModel or IFUImageModel (a CubeModel gives a Cube).
        name : str, optional
            Default ``model.meta.filename``.
        group_id : str, optional
            Overrides the model's group id (as an association member's ``group_id`` does).
        """
        from daskod.io._datamodel import exposure_from_datamodel

        return exposure_from_datamodel(model, name=name, group_id=group_id)

    def copy_with(self, **changes: Any) -> Exposure:
        """A shallow copy with some fields replaced."""
        return replace(self, **changes)

    def __repr__(self) -> str:
        from daskod._repr import exposure_repr

        return exposure_repr(self)

    def _repr_html_(self) -> str:
        from daskod._repr import exposure_html

        return exposure_html(self)


def _dtype_of(array: Any) -> np.dtype:
    """The dtype of an array-like without reading it (zarr, Dask and lazy FITS arrays)."""
    dtype = getattr(array, "dtype", None)
    return np.dtype(dtype) if dtype is not None else np.asarray(array).dtype


def _check_array(exp: Exposure, attr: str, shape: tuple[int, int] | None) -> tuple[int, int]:
    value = getattr(exp, attr)
    if value is None:
        msg = f"Exposure {exp.name!r} has no {attr} array; give a 2-D array."
        raise InputError(msg, exposure=exp.name)
    ndim = np.ndim(value)
    if ndim != 2:
        msg = (f"Exposure {exp.name!r}: {attr} must be 2-D (ny, nx), got {ndim}-D shape "
               f"{np.shape(value)}; give one detector image per Exposure.")
        raise InputError(msg, exposure=exp.name)
    this = tuple(int(n) for n in np.shape(value))
    if shape is not None and this != shape:
        msg = (f"Exposure {exp.name!r}: {attr} has shape {this} but sci has shape {shape}; "
               "all arrays of one exposure must share the detector shape.")
        raise InputError(msg, exposure=exp.name)
    if min(this) < 1:
        msg = f"Exposure {exp.name!r}: {attr} is empty (shape {this})."
        raise InputError(msg, exposure=exp.name)
    return this


def validate_exposures(
    exposures: Any, *, need_wcs: bool = True, same_shape: bool = False,
    check_errors: bool = False,
) -> list[Exposure]:
    """Check a list of exposures before any heavy work, naming the first problem found.

    Parameters
    ----------
    exposures : sequence of Exposure
        The inputs.
    need_wcs : bool
        Require a WCS with a forward transform (resampling runs).
    same_shape : bool
        Require all detectors to share one shape (``resample_data=False``).
    check_errors : bool
        Read a small sample of each exposure (never a whole array) and warn when ERR or
        ``var_rnoise`` is zero, negative or not finite where SCI is valid
        (:func:`daskod._plausibility.check_errors`). False (the default) reads no pixel;
        runs that compute pass True, lazy graphs (``compute=False``) do not.

    Returns
    -------
    list of Exposure
        Shallow copies with ``name`` and ``group_id`` filled in; the caller's objects and
        arrays are untouched.

    Warns
    -----
    InputWarning
        An exposure's ERR or ``var_rnoise`` is implausible (named, with the fraction).
    """
    if isinstance(exposures, Exposure):
        exposures = [exposures]
    try:
        items = list(exposures)
    except TypeError:
        msg = (f"exposures must be a list of daskod.Exposure, got {type(exposures).__name__}.")
        raise InputError(msg) from None
    out: list[Exposure] = []
    first_shape = None
    names_seen: set[str] = set()
    for k, exp in enumerate(items):
        if not isinstance(exp, Exposure):
            msg = (f"exposures[{k}] is a {type(exp).__name__}, not a daskod.Exposure; wrap "
                   "arrays with daskod.Exposure(sci=..., err=..., dq=..., wcs=...).")
            raise InputError(msg)
        name = exp.name if exp.name else f"exposure{k}"
        if name in names_seen:
            name = f"{name}#{k}"
        names_seen.add(name)
        exp = exp.copy_with(name=name, group_id=exp.group_id or name)
        shape = _check_array(exp, "sci", None)
        _check_array(exp, "err", shape)
        _check_array(exp, "dq", shape)
        dq_dtype = _dtype_of(exp.dq)
        if not np.issubdtype(dq_dtype, np.integer):
            msg = (f"Exposure {name!r}: dq must be an integer array, got dtype {dq_dtype}; "
                   "cast it with dq.astype('uint32').")
            raise InputError(msg, exposure=name)
        for key in exp.variance_arrays():
            _check_array(exp, key, shape)
        if exp.wcsinfo is not None and not isinstance(exp.wcsinfo, dict):
            msg = (f"Exposure {name!r}: wcsinfo must be a dict (JWST meta.wcsinfo values), "
                   f"got {type(exp.wcsinfo).__name__}.")
            raise InputError(msg, exposure=name)
        for key in ("exposure_time", "background_level"):
            value = getattr(exp, key)
            if value is not None and not math.isfinite(float(value)):
                msg = f"Exposure {name!r}: {key} is {value!r}; it must be a finite number."
                raise InputError(msg, exposure=name)
        if need_wcs:
            if exp.wcs is None:
                msg = (f"Exposure {name!r} has no WCS; resampling needs detector->sky "
                       "(give wcs=, or run with resample_data=False on aligned frames).")
                raise WCSError(msg, exposure=name)
            if not hasattr(exp.wcs, "pixel_to_world_values") and not callable(exp.wcs):
                msg = (f"Exposure {name!r}: wcs is a {type(exp.wcs).__name__}, which cannot "
                       "map pixels to the sky; give a gwcs.WCS (or any APE-14 WCS).")
                raise WCSError(msg, exposure=name)
        if same_shape and first_shape is not None and shape != first_shape:
            msg = (f"Exposure {name!r} has shape {shape} but {out[0].name!r} has {first_shape}; "
                   "resample_data=False needs all exposures on one pixel grid.")
            raise InputError(msg, exposure=name)
        first_shape = first_shape or shape
        out.append(exp)
    if check_errors:  # after every structural check: a refusal comes before any read
        from daskod._plausibility import check_errors as check

        for exp in out:
            check(exp)
    return out
