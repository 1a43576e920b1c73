"""The request guard on a real HTTP server (uvicorn) with a real client: a body over its route's limit is
answered 413 in the JSON error format, whether announced by Content-Length or sent chunked, and the handler
never runs, for a route that reads its body, one that does not, and a streamed (multipart) upload. A NUL in
the URL is answered 400 before routing."""

from __future__ import annotations

import socket
import threading
from typing import Annotated

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, File, Request, UploadFile

from gateway import errors
from gateway.api.request_guard import BodyLimit, BodyLimits, RequestGuard
from tests.utils.factories import wait_for

LIMITS = BodyLimits(default=1000, routes=(BodyLimit("POST", "/upload", 5000), BodyLimit("POST", "/big/{name}", 3000)))


@pytest.fixture(scope="module")
def server():
    ran: list[str] = []
    app = FastAPI()
    errors.install(app)
    app.add_middleware(RequestGuard, limits=LIMITS, buffer_max=4000)  # /upload (5000) is streamed, not buffered

    @app.post("/echo")
    async def echo(body: dict) -> dict:
        ran.append("echo")
        return {"keys": len(body)}

    @app.post("/touch/{name}")
    def touch(name: str) -> dict:  # never reads its body, like POST /v1/devices/{id}/suspend
        ran.append(f"touch:{name}")
        return {"touched": name}

    @app.post("/big/{name}")
    async def big(request: Request, name: str) -> dict:
        data = await request.body()
        ran.append(f"big:{name}")
        return {"bytes": len(data)}

    @app.post("/upload")
    async def upload(file: Annotated[UploadFile, File()]) -> dict:
        ran.append("upload")
        return {"bytes": len(await file.read())}

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_for(lambda: srv.started, timeout=30, what="uvicorn started")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client, ran
    srv.should_exit = True
    thread.join(30)


def _chunks(total: int, size: int = 256):
    for i in range(0, total, size):
        yield b"x" * min(size, total - i)


def _too_large(r: httpx.Response, limit: int) -> None:
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == "body_too_large"
    assert str(limit) in r.json()["error"]["message"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversized_body_gets_a_json_413_and_no_handler_runs(server, chunked):
    client, ran = server
    before = list(ran)
    for path, limit in (("/echo", 1000), ("/touch/a", 1000), ("/big/b", 3000)):
        n = limit + 1
        if chunked:
            r = client.post(path, content=_chunks(n), headers={"content-type": "application/json"})
            assert "content-length" not in r.request.headers
        else:
            r = client.post(path, content=b"x" * n, headers={"content-type": "application/json"})
            assert r.request.headers["content-length"] == str(n)
        _too_large(r, limit)
    assert ran == before, "a handler ran for an oversized body"


def test_a_body_at_the_limit_is_served(server):
    client, ran = server
    r = client.post("/echo", json={"k": "v" * (1000 - len('{"k":""}'))})
    assert r.status_code == 200 and r.json() == {"keys": 1}
    r = client.post("/big/c", content=_chunks(3000))
    assert r.status_code == 200 and r.json() == {"bytes": 3000}
    r = client.post("/touch/d", content=b"{}")
    assert r.status_code == 200 and "touch:d" in ran


@pytest.mark.parametrize("announce", [True, False], ids=["content-length", "chunked"])
def test_a_streamed_upload_over_its_limit_is_refused_before_the_handler(server, announce):
    client, ran = server
    before = list(ran)
    req = client.build_request("POST", "/upload", files={"file": ("fw.bin", b"\x00" * 6000)})
    body = req.read()
    headers = {"content-type": req.headers["content-type"]}
    content = body if announce else iter([body[i:i + 512] for i in range(0, len(body), 512)])
    _too_large(client.post("/upload", content=content, headers=headers), 5000)
    assert ran == before
    ok = client.post("/upload", files={"file": ("fw.bin", b"\x01" * 3000)})
    assert ok.status_code == 200 and ok.json() == {"bytes": 3000}


def test_a_nul_in_path_or_query_is_refused_before_routing(server):
    client, ran = server
    before = list(ran)
    for url in ("/touch/a%00b", "/touch/a?x=%00"):
        r = client.post(url)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", r.text
        assert "NUL" in r.json()["error"]["message"]
    assert ran == before
