"""Object storage: working store, inputs and outputs on S3 (a real S3-compatible server).

moto's standalone server runs on loopback for the session; every request goes through the
real s3fs/aiobotocore client over HTTP, nothing is mocked in the client.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid

import numpy as np
import pytest

import daskod
from daskod import datasets
from daskod._exceptions import StoreError

s3fs = pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

BUCKET = "daskod-test"
KEY = SECRET = "testing"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on 127.0.0.1 with one bucket; yields its endpoint URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY,
                          aws_secret_access_key=SECRET, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture
def s3_options(s3_endpoint):
    """storage_options with explicit dummy credentials and the endpoint."""
    return {"key": KEY, "secret": SECRET,
            "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch, tmp_path):
    """The same through the usual AWS environment variables (as the CLI and zarr see them)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return s3_endpoint


@pytest.fixture
def prefix():
    """A fresh key prefix in the bucket for one test."""
    return f"{BUCKET}/{uuid.uuid4().hex[:12]}"


def _fs(s3_options):
    return s3fs.S3FileSystem(skip_instance_cache=True, **s3_options)


@pytest.fixture(scope="module")
def observation():
    return datasets.make_dithered_imaging(n_exposures=4, shape=(160, 160), seed=11)


@pytest.fixture(scope="module")
def local_flags(observation):
    result = daskod.detect_outliers(observation.exposures, scheduler="synchronous")
    return [np.asarray(d) for d in result.dq]


def test_working_store_on_s3_gives_the_local_flags(observation, local_flags, s3_options,
                                                    prefix):
    url = f"s3://{prefix}/work.zarr"
    result = daskod.detect_outliers(observation.exposures, store=url,
                                    storage_options=s3_options, scheduler="threads")
    for got, want in zip(result.dq, local_flags, strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)
    assert int(sum(result.n_flagged)) > 0
    fs = _fs(s3_options)
    keys = fs.find(prefix)
    # The median, the drizzled groups and the DQ of every exposure are objects in the bucket.
    assert any(k.endswith("work.zarr/median/zarr.json") for k in keys)
    assert sum(k.endswith("/dq/zarr.json") and "/outputs/" in k and "/manifest/" not in k
               for k in keys) == 4
    assert not any(".daskod-probe-" in k for k in keys)  # the write probe was removed
    # The kept store is read back through zarr, from S3.
    data, wht = result.resampled(0)
    assert data.shape == np.shape(result.median) and np.nanmax(wht) > 0


def test_zarr_inputs_on_s3(s3_env, prefix, local_flags, tmp_path):
    # The simulator writes each exposure's arrays to a Zarr group on S3 (credentials and
    # endpoint from the AWS_* variables); daskod reads them in place, tile by tile.
    sim = datasets.make_dithered_imaging(n_exposures=4, shape=(160, 160), seed=11,
                                         store=f"s3://{prefix}/inputs.zarr")
    import zarr

    assert all(isinstance(e.sci, zarr.Array) and "Fsspec" in type(e.sci.store).__name__
               for e in sim.exposures)
    with daskod.set_options(temp_dir=str(tmp_path / "tmp")):
        result = daskod.detect_outliers(sim.exposures, scheduler="threads")
    for got, want in zip(result.dq, local_flags, strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)
    assert os.listdir(tmp_path / "tmp") == []


def test_resumable_run_with_zarr_inputs_on_s3(s3_env, prefix, tmp_path):
    # Checkpoint fingerprints identify S3 inputs by their objects' sizes and ETags: a rerun
    # resumes, an input rewritten on S3 invalidates the store.
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(96, 96), seed=12,
                                         store=f"s3://{prefix}/inputs.zarr")
    store = str(tmp_path / "work.zarr")
    first = daskod.detect_outliers(sim.exposures, store=store, tile_size=48)
    again = daskod.detect_outliers(sim.exposures, store=store, tile_size=48)
    assert again.checkpoints["resampled"]["reused"] == again.checkpoints["resampled"]["total"]
    assert again.n_flagged == first.n_flagged
    sci = sim.exposures[2].sci
    sci[0:2, 0:2] = np.asarray(sci[0:2, 0:2]) + 5.0
    with pytest.raises(daskod.StoreError, match="other inputs"):
        daskod.detect_outliers(sim.exposures, store=store, tile_size=48)


@pytest.fixture(scope="module")
def cal_files(tmp_path_factory):
    pytest.importorskip("stdatamodels.jwst.datamodels")
    folder = tmp_path_factory.mktemp("cal")
    sim = datasets.make_dithered_imaging(n_exposures=3, shape=(96, 96), seed=3)
    return datasets.write_cal_files(sim.exposures, folder / "in")


def _upload(fs, files, dest):
    for path in [*files["files"], files["asn"]]:
        fs.put_file(path, f"{dest}/{os.path.basename(path)}")


def _cli(*args):
    from daskod.cli import main

    return main(["run", *args, "--no-progress", "--scheduler", "synchronous"])


