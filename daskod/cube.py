"""The input container of the time-series and coronagraphic modes: one exposure's cube."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from daskod._exceptions import InputError
from daskod.exposure import _dtype_of

__all__ = ["Cube", "validate_cube", "TSO_EXP_TYPES", "CORON_EXP_TYPES"]

#: Exposure types the reference treats as coronagraphic (docs/algorithm.md section 1.1).
CORON_EXP_TYPES = ("NRC_CORON", "MIR_LYOT", "MIR_4QPM")
#: Exposure types that are time series whatever the visit flag says (association TSO list).
TSO_EXP_TYPES = ("NRC_TSIMAGE", "NRC_TSGRISM", "NIS_SOSS", "MIR_LRS-SLITLESS", "NRS_BRIGHTOBJ",
                 "MIR_IMAGE_TSO")


@dataclass(eq=False)
class Cube:
    """One exposure of ``nints`` integrations: SCI, ERR and DQ cubes (nints, ny, nx).

    Parameters
    ----------
    sci, err : array_like, shape (nints, ny, nx)
        numpy, Dask or Zarr arrays.
    dq : array_like of int, shape (nints, ny, nx)
    var_rnoise, var_poisson, var_flat : array_like, optional
        Set to NaN where DO_NOT_USE, as the reference does.
    tso_visit : bool, optional
        The visit is a time series (``meta.visit.tsovisit``); used by ``mode=None``.
    exp_type : str, optional
        JWST exposure type; used by ``mode=None``.
    name : str, optional
        Used in messages and outputs.
    meta : dict
        Carried along.
    """

    sci: Any
    err: Any
    dq: Any
    var_rnoise: Any = None
    var_poisson: Any = None
    var_flat: Any = None
    tso_visit: bool | None = None
    exp_type: str | None = None
    name: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in np.shape(self.sci))

    def variance_arrays(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("var_rnoise", "var_poisson", "var_flat")
                if getattr(self, k) is not None}

    def guess_mode(self) -> str | None:
        """``"tso"`` or ``"coron"`` as the reference's mode guess, or None."""
        exp_type = (self.exp_type or "").upper()
        if exp_type in CORON_EXP_TYPES:
            return "coron"
        if self.shape[0] >= 2 and (self.tso_visit or exp_type in TSO_EXP_TYPES):
            return "tso"
        return None

    def __repr__(self) -> str:
        from daskod._repr import cube_repr

        return cube_repr(self)

    def _repr_html_(self) -> str:
        from daskod._repr import cube_html

        return cube_html(self)


def validate_cube(cube: Any, *, mode: str) -> Cube:
    """Check a cube before any work; errors name the cube and the problem."""
    if isinstance(cube, list | tuple) and len(cube) == 1:
        cube = cube[0]
    if not isinstance(cube, Cube):
        kind = type(cube).__name__
        if isinstance(cube, list | tuple):
            kind = f"a list of {len(cube)} items"
        msg = (f"mode={mode!r} takes one daskod.Cube (integrations x rows x columns), got "
               f"{kind}; wrap the arrays with daskod.Cube(sci=..., err=..., dq=...).")
        raise TypeError(msg)
    name = cube.name or "cube"
    cube = replace(cube, name=name)
    shape = None
    for attr in ("sci", "err", "dq", *cube.variance_arrays()):
        value = getattr(cube, attr)
        if value is None:
            msg = f"Cube {name!r} has no {attr} array."
            raise InputError(msg, exposure=name)
        this = tuple(int(n) for n in np.shape(value))
        if len(this) != 3:
            msg = (f"Cube {name!r}: {attr} must be 3-D (integrations, rows, columns), got "
                   f"shape {this}; mode={mode!r} needs a cube, not an image.")
            raise InputError(msg, exposure=name)
        if shape is not None and this != shape:
            msg = (f"Cube {name!r}: {attr} has shape {this} but sci has {shape}; all cubes of "
                   "one exposure must match.")
            raise InputError(msg, exposure=name)
        shape = shape or this
    assert shape is not None
    if shape[0] < 2:
        msg = (f"Cube {name!r} has {shape[0]} integration(s); {mode} outlier detection needs "
               "at least 2.")
        raise InputError(msg, exposure=name)
    if min(shape[1:]) < 1:
        msg = f"Cube {name!r} is empty (shape {shape})."
        raise InputError(msg, exposure=name)
    dtype = _dtype_of(cube.dq)
    if not np.issubdtype(dtype, np.integer):
        msg = f"Cube {name!r}: dq must be an integer array, got dtype {dtype}."
        raise InputError(msg, exposure=name)
    return cube


