"""The ``daskod`` command: ``run`` (JWST products), ``estimate`` (the plan of a run),
``demo`` (a simulated observation) and ``clean`` (what killed runs left behind).

Arguments are parsed and every value checked here, with plain Python only, before numpy,
Dask or astropy are imported: a mistyped option or a bad value fails at once, in command-line
terms, with the subcommand's usage.
"""

from __future__ import annotations

import argparse
import atexit
import difflib
import gc
import logging
import re
import sys
import traceback
from typing import Any

from daskod import _cli_values as value
from daskod._cli_improved import add_improved_options, improved_params
from daskod._console import LEVELS, console
from daskod._heap import pause_collector, resume_collector

__all__ = ["main", "parse_args"]

log = logging.getLogger("daskod.cli")


class _Parser(argparse.ArgumentParser):
    """Messages of value checks read "--option must ..." rather than "argument --option:"."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = re.sub(r"^argument (?:-\w/)?(--[\w-]+)(?:/[\w-]+)?: (?=must |is )", r"\1 ",
                         message)
        super().error(message)


class _Help(argparse.HelpFormatter):
    """Every option's help ends with its default (unless the text already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or "default" in text or "required" in text
                or action.dest in ("help", "version") or action.default is argparse.SUPPRESS):
            return text
        if action.nargs == 0 and action.default in (False, None):
            return f"{text} (default: off)"
        return f"{text} (default: %(default)s)"


def _output_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """-v/-q/--log-level/--log-file, accepted before and after the subcommand."""
    def default(v: Any) -> Any:
        return v if top else argparse.SUPPRESS

    group = parser.add_argument_group("output")
    group.add_argument("-v", "--verbose", action="store_true", default=default(False),
                       help="also log each phase, the memory budget and versions (INFO) "
                            "(default: off)")
    group.add_argument("-q", "--quiet", action="store_true", default=default(False),
                       help="errors only: no result lines, no warnings, no progress bar "
                            "(default: off)")
    group.add_argument("--log-level", type=str.upper, choices=LEVELS, default=default(None),
                       help="console log level (default: WARNING, INFO with -v)")
    group.add_argument("--log-file", metavar="PATH", default=default(None),
                       help="also write the log to PATH, with timestamps, at INFO unless "
                            "--log-level says otherwise (default: none)")


def _engine_options(group: Any, *, memory: str | None = None) -> None:
    shown = (f"(default: {memory})" if memory else "(default: a quarter of this machine's "
             "memory, at most 4 GiB, or the memory_limit option)")
    group.add_argument("--memory-limit", type=value.memory_size, default=memory,
                       metavar="SIZE", help="budget of the whole run, e.g. 2GiB; tile size and "
                                            f"workers follow {shown}")
    group.add_argument("--scheduler", type=value.scheduler, default=None,
                       help="synchronous | threads | processes | tcp://host:port (default: the "
                            "active distributed client, else threads)")
    group.add_argument("--tile-size", type=value.tile_size, default=None, metavar="PX",
                       help="tile edge in pixels; results do not depend on it (default: from "
                            "--memory-limit)")


