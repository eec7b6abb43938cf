"""A 50 MB chunked body is refused 413 by a real gateway process without its memory growing.

The gateway runs as `uvicorn` in a child process (127.0.0.1, an OS-assigned port, a SQLite
store, a Temporal client that reaches nothing: the refusal needs none); its resident set is
read from /proc/<pid>/status before and after the uploads. Buffering the body would add 50 MB
(with the limits raised to 200 MB the same uploads took the peak up by about 200 MB).

The client gets its whole body out: the server reads and drops what follows a refusal rather
than reset the connection under it (see `gateway.limits`); what matters is what it keeps.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests._servers import stop_process
from tests.gateway.test_gateway import sign
from tests.gateway.test_limits import JSON, OPS, Chunks

REPO = Path(__file__).resolve().parents[2]
FIFTY_MB = 50 * 1024 * 1024
MAX_GROWTH_KB = 4 * 1024

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")


def serve_main() -> None:
    """The child: `python -c 'from tests.gateway.test_limits_rss import serve_main;
    serve_main()' <home>` serves the gateway and prints its port on the first line."""
    import uvicorn
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.service import RetryConfig

    from contracts.settings import load_settings
    from gateway import create_app
    from store import Store, make_engine, upgrade

    home = Path(sys.argv[1])

    async def main() -> None:
        url = f"sqlite:///{home}/gateway.db"
        upgrade(url)
        down = await Client.connect(
            "127.0.0.1:1",
            lazy=True,
            data_converter=pydantic_data_converter,
            retry_config=RetryConfig(max_retries=0),
        )
        app = create_app(load_settings(home=home / ".pssync"), Store(make_engine(url)), down)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)  # before the port is told: a connection waits instead of being refused
        print(sock.getsockname()[1], flush=True)
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        await uvicorn.Server(config).serve(sockets=[sock])

    asyncio.run(main())


def start_gateway_process(home: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """`serve_main` in a child process; the caller stops it by its id (`stop_process`)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tests.gateway.test_limits_rss import serve_main; serve_main()",
            str(home),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=log,
    )


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (the peak so far) of a process, in kB."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(value.split()[0])
    return figures


async def post_chunked(http: httpx.AsyncClient, path: str, total: int) -> tuple[int, str, int]:
    """POST `total` bytes chunked; the status, error code, and bytes the client got out."""
    body = Chunks(total)
    headers = sign(b"{}", event_id=f"evt_{uuid.uuid4().hex}") if "webhooks" in path else {}
    resp = await http.post(path, content=body, headers={**headers, **OPS, **JSON})
    return resp.status_code, resp.json()["error"]["code"], body.sent


async def test_50_mb_chunked_bodies_are_refused_without_growing_the_gateway(
    tmp_path: Path,
) -> None:
    log = (tmp_path / "gateway.log").open("wb")
    proc = start_gateway_process(tmp_path, log)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        assert line.strip().isdigit(), (tmp_path / "gateway.log").read_text()
        paths = ("/webhooks/psa", "/api/exceptions/x/resolution")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{int(line)}", timeout=60) as http:
            for path in paths:  # warm-up: the same refusals, small, so first-use costs are paid
                assert (await post_chunked(http, path, 4 << 20))[:2] == (413, "body_too_large")
            before = memory_kb(proc.pid)
            results = {path: await post_chunked(http, path, FIFTY_MB) for path in paths}
            after = memory_kb(proc.pid)
    finally:
        stop_process(proc)
        log.close()
    growth = {name: after[name] - before[name] for name in before}
    print(f"\ngateway memory before {before} kB, after {after} kB, growth {growth} kB")
    for path, (status, code, sent) in results.items():
        print(f"{path}: {status} {code} after the client sent {sent / 2**20:.1f} MiB")
        assert (status, code) == (413, "body_too_large")
    assert growth["VmRSS"] <= MAX_GROWTH_KB
    assert growth["VmHWM"] <= MAX_GROWTH_KB
