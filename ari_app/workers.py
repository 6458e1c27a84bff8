"""`hotline serve --workers N`: N processes on one node, coordinated through Postgres
exactly as separate nodes are (DESIGN.md: every node may serve every hotline).

Worker k registers its own Stasis app (the configured name for worker 0, `<name>-k` for
the others) and runs as node `<node>-wk`; its panel and /metrics listen on the configured
port + k. Each worker sets the dialplan global HOTLINE_WORKERS=N, and the dialplan
(dialplan/extensions_hotline.conf, [hotline-stasis]) tries the workers' apps in a rotating
order from a random start, falling through on STASISSTATUS=FAILED: a dead worker's share
of new calls goes to the others, and the fallback is reached only when none is running.
A worker's waiting and bridged callers are adopted by a sibling (services/nodes.py): the
supervisor marks a worker it reaped dead in Postgres at once, and starts it again after
RESTART_DELAY_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import time
from types import FrameType

from ari_app.config import Settings

log = logging.getLogger(__name__)

RESTART_DELAY_S = 10.0  # after a sibling had time to adopt the dead worker's calls
POLL_S = 0.2


def worker_app_name(app: str, index: int) -> str:
    """The Stasis app of worker `index` (the dialplan builds the same names)."""
    return app if index == 0 else f"{app}-{index}"


def worker_settings(settings: Settings, index: int, count: int) -> Settings:
    if count == 1:
        return settings
    return dataclasses.replace(
        settings,
        ari_app=worker_app_name(settings.ari_app, index),
        node=f"{settings.node}-w{index}",
        panel_port=settings.panel_port + index if settings.panel_port else 0,
    )


def run_workers(settings: Settings, count: int, grace_s: float) -> int:
    """Fork `count` workers and watch them until SIGTERM/SIGINT, which they get too; a
    worker that dies is started again after RESTART_DELAY_S. Returns the exit status."""
    children: dict[int, int] = {}  # pid -> worker index
    due: dict[int, float] = {}  # worker index -> when to start it again
    stopping = False

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: no event loop or thread exists before this point
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os._exit(_worker(worker_settings(settings, index, count), count, grace_s))
        children[pid] = index
        log.info("worker %d started (pid %d)", index, pid)

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(count):
        spawn(index)
    status = 0
    while children or (due and not stopping):
        pid, code = os.waitpid(-1, os.WNOHANG) if children else (0, 0)
        if pid:
            index = children.pop(pid)
            exit_code = os.waitstatus_to_exitcode(code)
            if stopping:
                status = status or (exit_code if exit_code > 0 else 0)
            else:
                log.error(
                    "worker %d (pid %d) died (%s); its calls go to a sibling, restart in %.0fs",
                    index,
                    pid,
                    exit_code,
                    RESTART_DELAY_S,
                )
                _mark_dead(worker_settings(settings, index, count), pid)
                due[index] = time.monotonic() + RESTART_DELAY_S
            continue
        for index, at in list(due.items()):
            if stopping:
                due.clear()
            elif time.monotonic() >= at:
                del due[index]
                spawn(index)
        time.sleep(POLL_S)
    return status


def _mark_dead(settings: Settings, pid: int) -> None:
    """Tell the siblings now (they would notice the missing heartbeat only after
    nodes.STALE_S)."""
    from ari_app.db.session import make_engine, make_sessionmaker
    from ari_app.services import nodes

    async def mark() -> None:
        engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                await nodes.mark_dead(session, name=settings.node, pid=pid)
        finally:
            await engine.dispose()

    try:
        asyncio.run(mark())
    except Exception as exc:  # the siblings still notice the missing heartbeat later
        log.warning("could not mark worker %s dead: %s", settings.node, exc)


def _worker(settings: Settings, count: int, grace_s: float) -> int:
    from ari_app.app import run_serve

    try:
        run_serve(settings, grace_s=grace_s, workers=count)
    except Exception:
        log.exception("worker %s failed", settings.node)
        return 1
    return 0