def _run_options(run: argparse.ArgumentParser) -> None:
    run.add_argument("inputs", nargs="+", metavar="ASN_OR_FILES",
                     help="association .json file(s) and/or product files (local paths or "
                          "URLs such as s3://bucket/asn.json)")
    run.add_argument("-o", "--output-dir", required=True, metavar="OUTDIR",
                     help="folder (or URL, e.g. s3://bucket/out) for the products (required)")
    run.add_argument("--mode", choices=["imaging", "tso", "coron", "ifu", "spec"],
                     default=None,
                     help="default: guessed from the exposure type, as the reference does")
    run.add_argument("--overwrite", action="store_true",
                     help="replace products that already exist in OUTDIR (without it they are "
                          "refused, except the ones a resumed --store run was writing)")
    ref = run.add_argument_group("reference parameters (the reference step's names and "
                                 "defaults)")
    ref.add_argument("--weight-type", choices=["ivm", "exptime"], default="ivm",
                     help="drizzle weights: inverse read-noise variance or exposure time")
    ref.add_argument("--pixfrac", type=value.pixfrac, default=1.0,
                     help="drizzle drop size, a fraction of an input pixel in (0, 1]")
    ref.add_argument("--kernel", default="square",
                     choices=["square", "point", "turbo", "gaussian", "lanczos2", "lanczos3"],
                     help="drizzle kernel")
    ref.add_argument("--fillval", type=value.fillval, default="NAN",
                     help="value of output pixels no input covers: NAN, INDEF or a number")
    ref.add_argument("--maskpt", type=value.non_negative, default=0.7,
                     help="drizzled pixels with weight below maskpt times the group's mean "
                          "weight are left out of the median")
    ref.add_argument("--snr", type=value.pair, default="5.0 4.0",
                     help='noise thresholds, two numbers: "signal-to-noise for a pixel, for '
                          'its neighbours"')
    ref.add_argument("--scale", type=value.pair, default="1.2 0.7",
                     help="derivative scale factors, two numbers (raise the first, e.g. "
                          '"1.8 0.7", to spare undersampled star cores)')
    ref.add_argument("--backg", type=value.finite, default=0.0,
                     help="sky level taken off SCI - blot before the comparison, when the "
                          "metadata give none (meta.background)")
    ref.add_argument("--resample-data", default=True, action=argparse.BooleanOptionalAction,
                     help="drizzle onto a common sky grid; --no-resample-data takes the "
                          "median on the detector grid")
    ref.add_argument("--good-bits", type=value.good_bits, default="~DO_NOT_USE",
                     help="DQ bits that still count as good: names and/or integers, ~ inverts")
    ref.add_argument("--rolling-window-width", type=value.window, default=25, metavar="N",
                     help="time series: integrations in the rolling median (0 or 1: one "
                          "median over all)")
    ref.add_argument("--ifu-method", choices=["difference", "cube"], default="difference",
                     help="IFU: neighbour differences (the reference) or the older cube median")
    ref.add_argument("--kernel-size", type=value.kernel_size, default="7 7",
                     help='IFU difference: median-filter box, e.g. "7 7" (even sizes +1)')
    ref.add_argument("--threshold-percent", type=value.percent, default=99.8,
                     help="IFU difference: percentile cut")
    ref.add_argument("--ifu-second-check", action="store_true",
                     help="IFU difference: also flag pixels whose minimum difference is NaN")
    ref.add_argument("--pixmap-stepsize", type=value.finite, default=None,
                     help="coarse pixel-map step in pixels; 1 evaluates every pixel as the "
                          "reference does (default: 16, the pixmap_stepsize option)")
    ref.add_argument("--pixmap-order", type=int, choices=[1, 3], default=None,
                     help="spline order of the coarse pixel map (default: 3, the pixmap_order "
                          "option)")
    add_improved_options(run)
    eng = run.add_argument_group("engine")
    _engine_options(eng)
    eng.add_argument("--store", default=None,
                     help="Zarr working store: a folder or a URL such as s3://bucket/work.zarr "
                          "(kept; a rerun resumes it) (default: a temporary folder under "
                          "temp_dir, removed afterwards)")
    eng.add_argument("--overwrite-store", action="store_true",
                     help="discard what --store holds from a run of other inputs (otherwise "
                          "refused); a store of the same inputs is reused, phase by phase")
    eng.add_argument("--verify-inputs", action="store_true",
                     help="identify inputs by a hash of their pixels (one more read of every "
                          "input) instead of file sizes and times, so a resumed --store run "
                          "notices pixels changed in place")
    eng.add_argument("--storage-options", type=value.storage_options, default=None,
                     metavar="JSON",
                     help='fsspec options for URLs as JSON, e.g. \'{"anon": true}\' or '
                          '\'{"client_kwargs": {"endpoint_url": "http://host:9000"}}\' '
                          "(default: AWS_* environment variables)")
    eng.add_argument("--save-intermediate-results", action="store_true",
                     help="also write median, blot and drizzled-group products")
    eng.add_argument("--progress", default=True, action=argparse.BooleanOptionalAction,
                     help="progress bar on long phases")


def _config_option(run: argparse.ArgumentParser, config: dict[str, Any]) -> None:
    run.add_argument("--config", metavar="PARS.asdf", default=None,
                     help="stpipe parameter file (ASDF: a CRDS pars-outlierdetectionstep "
                          "file, Step.export_config, daskod.write_parameter_file); options "
                          "given on the command line win over it")
    run.set_defaults(**config)


