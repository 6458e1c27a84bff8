"""Driving the `hotline` CLI from async tests against the real Postgres.

Each command runs with click's CliRunner in a worker thread: the CLI calls asyncio.run,
which must not run on the thread of pytest-asyncio's session loop (the loop that also
serves the in-process fake ARI while the command runs).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from hotline_cli.main import hotline

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from fake_ari import FakeAri

__all__ = ["Cli", "FakeAri", "ari_env"]


def ari_env(fake: FakeAri) -> dict[str, str]:
    return {
        "HOTLINE_ARI_URL": fake.base_url,
        "HOTLINE_ARI_USER": fake.user,
        "HOTLINE_ARI_PASSWORD": fake.password,
        "HOTLINE_ARI_APP": fake.app,
    }


class Cli:
    """`await cli("line", "list")` -> click Result (stdout and stderr kept apart)."""

    def __init__(self, database_url: str) -> None:
        self.env: dict[str, str | None] = {
            "HOTLINE_DATABASE_URL": database_url,
            "HOTLINE_ARI_URL": None,
            "HOTLINE_ARI_USER": None,
            "HOTLINE_ARI_PASSWORD": None,
            "HOTLINE_RETENTION": None,
        }

    async def __call__(
        self, *args: str, input: str | None = None, env: Mapping[str, str | None] | None = None
    ) -> Result:
        runner = CliRunner()
        merged = {**self.env, **(env or {})}
        return await asyncio.to_thread(
            runner.invoke, hotline, list(args), input=input, env=merged, catch_exceptions=True
        )

    async def ok(self, *args: str, **kwargs: Any) -> Result:
        result = await self(*args, **kwargs)
        assert result.exit_code == 0, (
            f"hotline {' '.join(args)} -> {result.exit_code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}\nexception: {result.exception!r}"
        )
        return result

    async def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads((await self.ok(*args, "--json", **kwargs)).stdout)

    async def fails(self, *args: str, code: int = 1, **kwargs: Any) -> str:
        """Run a command that must fail with `code`; returns its one stderr line."""
        result = await self(*args, **kwargs)
        assert result.exit_code == code, (
            f"hotline {' '.join(args)} -> {result.exit_code}, expected {code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}\nexception: {result.exception!r}"
        )
        assert "Traceback" not in result.output
        # CliRunner catches what escaped; SystemExit is click's normal exit path.
        assert result.exception is None or isinstance(result.exception, SystemExit)
        if code == 1:
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
            assert lines[0].startswith("error: ")
            return lines[0]
        return result.stderr
