"""Imaging options beyond the reference (issue 16), their validation and the presets.

The defaults are the reference's behaviour; each option is measured against it on the
simulator's truth by ``benchmarks/quality.py`` (README, "Better than the reference").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["NOISE_MODELS", "COMBINES", "PRESETS", "ImprovedOptions", "resolve_options"]

#: ``exposure``: each exposure's own ERR (the reference); ``median``: the blotted median of
#: the drizzled ERR (spec mode's noise term; jwst PR #10753); ``local``: the exposure's ERR,
#: 3x3 NaN-median filtered and never below its own read noise.
NOISE_MODELS = ("exposure", "median", "local")
#: ``median``: NaN-median over groups (the reference); ``minmed``: the minimum where 2-3
#: groups cover a pixel and it lies well below the median.
COMBINES = ("median", "minmed")
#: What each preset sets; explicit arguments win over it.
PRESETS: dict[str, dict[str, Any]] = {
    "parity": {"noise_model": "exposure", "source_noise": 0.0, "combine": "median"},
    "improved": {"noise_model": "local", "source_noise": 0.06, "combine": "minmed"},
}


@dataclass(frozen=True)
class ImprovedOptions:
    """Options of imaging outlier detection that the reference does not have."""

    noise_model: str = "exposure"
    source_noise: float = 0.0
    combine: str = "median"

    def __post_init__(self) -> None:
        if self.noise_model not in NOISE_MODELS:
            msg = f"noise_model must be one of {NOISE_MODELS}, got {self.noise_model!r}."
            raise ValueError(msg)
        if self.combine not in COMBINES:
            msg = f"combine must be one of {COMBINES}, got {self.combine!r}."
            raise ValueError(msg)
        value = self.source_noise
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                math.isfinite(value) and 0.0 <= value <= 1.0):
            msg = (f"source_noise must be a number in [0, 1] (a fraction of the blotted "
                   f"signal; 0 turns it off), got {value!r}.")
            raise ValueError(msg)

    @property
    def is_reference(self) -> bool:
        """True when nothing differs from the reference."""
        return self == ImprovedOptions()

    @property
    def extra_planes(self) -> tuple[str, ...]:
        """Planes drizzled beside the data and weight: ``error`` (the drizzled ERR, for
        ``noise_model="median"``), ``variance`` (for ``combine="minmed"``)."""
        return (("error",) if self.noise_model == "median" else ()) + (
            ("variance",) if self.combine == "minmed" else ())

    def changed(self) -> dict[str, Any]:
        """The options that differ from the reference (for fingerprints and logs)."""
        default = ImprovedOptions()
        return {name: getattr(self, name) for name in ("noise_model", "source_noise",
                                                       "combine")
                if getattr(self, name) != getattr(default, name)}


def resolve_options(preset: str | None, *, noise_model: str | None = None,
                    source_noise: float | None = None,
                    combine: str | None = None) -> ImprovedOptions:
    """The options of a run: the preset's values, overridden by the arguments given (not
    None), the reference's for the rest.

    Raises
    ------
    ValueError
        An unknown preset or an invalid value.
    """
    if preset is None:
        chosen: dict[str, Any] = {}
    elif preset in PRESETS:
        chosen = dict(PRESETS[preset])
    else:
        msg = f"preset must be one of {sorted(PRESETS)} or None, got {preset!r}."
        raise ValueError(msg)
    for name, value in (("noise_model", noise_model), ("source_noise", source_noise),
                        ("combine", combine)):
        if value is not None:
            chosen[name] = value
    return ImprovedOptions(**chosen)
