"""JWST pixel DQ bits used by outlier detection (docs/algorithm.md section 6)."""

from __future__ import annotations

__all__ = ["DO_NOT_USE", "OUTLIER", "SATURATED", "JUMP_DET", "NON_SCIENCE", "OUTLIER_FLAGS",
           "interpret_good_bits"]

DO_NOT_USE = 1
SATURATED = 2
JUMP_DET = 4
OUTLIER = 16
NON_SCIENCE = 512
#: What every mode ORs into DQ at an outlier: DO_NOT_USE | OUTLIER = 17.
OUTLIER_FLAGS = DO_NOT_USE | OUTLIER

_NAMES = {
    "DO_NOT_USE": DO_NOT_USE,
    "SATURATED": SATURATED,
    "JUMP_DET": JUMP_DET,
    "OUTLIER": OUTLIER,
    "NON_SCIENCE": NON_SCIENCE,
}


def interpret_good_bits(good_bits: str | int | None) -> int:
    """Turn a ``good_bits`` value into the mask of DQ bits that mark a pixel *bad*.

    Parameters
    ----------
    good_bits : str, int or None
        As in the reference: ``"~DO_NOT_USE"`` (default: every bit but DO_NOT_USE is good),
        an integer of good bits, a comma/plus separated list of names or integers, or None
        (every bit is good, as astropy's ``bitfield_to_boolean_mask`` treats None).

    Returns
    -------
    int
        ``bad_mask``; a pixel is good when ``dq & bad_mask == 0``.
    """
    full = 0xFFFFFFFF
    if good_bits is None:
        return 0
    if isinstance(good_bits, int | bool):
        return full & ~int(good_bits)
    text = str(good_bits).strip()
    invert = text.startswith("~")
    if invert:
        text = text[1:].strip()
    good = 0
    for part in text.replace("+", ",").replace("|", ",").split(","):
        item = part.strip()
        if not item:
            continue
        if item.upper() in _NAMES:
            good |= _NAMES[item.upper()]
        else:
            try:
                good |= int(item, 0)
            except ValueError:
                msg = (f"good_bits has an unknown DQ flag name {item!r}; use names from "
                       f"{sorted(_NAMES)} or integers, e.g. '~DO_NOT_USE'.")
                raise ValueError(msg) from None
    if invert:
        # "~X": the bits in X are the BAD ones, everything else is good.
        return good
    return full & ~good
