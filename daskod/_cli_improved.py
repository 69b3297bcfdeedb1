"""``daskod run`` options of the imaging options beyond the reference (issue 16).

Plain argparse and plain Python (no numpy), so that a bad value fails at once. The names,
choices and meanings are those of :func:`daskod.detect_outliers`; :func:`improved_params`
passes only the options given, so that ``--preset`` fills the rest.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

__all__ = ["add_improved_options", "improved_params"]

#: Kept in step with :mod:`daskod.modes._improved` (imported lazily there, not here).
_PRESETS = ("parity", "improved")
_NOISE_MODELS = ("exposure", "median", "local")
_COMBINES = ("median", "minmed")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        msg = f"must be a number in [0, 1], got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_improved_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--preset``, ``--noise-model``, ``--source-noise`` and ``--combine``."""
    group = parser.add_argument_group(
        "beyond the reference (imaging with resampling; README, 'Better than the reference')")
    group.add_argument("--preset", choices=_PRESETS, default=None,
                       help="parity: the reference (default); improved: --noise-model local "
                            "--source-noise 0.06 --combine minmed (options given explicitly "
                            "win)")
    group.add_argument("--noise-model", choices=_NOISE_MODELS, default=None,
                       help="noise term of the flag rule: each exposure's own ERR (exposure, "
                            "the reference), the blotted median of the drizzled ERR (median; "
                            "about 1.2-1.3x the run time), or the exposure's ERR 3x3-median "
                            "filtered and floored by its read noise (local) (default: exposure)")
    group.add_argument("--source-noise", type=_fraction, default=None, metavar="FRACTION",
                       help="fraction of the blotted median added in quadrature to the noise "
                            "(0.06 spares undersampled star cores; default 0)")
    group.add_argument("--combine", choices=_COMBINES, default=None,
                       help="median (the reference), or minmed: the minimum where 2-3 groups "
                            "cover a pixel and it lies far below the median (default: median)")


def improved_params(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line, as keyword arguments of detect_outliers."""
    return {name: getattr(args, name)
            for name in ("preset", "noise_model", "source_noise", "combine")
            if getattr(args, name, None) is not None}
