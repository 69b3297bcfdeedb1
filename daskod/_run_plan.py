"""``daskod run`` before any pixel is read: inputs, output names, the output folder, existing
products, and the plan that ``--dry-run`` / ``daskod estimate`` print.

Everything a run could fail on late and can know early is checked here: names a FITS header
or a file system cannot take, an output folder that is a file, products that exist. Existing
products follow one rule: a fresh run refuses them unless ``overwrite``; a resumed run (the
same ``store``, holding the products list this run writes) may replace the products it was
writing; partial copies are always removed (:func:`daskod.io._location.publish`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from daskod._exceptions import ProductExistsError, StoreError
from daskod.io._products import check_name

__all__ = ["RunPlan", "plan_run", "recorded_products", "record_products", "describe_plan"]

log = logging.getLogger("daskod.run")

#: Root attribute of a kept working store: the products its runs wrote.
PRODUCTS_KEY = "daskod_products"
#: Modes that write one product per input file (the others take one cube).
PER_INPUT_MODES = ("imaging", "ifu", "spec")


@dataclass
class RunPlan:
    """What a ``daskod run`` will read and write (nothing read but headers and metadata)."""

    members: list[Any]
    items: list[Any]
    mode: str
    outdir: str
    outputs: list[str]
    extras: list[str]
    root: str
    store: str | None
    derived_store: bool
    storage_options: dict[str, Any] | None
    existing: list[str] = field(default_factory=list)
    own: set[str] = field(default_factory=set)

    @property
    def paths(self) -> list[str]:
        """The input files, in order."""
        return [m.path for m in self.members]

    @property
    def target(self) -> Any:
        """What :func:`daskod.detect_outliers` takes: the exposures, or the one cube."""
        return self.items if self.mode in PER_INPUT_MODES else self.items[0]

    def refuse_existing(self, *, overwrite: bool) -> None:
        """Raise :class:`ProductExistsError` for existing products this run may not replace."""
        refused = [p for p in self.existing if p not in self.own]
        if overwrite or not refused:
            return
        names = ", ".join(os.path.basename(p) for p in refused[:3])
        more = f" and {len(refused) - 3} more" if len(refused) > 3 else ""
        msg = (f"{len(refused)} product(s) already exist in {self.outdir} ({names}{more}); "
               "pass --overwrite (overwrite=True) to replace them, or choose another output "
               "folder.")
        raise ProductExistsError(msg, paths=refused)


def _check_folder(outdir: str, storage_options: dict[str, Any] | None) -> None:
    from daskod.io._location import is_url, local_path, open_store

    if is_url(outdir):
        # A probe object written and deleted now: bucket and credentials are checked.
        open_store(outdir, storage_options=storage_options, what="output folder")
        return
    path = local_path(outdir)
    if os.path.exists(path) and not os.path.isdir(path):
        msg = f"The output folder {outdir!r} is a file; give a folder (created if missing)."
        raise StoreError(msg)
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        msg = f"The output folder {outdir!r} cannot be created: {existing!r} is a file."
        raise StoreError(msg)
    if not os.access(existing, os.W_OK):
        msg = f"Output folder {outdir} is not writable ({existing} is not)."
        raise PermissionError(msg)


def _extras(items: list[Any], mode: str, paths: list[str], outdir: str, root: str,
            params: dict[str, Any]) -> list[str]:
    """The intermediate products ``save_intermediate_results`` adds (names known now; spec
    mode's per-slit names are known only once its sources are grouped: not listed)."""
    from daskod.io._products import join, stem_of

    if mode == "spec":
        return []
    out = [join(outdir, f"{root}_median.fits")] if not (
        mode == "ifu" and params.get("ifu_method", "difference") == "difference") else []
    if mode == "imaging" and params.get("resample_data", True):
        from daskod.modes.imaging import group_exposures

        out += [join(outdir, f"{stem_of(p)}_blot.fits") for p in paths]
        out += [join(outdir, f"{stem_of(paths[g[0]])}_outlier_i2d.fits")
                for g in group_exposures(items)]
    if mode == "ifu" and params.get("ifu_method", "difference") == "difference":
        from daskod.modes.ifu import detector_groups

        out += [join(outdir, f"{root}_{d}_outlier_output.fits") for d in detector_groups(items)]
    return out


def _exists(path: str, storage_options: dict[str, Any] | None) -> bool:
    from daskod.io._location import is_url, url_filesystem

    if is_url(path):
        fs, key = url_filesystem(path, storage_options, what="output")
        return bool(fs.exists(key))
    if os.path.isdir(path):
        msg = (f"The output {path!r} is a folder; remove or rename it, or choose another "
               "output folder.")
        raise StoreError(msg)
    return os.path.lexists(path)


def recorded_products(store: Any, storage_options: dict[str, Any] | None) -> set[str]:
    """The products runs into this working store wrote (empty when none, or no store)."""
    if store is None:
        return set()
    import zarr

    from daskod.io._location import is_url, local_path

    try:
        if isinstance(store, str) and is_url(store):
            group = zarr.open_group(store, mode="r", storage_options=storage_options)
        elif isinstance(store, str | os.PathLike):
            if not os.path.isdir(local_path(os.fspath(store))):
                return set()
            group = zarr.open_group(local_path(os.fspath(store)), mode="r")
        else:
            group = zarr.open_group(store=store, mode="r")
        value = group.attrs.get(PRODUCTS_KEY) or []
    except Exception:  # no store yet, or not a zarr hierarchy: nothing recorded
        return set()
    return {str(v) for v in value}


def record_products(root: Any, outputs: list[str]) -> None:
    """Note in a kept working store the products its run writes (a resumed run may replace
    them); ``root`` is the store as the result holds it."""
    import zarr

    group = zarr.open_group(store=root, mode="a")
    before = list(group.attrs.get(PRODUCTS_KEY) or [])
    group.attrs[PRODUCTS_KEY] = sorted(set(before) | set(outputs))


def plan_run(inputs: list[str], outdir: str, *, params: dict[str, Any], store: str | None,
             storage_options: dict[str, Any] | None, save_intermediate_results: bool,
             memory_limit: Any = None, members: list[Any] | None = None) -> RunPlan:
    """Check a run of ``daskod run`` and return its plan; reads no pixel. ``members``: the
    inputs' science members when the caller gathered them already
    (:func:`daskod.io._jwst.gather_members`).

    Raises
    ------
    InputError
        A member, its output name or the product name is unusable (named).
    StoreError, PermissionError
        The output folder is a file, cannot be created or written; an output is a folder.
    """
    from daskod.io._jwst import gather_members, read_members
    from daskod.io._products import join, plan_outputs, stem_of

    if members is None:
        members = gather_members(inputs, storage_options=storage_options)
    paths = [m.path for m in members]
    for path in paths:  # names first: they fail a run at its very end otherwise
        check_name(f"{stem_of(path)}_crf.fits", f"{path!r}: its output name")
    root = members[0].product or stem_of(paths[0])
    if save_intermediate_results:
        check_name(root, "The association's product name")
    _check_folder(outdir, storage_options)
    items, _info, found = read_members(members, storage_options=storage_options,
                                       memory_limit=memory_limit)
    mode = params.get("mode") or found
    if (mode == "spec") != (found == "spec"):
        msg = (f"--mode {mode} does not fit these inputs (their exposure type says {found}); "
               "slit spectroscopy products and the other modes' products are read "
               "differently: leave --mode out or give the right one.")
        raise ValueError(msg)
    if mode not in PER_INPUT_MODES and len(items) != 1:
        msg = f"mode {mode!r} processes one cube per run; got {len(items)} inputs."
        raise ValueError(msg)
    outputs = plan_outputs(paths, outdir, "crf" if mode in PER_INPUT_MODES else "crfints")
    extras = (_extras(items, mode, paths, outdir, root, params)
              if save_intermediate_results else [])
    derived = store is None and save_intermediate_results
    if derived:
        store = join(outdir, f"{root}_intermediates.zarr")
    plan = RunPlan(members=members, items=items, mode=mode, outdir=outdir, outputs=outputs,
                   extras=extras, root=root, store=store, derived_store=derived,
                   storage_options=storage_options)
    plan.existing = [p for p in outputs + extras if _exists(p, storage_options)]
    if plan.existing and not params.get("overwrite_store"):
        plan.own = recorded_products(store, storage_options) & set(plan.existing)
    return plan


def _size(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale or unit == "KiB":
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"  # pragma: no cover


def describe_plan(plan: RunPlan, *, memory_limit: Any, scheduler: Any, tile_size: Any,
                  params: dict[str, Any], staged_bytes: int) -> list[str]:
    """The lines ``--dry-run`` prints: inputs, memory, store and staged bytes, outputs."""
    import daskod
    from daskod.io._location import free_bytes, is_url, store_location, temp_parent

    items, mode = plan.items, plan.mode
    lines = []
    if mode == "spec":
        sources = {e.meta.get("source_name") or e.meta.get("source_id") for e in items}
        lines.append(f"Plan: {len(items)} slit(s) in {len(plan.paths)} file(s), mode spec, "
                     f"{len(sources)} source(s); nothing read but headers and metadata.")
    elif mode in ("imaging", "ifu"):
        if mode == "ifu":
            from daskod.modes.ifu import detector_groups

            groups = f"{len(detector_groups(items))} detector(s)"
        else:
            groups = f"{len({e.group_id for e in items})} group(s)"
        lines.append(f"Plan: {len(items)} exposure(s), mode {mode}, {groups}; nothing read "
                     "but headers and metadata.")
    else:
        shape = " x ".join(str(n) for n in items[0].shape)
        lines.append(f"Plan: 1 cube ({shape}), mode {mode}; nothing read but headers and "
                     "metadata.")
    est = daskod.estimate_memory(plan.target, memory_limit=memory_limit, tile_size=tile_size,
                                 scheduler=scheduler, mode=mode,
                                 resample_data=params.get("resample_data", True),
                                 rolling_window_width=params.get("rolling_window_width", 25))
    workers = est["workers"]
    what = (f"tile {est['tile']} px (median tile {est['median_tile']} px)" if "tile" in est
            else f"{_size(est['budget_per_task'])} per task")
    lines.append(f"  memory: memory limit {_size(est['memory_limit'])}, predicted peak "
                 f"{_size(est['predicted_peak'])}; {what}, {workers} worker(s)")
    if "output_frame" in est:
        ny, nx = est["output_frame"]
        lines.append(f"  output frame: {ny} x {nx} px")
    temp = temp_parent()
    where = (store_location(plan.store) if plan.store is not None
             else f"a temporary folder under {temp}")
    local = plan.store if plan.store is not None and not is_url(plan.store) else temp
    free = f", {_size(free_bytes(local))} free" if plan.store is None or not is_url(
        plan.store) else ""
    lines.append(f"  working store: {where}, about {_size(est['store_bytes'])} written{free}")
    lines.append(f"  staged products: about {_size(staged_bytes)} under {temp}, "
                 f"{_size(free_bytes(temp))} free")
    exists = os.path.isdir(plan.outdir) or is_url(plan.outdir)
    lines.append(f"  outputs in {plan.outdir}" + ("" if exists else " (created by the run)")
                 + ":")
    width = max(len(os.path.basename(p)) for p in plan.outputs + plan.extras)
    for path in plan.outputs + plan.extras:
        if path not in plan.existing:
            state = "new"
        elif path in plan.own:
            state = "exists (replaced: written by the run this store resumes)"
        else:
            state = "exists (refused without --overwrite)"
        lines.append(f"    {os.path.basename(path):<{width}}  {state}")
    return lines
