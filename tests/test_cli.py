"""The command line: options documented with defaults, errors in CLI terms before heavy
imports, quiet/verbose/log-file output (issue 14, items 7 and 8)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from daskod import datasets
from daskod.cli import main, parse_args


@pytest.fixture(scope="module")
def cal_files(tmp_path_factory):
    pytest.importorskip("stdatamodels.jwst.datamodels")
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(96, 96), seed=4)
    return datasets.write_cal_files(sim.exposures, tmp_path_factory.mktemp("cal"))


def _option_blocks(help_text: str) -> dict[str, str]:
    """Option name -> its help text (argparse wraps long help over several lines)."""
    blocks: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        m = re.match(r"^  (-\w, )?(--[\w-]+)", line)
        if m:
            current = m.group(2)
            blocks[current] = line
        elif current and line.startswith("      "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return blocks


@pytest.mark.parametrize("command", ["run", "demo", "estimate", "clean"])
def test_every_option_has_help_with_its_default(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    blocks = _option_blocks(capsys.readouterr().out)
    assert len(blocks) >= 3
    for option, text in blocks.items():
        if option == "--help":
            continue
        assert "default" in text, f"{command} {option} shows no default: {text!r}"


def test_reference_parameters_show_the_reference_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    blocks = _option_blocks(capsys.readouterr().out)
    expected = {"--maskpt": "0.7", "--pixfrac": "1.0", "--fillval": "NAN", "--backg": "0.0",
                "--good-bits": "~DO_NOT_USE", "--snr": "5.0 4.0", "--scale": "1.2 0.7",
                "--weight-type": "ivm", "--kernel": "square"}
    for option, default in expected.items():
        assert f"(default: {default})" in blocks[option], blocks[option]


def test_mistyped_option_prints_the_subcommand_usage(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "a.json", "-o", "out", "--snrr", "5 4"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: daskod run")
    assert "unrecognized arguments: --snrr" in err and "did you mean --snr?" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--scheduler", "thread"],
     "--scheduler must be one of synchronous, threads, processes or tcp://host:port, "
     "got 'thread'"),
    (["--scheduler", "tcp://host"], "--scheduler must be one of"),
    (["--memory-limit", "lots"], "--memory-limit must be a size like 2GiB or 512MB, got 'lots'"),
    (["--memory-limit=-1GB"], "--memory-limit must be"),
    (["--tile-size", "0"], "--tile-size must be a whole number of pixels >= 8, got '0'"),
    (["--snr", "5"], "--snr must be two finite numbers like '5.0 4.0', got '5'"),
    (["--scale", "1.2 x"], "--scale must be two finite numbers"),
    (["--good-bits", "NOT_A_FLAG"], "--good-bits"),
    (["--pixfrac", "0"], "--pixfrac must be"),
    (["--maskpt", "nan"], "--maskpt must be"),
    (["--fillval", "zero"], "--fillval must be"),
    (["--kernel-size", "7"], "--kernel-size must be"),
    (["--threshold-percent", "120"], "--threshold-percent must be"),
    (["--rolling-window-width", "-2"], "--rolling-window-width must be"),
])
def test_bad_values_are_refused_in_cli_terms(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "a.json", "-o", "out", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: daskod run")
    assert f"daskod run: error: {message}" in err


def test_bad_values_are_refused_before_heavy_imports():
    code = ("import sys\nfrom daskod.cli import main\n"
            "try:\n    main(['run', 'a.json', '-o', 'out', '--scheduler', 'thread'])\n"
            "except SystemExit as e:\n    print('exit', e.code)\n"
            "print(sorted(m for m in ('dask', 'astropy', 'zarr', 'gwcs', 'stdatamodels', "
            "'distributed') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.stdout.splitlines() == ["exit 2", "[]"], proc.stdout + proc.stderr
    assert "--scheduler must be one of" in proc.stderr


def test_verbosity_options_go_before_or_after_the_subcommand():
    base = ["a.json", "-o", "out"]
    assert parse_args(["-v", "run", *base]).verbose
    assert parse_args(["run", *base, "-v"]).verbose
    assert not parse_args(["run", *base]).verbose
    assert parse_args(["run", *base, "--quiet"]).quiet
    assert parse_args(["--log-level", "debug", "run", *base]).log_level == "DEBUG"
    assert parse_args(["run", *base, "--log-file", "x.log"]).log_file == "x.log"
    with pytest.raises(SystemExit):
        parse_args(["run", *base, "-v", "-q"])


def test_default_output_is_one_line_per_product(cal_files, tmp_path):
    # A separate process: the logging set-up is the console script's own.
    proc = subprocess.run([sys.executable, "-m", "daskod.cli", "run", cal_files["asn"], "-o",
                           str(tmp_path / "out"), "--no-progress", "--scheduler", "synchronous"],
                          capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    for path in cal_files["files"]:
        name = os.path.basename(path)
        mine = [line for line in lines if name in line]
        assert len(mine) == 1 and "pixels flagged" in mine[0]
        assert name.replace("_cal", "_crf") in mine[0]
    assert len(lines) == len(cal_files["files"]) + 1 and lines[-1].startswith("Done in")


def test_quiet_verbose_and_log_file(cal_files, tmp_path, capsys):
    log = tmp_path / "run.log"
    args = [cal_files["asn"], "--no-progress", "--scheduler", "synchronous"]
    assert main(["run", *args, "-o", str(tmp_path / "q"), "-q", "--log-file", str(log)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    text = log.read_text()
    assert "Versions: daskod" in text and "Phase flag" in text and "INFO" in text
    assert main(["run", *args, "-o", str(tmp_path / "v"), "-v"]) == 0
    out, err = capsys.readouterr()
    assert "Versions: daskod" in err and "Phase flag" in err
    assert "Temporary folder" not in err  # private details stay at debug level
    flagged = [line for line in (out + err).splitlines() if "pixels flagged" in line]
    assert len(flagged) == len(cal_files["files"])  # each result once


def test_warnings_are_one_line_without_internal_paths(cal_files, tmp_path, capsys):
    code = main(["run", cal_files["files"][0], "-o", str(tmp_path / "one"), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0
    assert len(err.splitlines()) == 1, err
    assert err.startswith("daskod run: warning: ") and "at least 2 groups" in err
    assert ".py" not in err and "warnings.warn" not in err
    assert "skipped" in out.lower()


def test_top_level_usage_and_version(capsys):
    assert main([]) == 2
    assert "usage: daskod" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == __import__("daskod").__version__


def test_errors_are_one_line_and_the_log_file_keeps_the_traceback(tmp_path, capsys):
    log = tmp_path / "run.log"
    code = main(["run", str(tmp_path / "missing_cal.fits"), "-o", str(tmp_path / "out"),
                 "--log-file", str(log), "-q"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines() == [f"daskod run: error: {tmp_path / 'missing_cal.fits'}: "
                                "no such file."]
    text = log.read_text()
    assert "ERROR" in text and "Traceback" in text and "no such file" in text
