"""pytest plugin: a real S3 API server on 127.0.0.1 for the object-storage tests (registered in
``tests/conftest.py`` through ``pytest_plugins``; tests receive these as fixtures).

* ``s3_server`` (session): starts moto's standalone server (``moto_server -H 127.0.0.1 -p PORT``,
  the ``moto_server`` script of the interpreter running pytest) and waits until it answers;
  sets ``AWS_ENDPOINT_URL``, dummy ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` and
  ``AWS_DEFAULT_REGION`` in ``os.environ`` (so s3fs in this process and every process started
  afterwards, Ray's workers included, reach it); yields the endpoint URL; stops the server and
  restores the environment at the end of the session.
* ``s3_env``: the variables above as a dict, for processes that do not inherit this
  process's environment: ``ray.init(runtime_env={"env_vars": s3_env})``, ``ray job submit
  --runtime-env-json``, a ``ray.cluster_utils.Cluster`` started before the server.
* ``s3_bucket`` (function): a fresh, empty bucket; yields ``"s3://<bucket>"``.

Ray workers copy the environment when they start. An embedded Ray already running in this
process when ``s3_server`` starts (a Ray test ran earlier in the session) has workers without
these variables, so the fixture shuts such a Ray down; the next ``init_ray`` starts a fresh one
whose workers inherit them. A cluster a test builds itself must be started after ``s3_server``
or be given ``s3_env`` through its ``runtime_env``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

S3_ENV_KEYS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with code {proc.returncode} before answering on {url}")
        try:
            with urllib.request.urlopen(url + "/moto-api/", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto_server did not answer on {url} within {timeout:.0f} s")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """The endpoint URL (``http://127.0.0.1:PORT``) of a moto S3 server running for the session."""
    moto = Path(sys.executable).with_name("moto_server")
    if not moto.exists():
        pytest.skip(f"{moto} not found: install the test extra (pip install -e '.[test]': moto[server], s3fs)")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=logf,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_up(url, proc)
    except RuntimeError:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"moto_server failed to start; its log: {log.read_text(errors='replace')[-2000:]}")
    saved = {k: os.environ.get(k) for k in S3_ENV_KEYS}
    os.environ.update({"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    _restart_embedded_ray()
    try:
        yield url
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _clear_s3fs_cache()


def _restart_embedded_ray() -> None:
    """Shut down a Ray already running in this process (its workers lack the S3 variables)."""
    if "ray" not in sys.modules:
        return
    import ray

    if ray.is_initialized():
        ray.shutdown()


def _clear_s3fs_cache() -> None:
    """Forget cached s3fs instances (they hold connections to the server and its endpoint)."""
    try:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
    except ImportError:
        pass


@pytest.fixture(scope="session")
def s3_env(s3_server) -> dict[str, str]:
    """The S3 variables ``s3_server`` set, for a ``runtime_env={"env_vars": ...}``."""
    return {k: os.environ[k] for k in S3_ENV_KEYS}


@pytest.fixture()
def s3_bucket(s3_server):
    """A fresh empty bucket on ``s3_server``: yields ``"s3://<bucket>"``; deleted afterwards."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    name = f"webmill-test-{uuid.uuid4().hex[:12]}"
    fs.mkdir(name)
    try:
        yield f"s3://{name}"
    finally:
        try:
            fs.rm(name, recursive=True)
        except (OSError, FileNotFoundError):
            pass
