"""The test phones' ports (devenv/sipp.py): a sipp's media port never is its SIP port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devenv import sipp


def test_the_media_port_keeps_clear_of_the_sip_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both come from the kernel and are free until sipp binds them: once it handed out
    the same port for both, and the call failed ("Unable to bind audio RTP socket")."""
    picks: Iterator[int] = iter([42664, 42665, 42662, 42700])
    monkeypatch.setattr(sipp, "free_port", lambda *_: next(picks))
    monkeypatch.setattr(sipp, "port_is_free", lambda *_: True)
    assert sipp._free_media_port("127.0.0.50", 42664) == 42700
