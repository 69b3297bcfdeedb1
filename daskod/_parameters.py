"""Parameter reference files: the JWST pipeline's ``pars-outlierdetectionstep`` ASDF files.

stpipe saves a step's parameters as an ASDF tree ``{class, name, parameters, steps}``
(``Step.export_config``; CRDS serves the same format as ``PARS-OUTLIERDETECTIONSTEP``
reference files, usually holding only the parameters that differ from the defaults). Older
files keep ``class`` and ``name`` inside ``parameters``. A pipeline's file (for example
``calwebb_image3``'s) lists its steps under ``steps``; the outlier-detection step is found
among them by class or by its name ``outlier_detection``.

:func:`read_parameter_file` turns any of these into keyword arguments of
:func:`daskod.detect_outliers`; :func:`write_parameter_file` writes a file that stpipe
(``strun --config``) and daskod both read.
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from typing import Any

from daskod._exceptions import DaskodWarning, InputError

__all__ = ["read_parameter_file", "write_parameter_file", "REFERENCE_STEP_CLASS",
           "DASKOD_STEP_CLASS", "REFERENCE_PARAMETERS"]

log = logging.getLogger(__name__)

#: The reference step's class, as stpipe writes it into parameter files.
REFERENCE_STEP_CLASS = "jwst.outlier_detection.outlier_detection_step.OutlierDetectionStep"
#: daskod's stpipe step (extra ``daskod[jwst]``), whose spec adds daskod's own parameters.
DASKOD_STEP_CLASS = "daskod.jwst_step.DaskodOutlierDetectionStep"
#: Parameters of the reference step's spec (jwst 3.0.0), in its order.
REFERENCE_PARAMETERS = (
    "weight_type", "pixfrac", "kernel", "fillval", "maskpt", "snr", "scale", "backg",
    "kernel_size", "threshold_percent", "rolling_window_width", "ifu_second_check",
    "save_intermediate_results", "resample_data", "good_bits", "search_output_file",
    "in_memory", "pixmap_stepsize", "pixmap_order",
)
#: stpipe's own parameters of every step (file names, hooks, skip): not outlier detection's.
STPIPE_PARAMETERS = frozenset({
    "pre_hooks", "post_hooks", "output_file", "output_dir", "output_ext", "output_use_model",
    "output_use_index", "save_results", "skip", "suffix", "search_output_file", "input_dir",
})
#: Keywords of detect_outliers a file cannot carry (objects, or what the caller decides).
_NOT_FROM_FILES = frozenset({"exposures", "compute", "inplace", "overwrite_store"})


def known_parameters() -> tuple[str, ...]:
    """Keyword parameters of :func:`daskod.detect_outliers` a parameter file may set."""
    from daskod._api import detect_outliers

    return tuple(k for k in inspect.signature(detect_outliers).parameters
                 if k not in _NOT_FROM_FILES)


def _plain(value: Any) -> Any:
    """YAML/numpy scalars as Python builtins; lists as lists."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _is_outlier_step(node: dict) -> bool:
    cls = str(node.get("class") or "")
    return cls.rsplit(".", 1)[-1] in ("OutlierDetectionStep", "DaskodOutlierDetectionStep") \
        or node.get("name") == "outlier_detection"


def _find_step(tree: dict, path: str) -> tuple[str, dict]:
    """``(class, parameters)`` of the outlier-detection step in a (pipeline) config tree."""
    params = tree.get("parameters")
    if not isinstance(params, dict):
        msg = (f"{path}: not an stpipe parameter file (no 'parameters' mapping in its ASDF "
               "tree); write one with Step.export_config or daskod.write_parameter_file.")
        raise InputError(msg)
    params = dict(params)
    if "class" not in tree and "class" in params:  # the older layout
        tree = {"class": params.pop("class"), "name": params.pop("name", None),
                "parameters": params,
                "steps": [{"class": v.get("class"), "name": k, "parameters": v}
                          for k, v in dict(params.pop("steps", {})).items()]}
    if _is_outlier_step(tree):
        return str(tree.get("class")), dict(tree["parameters"])
    for step in tree.get("steps") or []:
        if isinstance(step, dict) and _is_outlier_step(step):
            return str(step.get("class")), dict(step.get("parameters") or {})
    msg = (f"{path}: holds the parameters of {tree.get('class')!r}, which has no "
           "outlier-detection step (class OutlierDetectionStep or name 'outlier_detection').")
    raise InputError(msg)