def test_run_association_on_s3_with_store_and_outputs_on_s3(cal_files, s3_env, s3_options,
                                                             prefix, tmp_path, capsys):
    from stdatamodels.jwst import datamodels as dm

    fs = _fs(s3_options)
    _upload(fs, cal_files, f"{prefix}/in")
    with daskod.set_options(temp_dir=str(tmp_path / "tmp")):
        assert _cli(cal_files["asn"], "-o", str(tmp_path / "local")) == 0
        assert _cli(f"s3://{prefix}/in/test_asn.json", "-o", f"s3://{prefix}/out",
                    "--store", f"s3://{prefix}/work.zarr") == 0, capsys.readouterr().err
    names = [os.path.basename(p).replace("_cal", "_crf") for p in cal_files["files"]]
    fs.invalidate_cache()
    assert sorted(os.path.basename(k) for k in fs.ls(f"{prefix}/out")) == sorted(names)
    assert fs.exists(f"{prefix}/work.zarr/median/zarr.json")  # the kept working store
    assert not [k for k in fs.find(prefix) if ".daskod-probe-" in k]
    assert os.listdir(tmp_path / "tmp") == []  # staged products were moved out
    flagged = 0
    for name in names:
        fs.get_file(f"{prefix}/out/{name}", str(tmp_path / name))
        with dm.open(str(tmp_path / name)) as got, \
                dm.open(str(tmp_path / "local" / name)) as want:
            got.validate()
            assert got.meta.cal_step.outlier_detection == "COMPLETE"
            assert got.meta.filename == name
            np.testing.assert_array_equal(got.dq, want.dq)
            np.testing.assert_array_equal(got.data, want.data)
            flagged += int(((got.dq & 16) != 0).sum())
    assert flagged > 0


