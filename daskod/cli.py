"""The ``daskod`` command: ``daskod demo`` (and more subcommands as modes land)."""

from __future__ import annotations

import argparse
import logging
import sys

from daskod._cli_improved import add_improved_options, improved_params

__all__ = ["main"]


def _shape(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", " ").split()
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        msg = f"shape must look like 2048 or 2048x2048, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 16:
        msg = f"shape must be two sizes of at least 16 pixels, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return values  # type: ignore[return-value]


def _json_dict(text: str) -> dict:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        msg = f"--storage-options must be a JSON object, got {text!r} ({err})"
        raise argparse.ArgumentTypeError(msg) from None
    if not isinstance(value, dict):
        msg = f"--storage-options must be a JSON object, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="daskod",
        description="Out-of-core outlier (cosmic-ray) detection for astronomical exposures.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every phase")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser(
        "demo", help="simulate a dithered observation, detect outliers, report and draw",
        description="Simulate a dithered imaging observation with known cosmic rays, run "
                    "imaging-mode outlier detection on this machine, print per-exposure "
                    "statistics against the truth and write daskod_demo.png.")
    demo.add_argument("--n-exposures", type=int, default=8, help="exposures (default 8)")
    demo.add_argument("--shape", type=_shape, default=(2048, 2048),
                      help="detector size, e.g. 2048 or 1024x2048 (default 2048)")
    demo.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    demo.add_argument("--memory-limit", default="1GiB", help="memory budget (default 1GiB)")
    demo.add_argument("--scheduler", default=None,
                      help="synchronous | threads | processes | tcp://host:port "
                           "(default threads)")
    demo.add_argument("--tile-size", type=int, default=None, help="tile edge in pixels")
    demo.add_argument("-o", "--output-dir", default=".", help="where the PNG goes")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")

    run = sub.add_parser(
        "run", help="JWST association or *_cal.fits files in, *_crf.fits out",
        description="Outlier detection on JWST level-2 products (an association JSON, or "
                    "*_cal.fits / *_calints.fits files). Writes one *_crf.fits (imaging, IFU) or "
                    "*_crfints.fits (time series, coronagraphy) per science input into OUTDIR; "
                    "inputs are never modified. Parameters keep the reference step's names "
                    "and defaults.")
    run.add_argument("inputs", nargs="+", metavar="ASN_OR_FILES",
                     help="association .json file(s) and/or product files (local paths or "
                          "URLs such as s3://bucket/asn.json)")
    run.add_argument("-o", "--output-dir", required=True,
                     help="folder (or URL, e.g. s3://bucket/out) for the products")
    run.add_argument("--mode", choices=["imaging", "tso", "coron", "ifu"], default=None,
                     help="default: guessed from the exposure type, as the reference does")
    ref = run.add_argument_group("reference parameters")
    ref.add_argument("--weight-type", choices=["ivm", "exptime"], default="ivm")
    ref.add_argument("--pixfrac", type=float, default=1.0)
    ref.add_argument("--kernel", default="square",
                     choices=["square", "point", "turbo", "gaussian", "lanczos2", "lanczos3"])
    ref.add_argument("--fillval", default="NAN")
    ref.add_argument("--maskpt", type=float, default=0.7)
    ref.add_argument("--snr", default="5.0 4.0", help='two numbers, e.g. "5.0 4.0"')
    ref.add_argument("--scale", default="1.2 0.7", help='two numbers, e.g. "1.2 0.7"')
    ref.add_argument("--backg", type=float, default=0.0)
    ref.add_argument("--resample-data", default=True, action=argparse.BooleanOptionalAction)
    ref.add_argument("--good-bits", default="~DO_NOT_USE")
    ref.add_argument("--rolling-window-width", type=int, default=25)
    ref.add_argument("--ifu-method", choices=["difference", "cube"], default="difference",
                     help="IFU: neighbour differences (the reference) or the older cube median")
    ref.add_argument("--kernel-size", default="7 7",
                     help='IFU difference: median-filter box, e.g. "7 7" (even sizes +1)')
    ref.add_argument("--threshold-percent", type=float, default=99.8,
                     help="IFU difference: percentile cut (default 99.8)")
    ref.add_argument("--ifu-second-check", action="store_true",
                     help="IFU difference: also flag pixels whose minimum difference is NaN")
    ref.add_argument("--pixmap-stepsize", type=float, default=None,
                     help="coarse pixel-map step (default 16; 1 = every pixel)")
    ref.add_argument("--pixmap-order", type=int, choices=[1, 3], default=None)
    add_improved_options(run)
    eng = run.add_argument_group("engine")
    eng.add_argument("--memory-limit", default=None, help='budget, e.g. "1GiB"')
    eng.add_argument("--scheduler", default=None,
                     help="synchronous | threads | processes | tcp://host:port")
    eng.add_argument("--tile-size", type=int, default=None)
    eng.add_argument("--store", default=None,
                     help="Zarr working store: a folder or a URL such as s3://bucket/work.zarr "
                          "(kept; a rerun resumes it). Default: a temporary folder under "
                          "temp_dir, removed afterwards")
    eng.add_argument("--overwrite-store", action="store_true",
                     help="discard what --store holds from a run with other inputs or "
                          "parameters (otherwise refused) instead of resuming it")
    eng.add_argument("--storage-options", type=_json_dict, default=None,
                     help='fsspec options for URLs as JSON, e.g. \'{"anon": true}\' or '
                          '\'{"client_kwargs": {"endpoint_url": "http://host:9000"}}\' '
                          "(default: AWS_* environment variables)")
    eng.add_argument("--save-intermediate-results", action="store_true",
                     help="also write median, blot and drizzled-group products")
    eng.add_argument("--progress", default=True, action=argparse.BooleanOptionalAction,
                     help="progress bar on long phases")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``daskod`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    verbose = args.verbose or args.command == "run"
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    if args.version:
        import daskod

        print(daskod.__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "demo":
            from daskod._demo import run_demo

            if args.n_exposures < 2:
                parser.error("--n-exposures must be at least 2")
            run_demo(n_exposures=args.n_exposures, shape=args.shape, seed=args.seed,
                     memory_limit=args.memory_limit, scheduler=args.scheduler,
                     tile_size=args.tile_size, output_dir=args.output_dir,
                     progress=not args.no_progress)
            return 0
        if args.command == "run":
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
                **improved_params(args),
            }
            run_files(args.inputs, args.output_dir, params=params,
                      memory_limit=args.memory_limit, scheduler=args.scheduler,
                      tile_size=args.tile_size,
                      save_intermediate_results=args.save_intermediate_results,
                      progress=args.progress, store=args.store,
                      storage_options=args.storage_options)
            return 0
    except Exception as err:  # a command line says why in one line
        if verbose:
            logging.getLogger("daskod").debug("Traceback", exc_info=True)
        known = (ValueError, OSError, MemoryError, ConnectionError, TypeError, ImportError)
        kind = "" if isinstance(err, known) else f"{type(err).__name__}: "
        print(f"daskod {args.command}: error: {kind}{err}".splitlines()[0], file=sys.stderr)
        return 1
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
