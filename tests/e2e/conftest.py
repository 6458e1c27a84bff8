"""Fixtures for end-to-end tests: a private Asterisk, sipp phones, and a leak check.

- ``pbx``: one Asterisk for the whole session (app name ``hotline``, no fallback number).
- ``pbx_factory``: start extra instances with other settings (module scope, stopped at the
  end of the module), e.g. ``await pbx_factory(fallback_dial="PJSIP/0301234@trunk")``.
- ``sipp_dir``: a per-test folder for sipp scenarios and traces.
- ``ari``: plain aiohttp REST helper for the session ``pbx`` (until tests move to
  ``ari_app.ari``).
- autouse leak check: after every e2e test, every running instance must drop to no
  channels and no bridges (polled, bounded); leftovers are hung up and the test fails.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devenv.asterisk import HTTP_SESSIONS_EXHAUSTED, PrivateAsterisk

from .app_harness import AriObserver, ServeProcess

# Instances currently running, for the leak check.
_RUNNING: list[PrivateAsterisk] = []

LEAK_TIMEOUT = 10.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


class AriHttp:
    """Minimal ARI REST access with aiohttp (basic auth), JSON in and out."""

    def __init__(self, pbx: PrivateAsterisk, session: aiohttp.ClientSession) -> None:
        self.pbx = pbx
        self.session = session
        self.base = f"{pbx.ari_url}/ari"

    async def request(self, method: str, path: str, **params: str) -> Any:
        async with self.session.request(
            method, self.base + path, params=params or None, timeout=aiohttp.ClientTimeout(5)
        ) as resp:
            if resp.status == 404 and method == "DELETE":
                return None  # already gone: an expected race
            resp.raise_for_status()
            if resp.status == 204 or resp.content_length == 0:
                return None
            return await resp.json()

    async def get(self, path: str, **params: str) -> Any:
        return await self.request("GET", path, **params)

    async def delete(self, path: str, **params: str) -> Any:
        return await self.request("DELETE", path, **params)


def ari_session(pbx: PrivateAsterisk) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(headers=pbx.ari_headers())


async def _start(run_dir: Path, **kwargs: Any) -> PrivateAsterisk:
    pbx = PrivateAsterisk(run_dir, **kwargs)
    await pbx.start()
    _RUNNING.append(pbx)
    return pbx


async def _stop(pbx: PrivateAsterisk) -> None:
    if pbx in _RUNNING:
        _RUNNING.remove(pbx)
    await pbx.stop()


@pytest.fixture(scope="session")
async def pbx(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PrivateAsterisk]:
    instance = await _start(tmp_path_factory.mktemp("asterisk"))
    try:
        yield instance
    finally:
        # Turned-away ARI clients fail the tests that meet them; the warning names the cause.
        if HTTP_SESSIONS_EXHAUSTED in instance.log_text():
            report = instance.http_report()
            warnings.warn(f"the shared Asterisk ran out of HTTP sessions: {report}", stacklevel=1)
        await _stop(instance)


PbxFactory = Callable[..., Awaitable[PrivateAsterisk]]


@pytest.fixture(scope="module")
async def pbx_factory(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PbxFactory]:
    started: list[PrivateAsterisk] = []

    async def factory(**kwargs: Any) -> PrivateAsterisk:
        instance = await _start(tmp_path_factory.mktemp("asterisk"), **kwargs)
        started.append(instance)
        return instance

    try:
        yield factory
    finally:
        for instance in started:
            await _stop(instance)


@pytest.fixture
async def ari(pbx: PrivateAsterisk) -> AsyncIterator[AriHttp]:
    async with ari_session(pbx) as session:
        yield AriHttp(pbx, session)


@pytest.fixture
def sipp_dir(tmp_path: Path) -> Path:
    path = tmp_path / "sipp"
    path.mkdir()
    return path


async def _leftovers(ari: AriHttp) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return await ari.get("/channels"), await ari.get("/bridges")


async def _check_clean(pbx: PrivateAsterisk) -> str | None:
    """Wait until no channels/bridges are left; else clean up and describe the leak."""
    async with ari_session(pbx) as session:
        ari = AriHttp(pbx, session)
        deadline = time.monotonic() + LEAK_TIMEOUT
        while True:
            try:
                channels, bridges = await _leftovers(ari)
            except aiohttp.ClientError as exc:
                report = pbx.http_report()
                return f"ARI of {pbx.run_dir} did not answer the leak check ({exc!r}): {report}"
            if not channels and not bridges:
                return None
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.1)
        for channel in channels:
            await ari.delete(f"/channels/{channel['id']}")
        for bridge in bridges:
            await ari.delete(f"/bridges/{bridge['id']}")
        names = [c.get("name", c["id"]) for c in channels]
        return (
            f"leak on {pbx.run_dir}: channels {names},"
            f" bridges {[b['id'] for b in bridges]} still there {LEAK_TIMEOUT:.0f}s after the test"
        )


@pytest.fixture(autouse=True)
async def leak_check(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    yield
    if request.node.get_closest_marker("e2e") is None:
        return
    problems = [p for p in [await _check_clean(pbx) for pbx in list(_RUNNING)] if p]
    if problems:
        pytest.fail("\n".join(problems))


# --- the application under test -------------------------------------------------------


@pytest.fixture
async def serve_factory(
    database_url: str, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[ServeProcess]]]:
    """Start `hotline serve` against a PBX; stopped (by PID) after the test."""
    started: list[ServeProcess] = []

    async def factory(pbx: PrivateAsterisk, **env: str) -> ServeProcess:
        proc = ServeProcess(pbx, database_url, tmp_path / f"serve-{len(started)}.log", **env)
        started.append(proc)
        await proc.start()
        return proc

    try:
        yield factory
    finally:
        for proc in started:
            await proc.stop()


@pytest.fixture
async def serve(
    pbx: PrivateAsterisk, serve_factory: Callable[..., Awaitable[ServeProcess]], sessions: Any
) -> ServeProcess:
    """`hotline serve` on the session PBX, with an empty database."""
    return await serve_factory(pbx)


@pytest.fixture
async def observer(pbx: PrivateAsterisk) -> AsyncIterator[AriObserver]:
    async with AriObserver(pbx) as obs:
        yield obs