def _build(config: dict[str, Any] | None = None
           ) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = _Parser(
        prog="daskod", formatter_class=_Help,
        description="Out-of-core outlier (cosmic-ray) detection for astronomical exposures.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    _output_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="{run,estimate,demo,clean}")
    subs: dict[str, argparse.ArgumentParser] = {}
    kw: dict[str, Any] = {"formatter_class": _Help}
    run = subs["run"] = sub.add_parser(
        "run", help="JWST association or *_cal.fits files in, *_crf.fits out", **kw,
        description="Outlier detection on JWST level-2 products (an association JSON, or "
                    "*_cal.fits / *_calints.fits files). Writes one *_crf.fits (imaging, IFU, "
                    "slit spectroscopy: every slit of a file in one product) or "
                    "*_crfints.fits (time series, coronagraphy) per science input into OUTDIR; "
                    "inputs are never modified. Parameters keep the reference step's names "
                    "and defaults.")
    _run_options(run)
    _config_option(run, config or {})
    run.add_argument("--dry-run", action="store_true",
                     help="print the plan (tile, workers, predicted peak memory, store bytes, "
                          "outputs and whether they exist) without reading pixels, and stop")
    _output_options(run, top=False)
    estimate = subs["estimate"] = sub.add_parser(
        "estimate", help="the plan of a run without running it (run --dry-run)", **kw,
        description="Print what 'daskod run' with the same arguments would do: tile size, "
                    "workers, predicted peak memory, working-store and staged bytes, the "
                    "outputs and whether they exist. Reads headers and metadata, no pixels.")
    _run_options(estimate)
    _config_option(estimate, config or {})
    _output_options(estimate, top=False)
    demo = subs["demo"] = sub.add_parser(
        "demo", help="simulate a dithered observation, detect outliers, report and draw", **kw,
        description="Simulate a dithered imaging observation with known cosmic rays, run "
                    "imaging-mode outlier detection on this machine, print per-exposure "
                    "statistics against the truth and write daskod_demo.png.")
    demo.add_argument("--n-exposures", type=_at_least_two, default=8, metavar="N",
                      help="exposures to simulate")
    demo.add_argument("--shape", type=_shape, default=(2048, 2048),
                      help="detector size, e.g. 2048 or 1024x2048 (default: 2048)")
    demo.add_argument("--seed", type=int, default=0, help="simulation seed")
    _engine_options(demo, memory="1GiB")
    demo.add_argument("-o", "--output-dir", default=".", help="where the PNG goes")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    _output_options(demo, top=False)
    clean = subs["clean"] = sub.add_parser(
        "clean", help="remove temporary folders and partial files of runs that were killed",
        **kw,
        description="Remove the temporary folders (daskod-work-*, daskod-outputs-*, "
                    "daskod-product-*, daskod-demo-*) whose process is gone from this host, "
                    "and partial products (.<name>.partial-*) in the FOLDERs given. Folders "
                    "of running processes and of other hosts are kept.")
    clean.add_argument("folders", nargs="*", metavar="FOLDER",
                       help="output folders to clear of partial products")
    clean.add_argument("--temp-dir", default=None,
                       help="the folder to clean (default: the temp_dir option, else the "
                            "system temporary folder)")
    clean.add_argument("--older-than", type=value.non_negative, default=None, metavar="HOURS",
                       help="also remove leftovers that name no owner (older daskod versions) "
                            "when untouched for HOURS (default: keep them)")
    clean.add_argument("--dry-run", action="store_true", help="only list what would go")
    _output_options(clean, top=False)
    return parser, subs


def _shape(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", " ").split()
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 16:
        msg = (f"must be one or two sizes of at least 16 pixels, e.g. 2048 or 1024x2048, "
               f"got {text!r}")
        raise argparse.ArgumentTypeError(msg)
    return values  # type: ignore[return-value]


def _at_least_two(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 2:
        msg = f"must be a whole number >= 2, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return n


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    config: dict[str, Any] = {}
    if "--config" in (sys.argv[1:] if argv is None else argv) or any(
            a.startswith("--config=") for a in (sys.argv[1:] if argv is None else argv)):
        from daskod._parameters import command_line_defaults

        try:
            _path, config = command_line_defaults(argv)
        except (OSError, ValueError) as err:
            _build()[0].error(f"--config: {err}")
    parser, subs = _build(config)
    args, extras = parser.parse_known_args(argv)
    target = subs.get(args.command or "", parser)
    if extras:
        known = set(re.findall(r"(?<![\w-])--?\w[\w-]*", target.format_help()))
        msg = f"unrecognized arguments: {' '.join(extras)}"
        guess = difflib.get_close_matches(extras[0].split("=")[0], sorted(known), n=1)
        if extras[0].startswith("-") and guess:
            msg += f" (did you mean {guess[0]}?)"
        target.error(msg)
    if args.verbose and args.quiet:
        target.error("-v/--verbose and -q/--quiet cannot be combined")
    return args, target


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line (exits with the subcommand's usage on an error)."""
    return _parse(argv)[0]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``daskod`` console script; returns the exit code."""
    args, target = _parse(argv)
    if args.version:
        import daskod

        print(daskod.__version__)
        return 0
    if args.command is None:
        target.print_help()
        return 2
    # The collector is off for the start-up (imports, metadata) until the graph starts
    # (daskod.engine._run resumes it) or this command returns; at exit (registered first,
    # run last) what exists is frozen, so the interpreter's final collections do not walk
    # it to free nothing that matters: products are renamed into place and logs closed by then.
    atexit.register(gc.freeze)
    pause_collector()
    try:
        screen = console(args.command, verbose=args.verbose, quiet=args.quiet,
                         log_level=args.log_level, log_file=args.log_file)
        screen.__enter__()
    except OSError as err:
        target.error(f"--log-file {args.log_file!r} cannot be opened ({err.strerror or err})")
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"daskod {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one line on the console; the traceback in --log-file
        known = (ValueError, OSError, MemoryError, ConnectionError, TypeError, ImportError)
        kind = "" if isinstance(err, known) else f"{type(err).__name__}: "
        # The traceback as text: a record holding the exception would keep the failed run's
        # frames (and a result's temporary store) alive in any handler that keeps records.
        log.error("%s\n%s", f"{kind}{err}".strip(), traceback.format_exc().rstrip())
        return 1
    finally:
        screen.__exit__(None, None, None)
        resume_collector()


def _echo(args: argparse.Namespace) -> Any:
    return (lambda *a, **k: None) if args.quiet else print


def _run(args: argparse.Namespace) -> int:
    from daskod._run_files import run_files

    params = {
        "mode": args.mode, "weight_type": args.weight_type, "pixfrac": args.pixfrac,
        "kernel": args.kernel, "fillval": args.fillval, "maskpt": args.maskpt,
        "snr": args.snr, "scale": args.scale, "backg": args.backg,
        "resample_data": args.resample_data, "good_bits": args.good_bits,
        "rolling_window_width": args.rolling_window_width,
        "pixmap_stepsize": args.pixmap_stepsize, "pixmap_order": args.pixmap_order,
        "ifu_method": args.ifu_method, "kernel_size": args.kernel_size,
        "threshold_percent": args.threshold_percent,
        "ifu_second_check": args.ifu_second_check,
        "overwrite_store": args.overwrite_store,
        "verify_inputs": args.verify_inputs,
        **improved_params(args),
    }
    run_files(args.inputs, args.output_dir, params=params, memory_limit=args.memory_limit,
              scheduler=args.scheduler, tile_size=args.tile_size,
              save_intermediate_results=args.save_intermediate_results,
              progress=args.progress and not args.quiet, store=args.store,
              storage_options=args.storage_options, overwrite=args.overwrite,
              dry_run=args.command == "estimate" or args.dry_run, echo=_echo(args))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from daskod._demo import run_demo

    run_demo(n_exposures=args.n_exposures, shape=args.shape, seed=args.seed,
             memory_limit=args.memory_limit, scheduler=args.scheduler,
             tile_size=args.tile_size, output_dir=args.output_dir,
             progress=not (args.no_progress or args.quiet), echo=_echo(args))
    return 0


def _clean(args: argparse.Namespace) -> int:
    from daskod.io._leftovers import clean_leftovers

    echo = _echo(args)
    found = clean_leftovers(temp_dir=args.temp_dir, folders=args.folders,
                            older_than=None if args.older_than is None
                            else args.older_than * 3600, dry_run=args.dry_run)
    verb = "Would remove" if args.dry_run else "Removed"
    for path in found:
        echo(f"{verb} {path}")
    echo(f"{verb} {len(found)} leftover(s) of runs whose process is gone.")
    return 0


_COMMANDS = {"run": _run, "estimate": _run, "demo": _demo, "clean": _clean}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
