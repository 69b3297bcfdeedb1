"""The ``daskod`` command: ``daskod demo`` (and more subcommands as modes land)."""

from __future__ import annotations

import argparse
import logging
import sys

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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``daskod`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
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
    except (ValueError, OSError, MemoryError, ConnectionError) as err:
        print(f"daskod {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
