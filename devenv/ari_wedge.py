"""Does closing an ARI app that follows all device states wedge this Asterisk?

    python -m devenv.ari_wedge [--rounds 300] [--one-device]

Starts a private Asterisk (``$HOTLINE_ASTERISK``, else the system's), changes a device
state as fast as ARI takes it, and opens and closes an app with ``subscribeAll=true``
(``--one-device``: an app following that one device, as the hotline's app follows its
agents' devices) until Asterisk stops answering (then writes its threads' stacks from
gdb) or the rounds are done. Asterisk 22.10 wedges within seconds, 16.28 did not in 300
rounds, nor 22.10 with ``--one-device`` in 600: the teardown waits for the
all-device-states subscription's end while holding the WebSocket session's lock, and
the delivery of a change waits for that lock (asterisk/asterisk#2170). Why the tests'
observing apps follow no device state (tests/e2e/app_harness.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import tempfile
from pathlib import Path

import aiohttp

from devenv.asterisk import PrivateAsterisk

APP, DEVICE = "wedge", "Stasis:wedge"


async def _flood(http: aiohttp.ClientSession, url: str, stop: asyncio.Event) -> None:
    state = "INUSE"
    while not stop.is_set():
        state = "NOT_INUSE" if state == "INUSE" else "INUSE"
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with asyncio.timeout(3):
                async with http.put(f"{url}/deviceStates/{DEVICE}", params={"deviceState": state}):
                    pass


async def _round(http: aiohttp.ClientSession, url: str, one_device: bool) -> bool:
    """One app opened, a few events read, closed; False when Asterisk stopped answering."""
    events = f"{url.replace('http', 'ws', 1)}/events?app={APP}"
    try:
        async with asyncio.timeout(5):
            ws = await http.ws_connect(events if one_device else f"{events}&subscribeAll=true")
            if one_device:
                async with http.post(
                    f"{url}/applications/{APP}/subscription",
                    params={"eventSource": f"deviceState:{DEVICE}"},
                ):
                    pass
            for _ in range(random.randint(1, 20)):
                await ws.receive()
            await ws.close()
            async with http.get(f"{url}/applications"):
                return True
    except TimeoutError:
        return False


async def main(rounds: int, one_device: bool) -> int:
    pbx = PrivateAsterisk(Path(tempfile.mkdtemp(prefix="ari-wedge-")), app_name=APP)
    await pbx.start()
    try:
        url = f"{pbx.ari_url}/ari"
        async with aiohttp.ClientSession(headers=pbx.ari_headers()) as http:
            stop = asyncio.Event()
            floods = [asyncio.create_task(_flood(http, url, stop)) for _ in range(3)]
            try:
                for n in range(rounds):
                    if not await _round(http, url, one_device):
                        print(f"wedged after {n + 1} round(s)\n{pbx.http_report()}")
                        gdb = await asyncio.create_subprocess_exec(
                            *("gdb", "-p", str(pbx.pid), "-batch", "-ex", "thread apply all bt"),
                            stdout=asyncio.subprocess.PIPE,
                            stderr=asyncio.subprocess.STDOUT,
                        )
                        stacks, _ = await gdb.communicate()
                        (pbx.run_dir / "stacks.txt").write_bytes(stacks)
                        print(f"threads' stacks: {pbx.run_dir / 'stacks.txt'}")
                        return 1
                print(f"{rounds} round(s), Asterisk still answers")
                return 0
            finally:
                stop.set()
                for task in floods:
                    task.cancel()
                await asyncio.gather(*floods, return_exceptions=True)
    finally:
        await pbx.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--one-device", action="store_true")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.rounds, args.one_device)))
