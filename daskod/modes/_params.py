"""The reference step's parameters, validated once, before any work."""

from __future__ import annotations

import math
from dataclasses import dataclass

from daskod.flag._dq import interpret_good_bits
from daskod.flag._kernels import parse_pair
from daskod.resample._kernels import KERNEL_PAD

__all__ = ["ImagingParams"]


@dataclass(frozen=True)
class ImagingParams:
    """Parameters of imaging-mode outlier detection (reference names and defaults).

    See docs/algorithm.md section 1.2; ``pixmap_stepsize`` and ``pixmap_order`` default to the
    coarse grid that daskod uses (16 px, cubic), not the reference's full evaluation.
    """

    weight_type: str = "ivm"
    pixfrac: float = 1.0
    kernel: str = "square"
    fillval: str = "NAN"
    maskpt: float = 0.7
    snr: str | tuple[float, float] = "5.0 4.0"
    scale: str | tuple[float, float] = "1.2 0.7"
    backg: float = 0.0
    resample_data: bool = True
    good_bits: str | int | None = "~DO_NOT_USE"
    pixmap_stepsize: float = 16
    pixmap_order: int = 3

    def __post_init__(self) -> None:
        if self.weight_type not in ("ivm", "exptime"):
            msg = f"weight_type must be 'ivm' or 'exptime', got {self.weight_type!r}."
            raise ValueError(msg)
        if self.kernel not in KERNEL_PAD:
            msg = f"kernel must be one of {sorted(KERNEL_PAD)}, got {self.kernel!r}."
            raise ValueError(msg)
        for name, low, high in (("pixfrac", 0.0, 1.0), ("maskpt", 0.0, math.inf)):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or not (
                    low <= value <= high) or (name == "pixfrac" and value == 0):
                msg = f"{name} must be a finite number in ({low}, {high}], got {value!r}."
                raise ValueError(msg)
        if not isinstance(self.backg, int | float) or not math.isfinite(self.backg):
            msg = f"backg must be a finite number, got {self.backg!r}."
            raise ValueError(msg)
        if self.pixmap_order not in (1, 3):
            msg = f"pixmap_order must be 1 or 3, got {self.pixmap_order!r}."
            raise ValueError(msg)
        if not (isinstance(self.pixmap_stepsize, int | float)
                and math.isfinite(self.pixmap_stepsize) and self.pixmap_stepsize >= 1):
            msg = f"pixmap_stepsize must be a number >= 1, got {self.pixmap_stepsize!r}."
            raise ValueError(msg)
        self.fill_value  # noqa: B018 - validates
        self.snr_pair  # noqa: B018
        self.scale_pair  # noqa: B018
        self.bad_mask  # noqa: B018

    @property
    def snr_pair(self) -> tuple[float, float]:
        return parse_pair(self.snr, "snr")

    @property
    def scale_pair(self) -> tuple[float, float]:
        return parse_pair(self.scale, "scale")

    @property
    def bad_mask(self) -> int:
        return interpret_good_bits(self.good_bits)

    @property
    def fill_value(self) -> float:
        text = str(self.fillval).strip().upper()
        if text in ("NAN", "INDEF", "NONE"):
            return math.nan
        try:
            return float(self.fillval)
        except ValueError:
            msg = f"fillval must be 'NAN', 'INDEF' or a number, got {self.fillval!r}."
            raise ValueError(msg) from None