def test_failed_run_leaves_no_output_object(cal_files, no_credentials, s3_options, prefix,
                                            tmp_path, monkeypatch, capsys):
    # Credentials and endpoint only through --storage-options (no AWS_* variables).
    from daskod.io import _products

    fs = _fs(s3_options)
    _upload(fs, cal_files, f"{prefix}/in")
    real = _products.write_product
    calls = []

    def failing(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 3:
            raise OSError("simulated write failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(_products, "write_product", failing)
    with daskod.set_options(temp_dir=str(tmp_path / "tmp")):
        code = _cli(f"s3://{prefix}/in/test_asn.json", "-o", f"s3://{prefix}/out",
                    "--storage-options", json.dumps(s3_options))
    assert code == 1 and "simulated write failure" in capsys.readouterr().err
    assert len(calls) == 3  # two products were complete before the failure
    fs.invalidate_cache()
    assert not fs.exists(f"{prefix}/out") or fs.find(f"{prefix}/out") == []
    assert os.listdir(tmp_path / "tmp") == []


def test_publish_removes_uploaded_objects_when_one_fails(s3_options, prefix, tmp_path):
    from daskod.io._location import publish

    staged = []
    for k in range(2):
        staged.append(str(tmp_path / f"p{k}.fits"))
        with open(staged[-1], "wb") as f:
            f.write(b"x" * 10)
    targets = [f"s3://{prefix}/out/p0.fits", f"s3://{prefix}/out/p1.fits"]
    with pytest.raises(FileNotFoundError):
        publish([*staged, str(tmp_path / "missing.fits")],
                [*targets, f"s3://{prefix}/out/p2.fits"], storage_options=s3_options)
    fs = _fs(s3_options)
    assert not fs.exists(targets[0]) and not fs.exists(targets[1])
    publish(staged, targets, storage_options=s3_options)
    assert fs.cat_file(targets[1]) == b"x" * 10


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the imaging graph is ever built (errors must come before work)."""
    from daskod.modes.imaging import ImagingPlan

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the store was checked")

    monkeypatch.setattr(ImagingPlan, "build", forbidden)


def test_missing_credentials_is_a_store_error_before_work(observation, s3_endpoint, s3_options,
                                                          no_credentials, no_work, prefix):
    options = {"client_kwargs": {"endpoint_url": s3_endpoint}}
    with pytest.raises(StoreError, match="credentials") as info:
        daskod.detect_outliers(observation.exposures, store=f"s3://{prefix}/work.zarr",
                               storage_options=options)
    assert "AWS_ACCESS_KEY_ID" in str(info.value) and prefix in str(info.value)
    assert _fs(s3_options).find(prefix) == []  # nothing written


def test_missing_bucket_is_a_store_error_before_work(observation, s3_options, no_work):
    url = "s3://daskod-no-such-bucket/work.zarr"
    with pytest.raises(StoreError, match="bucket does not exist") as info:
        daskod.detect_outliers(observation.exposures, store=url, storage_options=s3_options)
    assert url in str(info.value)
    assert not _fs(s3_options).exists("daskod-no-such-bucket")


def test_cli_output_bucket_missing_fails_before_the_run(cal_files, s3_env, capsys, tmp_path,
                                                        monkeypatch):
    import daskod

    def forbidden(*args, **kwargs):
        raise AssertionError("ran before the output location was checked")

    monkeypatch.setattr(daskod, "detect_outliers", forbidden)
    with daskod.set_options(temp_dir=str(tmp_path / "tmp")):
        code = _cli(cal_files["asn"], "-o", "s3://daskod-no-such-bucket/out")
    err = capsys.readouterr().err
    assert code == 1 and "bucket does not exist" in err and "output folder" in err


@pytest.fixture
def s3_auth_enforced(s3_endpoint):
    """The server checks signatures against its (empty) IAM users while the test runs."""
    import urllib.request

    def set_count(value: str) -> None:
        request = urllib.request.Request(f"{s3_endpoint}/moto-api/reset-auth",
                                         data=value.encode(), method="POST",
                                         headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    set_count("0")
    yield
    set_count("inf")


def test_refused_credentials_are_a_store_error_before_work(observation, s3_options, prefix,
                                                           s3_auth_enforced, no_work):
    with pytest.raises(StoreError, match="refused a test write") as info:
        daskod.detect_outliers(observation.exposures, store=f"s3://{prefix}/work.zarr",
                               storage_options=s3_options)
    assert "credentials" in str(info.value) and prefix in str(info.value)


def test_time_series_store_on_s3_gives_the_local_flags(s3_options, prefix):
    sim = datasets.make_tso_cube(nints=40, shape=(16, 32), seed=2)
    local = daskod.detect_outliers(sim.cube, mode="tso", scheduler="synchronous")
    remote = daskod.detect_outliers(sim.cube, mode="tso", scheduler="threads",
                                    store=f"s3://{prefix}/tso.zarr", storage_options=s3_options)
    np.testing.assert_array_equal(np.asarray(remote.dq[0]), np.asarray(local.dq[0]))
    assert int(remote.n_flagged[0]) > 0
    assert _fs(s3_options).exists(f"{prefix}/tso.zarr/outputs/dq/zarr.json")


def test_file_url_is_a_local_store(observation, local_flags, tmp_path):
    folder = tmp_path / "work.zarr"
    result = daskod.detect_outliers(observation.exposures, store=f"file://{folder}",
                                    scheduler="synchronous")
    assert result.store == str(folder)
    assert (folder / "median" / "zarr.json").exists()
    np.testing.assert_array_equal(np.asarray(result.dq[0]), local_flags[0])


def test_remove_store_deletes_every_object_under_the_prefix(s3_options, prefix, tmp_path):
    import zarr

    from daskod.io._location import open_store, remove_store, store_location

    root = open_store(f"s3://{prefix}/scratch.zarr", storage_options=s3_options)
    assert store_location(root) == f"s3://{prefix}/scratch.zarr"
    zarr.create_array(store=root, name="a/b", shape=(8,), chunks=(4,), dtype="f4",
                      fill_value=0)[:] = 1
    fs = _fs(s3_options)
    assert len(fs.find(f"{prefix}/scratch.zarr")) >= 3
    keep = f"{prefix}/scratch.zarr-other"
    fs.pipe_file(keep, b"x")
    remove_store(root)
    fs.invalidate_cache()
    left = fs.find(prefix)
    assert keep in left and not [k for k in left if k.startswith(f"{prefix}/scratch.zarr/")]
    local = open_store(tmp_path / "local.zarr")
    zarr.create_array(store=local, name="a", shape=(2,), dtype="f4", fill_value=0)
    remove_store(local)
    assert not (tmp_path / "local.zarr").exists()


def test_fits_blocks_read_from_a_url_equal_local_reads(cal_files):
    # fsspec's in-memory file system stands for any URL: one ranged read per block.
    import fsspec

    from daskod.io._jwst import _fits_arrays

    path = cal_files["files"][0]
    memory = fsspec.filesystem("memory")
    with open(path, "rb") as f:
        memory.pipe_file("/daskod-test/cal.fits", f.read())
    remote, local = _fits_arrays("memory:///daskod-test/cal.fits"), _fits_arrays(path)
    assert sorted(remote) == sorted(local) and "dq" in remote
    for name, arr in remote.items():
        assert arr.layout is not None and arr.dtype == local[name].dtype
        for key in (..., (slice(3, 40), slice(5, 90)), (slice(0, 1),),
                    (slice(90, 200), slice(-7, None)), (slice(10, 10), slice(0, 5)), 5):
            got, want = arr[key], local[name][key]
            assert got.shape == want.shape and got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    assert remote["dq"].dtype == np.uint32 and int(np.asarray(remote["dq"]).max()) > 0
    memory.rm("/daskod-test", recursive=True)


def test_file_stamp_changes_when_an_object_is_replaced(s3_options, prefix, tmp_path):
    from daskod.io._location import file_stamp

    fs = _fs(s3_options)
    url = f"s3://{prefix}/x.fits"
    assert file_stamp(url, s3_options) == ()
    fs.pipe_file(url, b"a" * 10)
    first = file_stamp(url, s3_options)
    assert first[0] == 10 and file_stamp(url, s3_options) == first
    fs.pipe_file(url, b"b" * 10)
    assert file_stamp(url, s3_options) != first  # same size, new content: new ETag
    local = tmp_path / "x.fits"
    assert file_stamp(str(local)) == ()
    local.write_bytes(b"abc")
    assert file_stamp(str(local))[0] == 3 and file_stamp(f"file://{local}")[0] == 3
