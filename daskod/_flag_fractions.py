"""A warning when a run flags an implausible share of an exposure's usable pixels.

Cosmic rays and other outliers touch well under one per cent of a detector in ordinary
exposures (the reference's logs of ~1e-3 to 1e-2 are the norm; jwst#8298 was a regression
that flagged 85 %). Many times more usually means the inputs disagree with each other for a
reason outlier detection cannot see, and it then silently damages the science. The common
causes, named in the warning:

- background metadata missing: an exposure whose sky was not subtracted must say so
  (``background_level`` with ``background_subtracted=False``; ``meta.background`` in JWST
  products); without it its sky is compared with a sky-subtracted median;
- SCI and ERR in different units (or ERR zero), or exposures in different units;
- a WCS misaligned between exposures (stars land on each other's wings).

The threshold is the option ``implausible_flag_fraction`` (``daskod.set_options``; default
0.05 of the usable pixels; None disables the check).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from daskod._exceptions import ImplausibleFlagsWarning

__all__ = ["check_flag_fractions", "LIKELY_CAUSES"]

LIKELY_CAUSES = (
    "background metadata missing (an exposure whose sky was not subtracted needs "
    "background_level and background_subtracted=False, JWST meta.background; "
    "daskod.read_jwst and Exposure.from_datamodel carry them)",
    "SCI and ERR in different units, or exposures in different units",
    "a WCS misaligned between exposures",
)


def check_flag_fractions(names: Sequence[str], n_flagged: Sequence[int],
                         n_usable: Sequence[int], *, threshold: float | None = None
                         ) -> list[tuple[str, float]]:
    """Warn when exposures have an implausible fraction of their usable pixels flagged.

    Parameters
    ----------
    names : sequence of str
        Exposure names.
    n_flagged : sequence of int
        New outliers per exposure.
    n_usable : sequence of int
        Usable pixels per exposure (not DO_NOT_USE in the input, finite SCI).
    threshold : float, optional
        Fraction above which to warn; default the option ``implausible_flag_fraction``
        (None there disables the check).

    Returns
    -------
    list of (name, fraction)
        The exposures warned about (one :class:`~daskod.ImplausibleFlagsWarning` names them
        all, with the likely causes).
    """
    from daskod.options import get_option

    if threshold is None:
        threshold = get_option("implausible_flag_fraction")
    if threshold is None:
        return []
    threshold = float(threshold)
    if not 0.0 < threshold <= 1.0:
        msg = f"implausible_flag_fraction must be in (0, 1], got {threshold!r}."
        raise ValueError(msg)
    if not len(names) == len(n_flagged) == len(n_usable):
        msg = (f"names, n_flagged and n_usable must have one entry per exposure, got "
               f"{len(names)}, {len(n_flagged)} and {len(n_usable)}.")
        raise ValueError(msg)
    bad = [(str(name), int(n) / int(u)) for name, n, u in zip(names, n_flagged, n_usable,
                                                                strict=True)
           if int(u) > 0 and int(n) / int(u) > threshold]
    if bad:
        listed = ", ".join(f"{name!r} ({100 * f:.1f} %)" for name, f in bad)
        causes = "; ".join(f"({k + 1}) {c}" for k, c in enumerate(LIKELY_CAUSES))
        msg = (f"{len(bad)} exposure(s) had more than {100 * threshold:g} % of their usable "
               f"pixels flagged as outliers: {listed}. Cosmic rays alone flag well under 1 %; "
               f"check the inputs. Likely causes: {causes}. The threshold is the option "
               "implausible_flag_fraction (daskod.set_options).")
        warnings.warn(msg, ImplausibleFlagsWarning, stacklevel=2)
    return bad
