"""IFU intermediate products: the reference's ``OutlierIFUOutputModel`` per detector."""

from __future__ import annotations

import logging
import os
from typing import Any

__all__ = ["write_ifu_outputs"]

log = logging.getLogger(__name__)

_ARRAYS = ("diffarr", "minarr", "normarr", "minnorm")


def _join(folder: str, name: str) -> str:
    """``folder/name`` for a local folder or a URL."""
    if "://" in folder:
        return f"{folder.rstrip('/')}/{name}"
    return os.path.join(folder, name)


def write_ifu_outputs(result: Any, outdir: str, names: dict[str, str] | str,
                      stage: Any) -> list[str]:
    """Write one ``OutlierIFUOutputModel`` per detector of a difference-method run.

    ``names`` maps each detector to its file name (the reference's
    ``<stem>_<asn_id>_<detector>_outlier_output.fits``); a string is a root, giving
    ``<root>_<detector>_outlier_output.fits``.

    Each holds ``diffarr``, ``minarr``, ``normarr`` and ``minnorm`` and the kernel size and
    threshold in its metadata, as the reference's intermediate product. ``stage(final)``
    returns the local path to save to (the caller moves it to ``final``).

    Returns
    -------
    list of str
        The final paths.
    """
    from daskod.io._image_products import write_model_streamed

    finals = []
    for detector, info in result.ifu.items():
        if "diffarr" not in info:
            continue
        name = (names[detector] if isinstance(names, dict)
                else f"{names}_{detector}_outlier_output.fits")
        final = _join(outdir, name)

        def setup(model: Any, info: dict = info) -> None:
            model.meta.kernel_xsize = int(info["kernel_size"][0])
            model.meta.kernel_ysize = int(info["kernel_size"][1])
            model.meta.threshold_percent = float(result.params.get("threshold_percent", 99.8))

        # The arrays are read a block at a time (numpy, Dask or Zarr alike).
        write_model_streamed(stage(final), {name: info[name] for name in _ARRAYS},
                             model_class="OutlierIFUOutputModel", setup=setup)
        finals.append(final)
        log.info("Wrote %s", final)
    return finals
