"""The local stack steps aside for the operator's mail server: with SMTP_HOST or SMTP_PORT set,
notifications sends there and no mail catcher starts (and the stack says so)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.local import stack
from shared.local.stack import StackConfig

pytestmark = pytest.mark.unit


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Components `start_infra` starts and the environment `_start_python` gives a service,
    recorded instead of started."""
    seen: dict[str, Any] = {"names": [], "env": None, "said": []}

    async def start_component(cfg: StackConfig, name: str, on_step: Any = None) -> None:
        seen["names"].append(name)

    def spawn(cfg: StackConfig, name: str, command: list[str], log: Path, **kw: Any) -> int:
        seen["env"] = kw["env"]
        return 0

    async def ready(*args: Any, **kw: Any) -> None:
        return None

    monkeypatch.setattr(stack, "start_component", start_component)
    monkeypatch.setattr(stack, "_spawn", spawn)
    monkeypatch.setattr(stack, "_wait_ready", ready)
    seen["cfg"] = StackConfig(home=tmp_path, smtp_port=2025)
    return seen


async def _up(seen: dict[str, Any]) -> None:
    await stack.start_infra(seen["cfg"], provision=False, on_step=seen["said"].append)
    await stack._start_python(seen["cfg"], "notifications", seen["said"].append)


async def test_without_a_mail_server_of_its_own_the_catcher_gets_the_mail(
    started: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMTP_HOST", raising=False)
    monkeypatch.delenv("SMTP_PORT", raising=False)
    await _up(started)
    assert "mailcatcher" in started["names"]
    assert (started["env"]["SMTP_HOST"], started["env"]["SMTP_PORT"]) == ("127.0.0.1", "2025")


@pytest.mark.parametrize(
    ("host", "port"), [("mail.example.org", "2525"), ("mail.example.org", None), (None, "2526")]
)
async def test_the_operators_mail_server_is_used_and_no_catcher_starts(
    started: dict[str, Any], monkeypatch: pytest.MonkeyPatch, host: str | None, port: str | None
) -> None:
    for name, value in (("SMTP_HOST", host), ("SMTP_PORT", port)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    await _up(started)
    assert "mailcatcher" not in started["names"]
    env = started["env"]
    assert (env.get("SMTP_HOST"), env.get("SMTP_PORT")) == (host, port)  # the operator's own
    assert any("no mail catcher" in line for line in started["said"])
    assert "mailcatcher" not in {row.name for row in stack.status(started["cfg"])}
