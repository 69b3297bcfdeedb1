"""Short text and HTML summaries of results and inputs, for terminals and notebooks.

Like xarray's reprs: shapes, dtypes, where each array lives (numpy in memory, a lazy Dask
graph, a Zarr array, a FITS file read on demand), flags per exposure when they are known,
timings and the working store. Nothing here reads pixels or triggers a Dask compute.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["cube_html", "cube_repr", "exposure_html", "exposure_repr", "result_html",
           "result_repr"]

#: Exposures listed one per line in a result summary; longer lists show the first and last.
MAX_ROWS = 12
_VALUE_CHARS = 96


@dataclass
class _Summary:
    """A title and sections of (label, value) rows, rendered as text or HTML."""

    title: str
    subtitle: str = ""
    sections: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)

    def add(self, name: str, rows: list[tuple[str, str]]) -> None:
        if rows:
            self.sections.append((name, rows))

    def text(self) -> str:
        lines = [f"<{self.title}> {self.subtitle}".rstrip()]
        for name, rows in self.sections:
            lines.append(f"{name}:")
            width = min(max(len(label) for label, _ in rows), 24)
            lines.extend(f"    {label:<{width}}  {_clip(value)}".rstrip()
                         for label, value in rows)
        return "\n".join(lines)

    def html(self) -> str:
        esc = html.escape
        parts = ['<div class="daskod-repr" style="font-family: monospace; font-size: 12px">',
                 f"<div><b>{esc(self.title)}</b> {esc(self.subtitle)}</div>"]
        for k, (name, rows) in enumerate(self.sections):
            open_attr = " open" if k < 3 else ""
            parts.append(f"<details{open_attr}><summary>{esc(name)} ({len(rows)})</summary>")
            parts.append('<table style="border-collapse: collapse; margin-left: 1em">')
            parts.extend(
                f'<tr><td style="text-align: left; padding-right: 1em">{esc(label)}</td>'
                f'<td style="text-align: left">{esc(_clip(value))}</td></tr>'
                for label, value in rows)
            parts.append("</table></details>")
        parts.append("</div>")
        return "".join(parts)


def _clip(text: str) -> str:
    return text if len(text) <= _VALUE_CHARS else text[:_VALUE_CHARS - 3] + "..."


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return ""  # pragma: no cover


def is_lazy(array: Any) -> bool:
    """Whether an array is a Dask collection (not yet computed)."""
    return hasattr(array, "dask") and hasattr(array, "compute")


def array_kind(array: Any) -> str:
    """Where an array lives, without reading it: numpy, Dask, Zarr, a FITS file, ..."""
    import numpy as np

    if isinstance(array, np.ndarray):
        return f"numpy, {_size(array.nbytes)} in memory"
    if is_lazy(array):
        chunks = getattr(array, "chunksize", None)
        n = getattr(array, "npartitions", None)
        return f"dask (lazy), {n} chunks of {tuple(chunks)}" if chunks else "dask (lazy)"
    module = type(array).__module__.split(".")[0]
    if module == "zarr":
        return "zarr array (read on demand)"
    if hasattr(array, "path") and type(array).__name__ == "FitsArray":
        return "FITS file (read on demand)"
    return f"{type(array).__name__} (read on demand)"


def array_row(name: str, array: Any) -> tuple[str, str]:
    """``(name, "shape dtype kind")`` of an array-like, without reading it."""
    shape = getattr(array, "shape", None)
    dtype = getattr(array, "dtype", None)
    shape_txt = str(tuple(int(n) for n in shape)) if shape is not None else "?"
    return name, f"{shape_txt:<18} {dtype!s:<8} {array_kind(array)}"


def _wcs_text(wcs: Any) -> str:
    if wcs is None:
        return "none"
    kind = f"{type(wcs).__module__.split('.')[0]}.{type(wcs).__name__}"
    frames = getattr(wcs, "available_frames", None)
    if frames:
        return f"{kind}: {' -> '.join(str(f) for f in frames)}"
    return kind


def _meta_text(meta: dict) -> str:
    if not meta:
        return ""
    keys = list(meta)
    shown = ", ".join(f"{k}={meta[k]!r}" for k in keys[:4])
    more = f", ... ({len(keys)} keys)" if len(keys) > 4 else ""
    return shown + more


# --------------------------------------------------------------------------- inputs
def _exposure_summary(exp: Any) -> _Summary:
    name = exp.name if exp.name else "unnamed"
    group = f", group {exp.group_id!r}" if exp.group_id else ""
    summary = _Summary("daskod.Exposure", f"{name!r} {exp.shape}{group}")
    arrays = [array_row(key, getattr(exp, key)) for key in ("sci", "err", "dq")]
    arrays.extend(array_row(key, value) for key, value in exp.variance_arrays().items())
    summary.add("Arrays", arrays)
    attrs = [("wcs", _wcs_text(exp.wcs)), ("exposure_time", f"{exp.exposure_time:g} s")]
    if exp.background_level is not None or exp.background_subtracted is not None:
        state = {True: "subtracted", False: "not subtracted", None: "subtracted: unknown"}
        level = "none" if exp.background_level is None else f"{exp.background_level:g}"
        attrs.append(("background", f"{level} ({state[exp.background_subtracted]})"))
    if exp.detector or exp.instrument:
        attrs.append(("instrument", f"{exp.instrument or '?'} {exp.detector or ''}".strip()))
    if exp.meta:
        attrs.append(("meta", _meta_text(exp.meta)))
    summary.add("Attributes", attrs)
    return summary


def exposure_repr(exp: Any) -> str:
    """Text summary of a :class:`daskod.Exposure`."""
    return _exposure_summary(exp).text()


def exposure_html(exp: Any) -> str:
    """HTML summary of a :class:`daskod.Exposure` (Jupyter)."""
    return _exposure_summary(exp).html()


def _cube_summary(cube: Any) -> _Summary:
    name = cube.name if cube.name else "unnamed"
    shape = tuple(cube.shape)
    nints = shape[0] if shape else 0
    summary = _Summary("daskod.Cube", f"{name!r}: {nints} integrations of {shape[1:]}")
    arrays = [array_row(key, getattr(cube, key)) for key in ("sci", "err", "dq")]
    arrays.extend(array_row(key, value) for key, value in cube.variance_arrays().items())
    summary.add("Arrays", arrays)
    attrs = [("exp_type", str(cube.exp_type)), ("tso_visit", str(cube.tso_visit)),
             ("mode guess", str(cube.guess_mode() if len(cube.shape) == 3 else None))]
    if cube.meta:
        attrs.append(("meta", _meta_text(cube.meta)))
    summary.add("Attributes", attrs)
    return summary


def cube_repr(cube: Any) -> str:
    """Text summary of a :class:`daskod.Cube`."""
    return _cube_summary(cube).text()


def cube_html(cube: Any) -> str:
    """HTML summary of a :class:`daskod.Cube` (Jupyter)."""
    return _cube_summary(cube).html()


# --------------------------------------------------------------------------- results
def _elided(rows: list[tuple[str, str]], n_total: int) -> list[tuple[str, str]]:
    if n_total <= MAX_ROWS:
        return rows
    head, tail = rows[:MAX_ROWS - 2], rows[-2:]
    return [*head, ("...", f"({n_total - len(head) - len(tail)} more)"), *tail]


def _packed(label: str, items: list[str], width: int = 84) -> list[tuple[str, str]]:
    """Short ``items`` joined into as few rows of at most ``width`` characters as fit."""
    rows: list[str] = []
    for item in items:
        if rows and len(rows[-1]) + 2 + len(item) <= width:
            rows[-1] += ", " + item
        else:
            rows.append(item)
    return [(label if k == 0 else "", row) for k, row in enumerate(rows)]


def _flag_rows(result: Any) -> list[tuple[str, str]]:
    counts = list(result.n_flagged or [])
    if not counts:
        return []
    if any(is_lazy(n) or hasattr(n, "compute") for n in counts):
        return [("not computed", "lazy (compute=False); dask.compute(*result.n_flagged) "
                                 "or result.stats computes them")]
    rows = []
    for exp, n in zip(result.exposures, counts, strict=False):
        size = math.prod(exp.shape)
        pct = 100.0 * int(n) / size if size else 0.0
        rows.append((str(exp.name), f"{int(n):>10d} px  {pct:8.4f} %"))
    total = sum(int(n) for n in counts)
    return [*_elided(rows, len(rows)), ("total", f"{total:>10d} px")]


def _array_rows(result: Any) -> list[tuple[str, str]]:
    rows = []
    dq = list(result.dq or [])
    if dq:
        shapes = {tuple(getattr(d, "shape", ())) for d in dq}
        kinds = {array_kind(d).split(",")[0] for d in dq}
        dtype = getattr(dq[0], "dtype", "?")
        shape = f"{shapes.pop()}" if len(shapes) == 1 else f"{len(shapes)} shapes"
        rows.append(("dq", f"{f'{len(dq)} x {shape}':<18} {dtype!s:<8} "
                           f"{' / '.join(sorted(kinds))}"))
    if result.median is not None:
        rows.append(array_row("median", result.median))
    if result.median_wcs is not None:
        rows.append(("median_wcs", _wcs_text(result.median_wcs)))
    for detector, info in sorted((result.ifu or {}).items()):
        keys = ", ".join(k for k, v in info.items() if hasattr(v, "shape"))
        rows.append((f"ifu[{detector!r}]", keys or "statistics"))
    return rows


def _store_text(result: Any) -> str:
    store = result.store
    if store is None:
        return "none (temporary store removed after the run)"
    work = getattr(result, "work", None)
    temporary = work is not None and work.removed_with_its_arrays
    where = store if isinstance(store, str) else f"{type(store).__name__}({store!s})"
    return f"{where} ({'temporary, removed with this result' if temporary else 'kept'})"


def _result_summary(result: Any) -> _Summary:
    params = dict(result.params or {})
    mode = params.get("mode", "?")
    n = len(result.exposures)
    groups = f" in {len(result.groups)} groups" if result.groups else ""
    what = "cube" if mode in ("tso", "coron") else f"{n} exposure{'s' * (n != 1)}{groups}"
    summary = _Summary("daskod.OutlierResult", f"{result.status}, mode {mode}, {what}")
    if result.reason:
        summary.add("Reason", [("", result.reason)])
    summary.add("Arrays", _array_rows(result))
    summary.add("New outliers", _flag_rows(result))
    if result.timings:
        total = sum(result.timings.values())
        phases = [f"{k} {v:.2f}" for k, v in result.timings.items()]
        summary.add("Timings (s)", [("total", f"{total:.2f}"), *_packed("phases", phases)])
    rows = [("store", _store_text(result))]
    reused = {k: v for k, v in (result.checkpoints or {}).items() if v.get("reused")}
    if reused:
        rows.append(("resumed", ", ".join(f"{k} {v['reused']}/{v['total']}"
                                          for k, v in reused.items())))
    summary.add("Store", rows)
    summary.add("Parameters", _packed("", [f"{k}={v!r}" for k, v in params.items()
                                          if k != "mode"]))
    return summary


def result_repr(result: Any) -> str:
    """Text summary of an :class:`daskod.OutlierResult` (never computes anything)."""
    return _result_summary(result).text()


def result_html(result: Any) -> str:
    """HTML summary of an :class:`daskod.OutlierResult` (Jupyter; never computes anything)."""
    return _result_summary(result).html()