def read_parameter_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read an stpipe parameter file (ASDF) as keyword arguments of ``detect_outliers``.

    Parameters
    ----------
    path : str or path-like
        A ``pars-outlierdetectionstep`` file: written by ``Step.export_config``, served by
        CRDS, written by :func:`write_parameter_file`, or a pipeline's parameter file that
        holds an ``outlier_detection`` step.

    Returns
    -------
    dict
        The step's parameters that :func:`daskod.detect_outliers` takes, with the file's
        values (a full export of the reference's defaults includes ``pixmap_stepsize=1.0``
        and ``pixmap_order=1``: every pixel evaluated, as the reference does). stpipe's own
        parameters (``output_dir``, ``suffix``, hooks, ...) are left out. Explicit
        arguments win when merged after it, e.g.
        ``detect_outliers(exposures, **{**read_parameter_file(p), "snr": "4 3"})`` or
        ``OutlierDetection(**read_parameter_file(p)).run(exposures, snr="4 3")``.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    InputError
        The file is not ASDF or holds no outlier-detection step parameters.

    Warns
    -----
    DaskodWarning
        For parameters daskod does not know (ignored), and for ``skip: true``.
    """
    import asdf

    path = os.fspath(path)
    if not os.path.isfile(path):
        msg = f"Parameter file {path!r} does not exist."
        raise FileNotFoundError(msg)
    try:
        with asdf.open(path, lazy_load=False, memmap=False) as af:
            tree = _plain({k: v for k, v in af.tree.items()
                           if k not in ("asdf_library", "history")})
    except Exception as err:
        msg = (f"{path}: cannot be read as an ASDF parameter file ({type(err).__name__}: "
               f"{err}); daskod reads the ASDF files of stpipe and CRDS, not .cfg files.")
        raise InputError(msg) from err
    cls, params = _find_step(tree, path)
    known = set(known_parameters())
    out: dict[str, Any] = {}
    unknown = []
    for key, value in params.items():
        if key in STPIPE_PARAMETERS:
            if key == "skip" and value:
                warnings.warn(f"{path}: the file says skip: true; daskod runs the step "
                              "anyway (leave it out to skip it).", DaskodWarning, stacklevel=2)
            continue
        if key in known:
            out[key] = value
        else:
            unknown.append(key)
    if unknown:
        warnings.warn(f"{path}: ignoring parameter(s) {sorted(unknown)} that daskod does not "
                      f"know (class {cls}).", DaskodWarning, stacklevel=2)
    log.info("Read %d parameter(s) of %s from %s", len(out), cls.rsplit(".", 1)[-1], path)
    return out


def _file_value(key: str, value: Any) -> Any:
    if key in ("snr", "scale", "kernel_size") and isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    if key == "cube_roi" and isinstance(value, tuple):
        return list(value)
    if value is None or isinstance(value, bool | int | float | str | list):
        return value
    msg = (f"Parameter {key}={value!r} cannot go into a parameter file (a "
           f"{type(value).__name__}); give a string or a number.")
    raise TypeError(msg)


def write_parameter_file(path: str | os.PathLike, parameters: dict[str, Any], *,
                         step_class: str | None = None, overwrite: bool = False) -> str:
    """Write parameters as an stpipe parameter file (ASDF) that ``strun`` and daskod read.

    Parameters
    ----------
    path : str or path-like
        Output file (``.asdf``).
    parameters : dict
        Keyword parameters of :func:`daskod.detect_outliers` (reference and daskod ones).
    step_class : str, optional
        The ``class`` written into the file. Default: the reference's step when every
        parameter is one of the reference's, else daskod's stpipe step
        (``daskod.jwst_step.DaskodOutlierDetectionStep``, whose spec has daskod's extras).
    overwrite : bool, optional
        Replace an existing file (refused otherwise).

    Returns
    -------
    str
        The path written.
    """
    import asdf

    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        msg = f"Parameter file {path!r} exists; pass overwrite=True to replace it."
        raise FileExistsError(msg)
    known = set(known_parameters())
    unknown = sorted(set(parameters) - known)
    if unknown:
        msg = (f"Unknown parameter(s) {unknown} for a parameter file; known: "
               f"{sorted(known)}.")
        raise TypeError(msg)
    values = {k: _file_value(k, v) for k, v in parameters.items()}
    extras = sorted(set(values) - set(REFERENCE_PARAMETERS))
    if step_class is None:
        step_class = DASKOD_STEP_CLASS if extras else REFERENCE_STEP_CLASS
    elif step_class == REFERENCE_STEP_CLASS and extras:
        msg = (f"The reference step has no parameter(s) {extras}; leave step_class unset "
               f"(daskod's step) or drop them.")
        raise ValueError(msg)
    tree = {"class": step_class, "name": step_class.rsplit(".", 1)[-1], "parameters": values}
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        asdf.AsdfFile(tree).write_to(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def command_line_defaults(argv: list[str] | None) -> tuple[str | None, dict[str, Any]]:
    """The ``--config`` file named on a command line and its values, for ``daskod run``.

    The values become the parser's defaults, so options given on the command line win.
    """
    import argparse
    import sys

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    if known.config is None:
        return None, {}
    return known.config, read_parameter_file(known.config)
