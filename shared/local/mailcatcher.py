"""A tiny SMTP server for local runs and tests: every message received becomes one .eml file.

The notifications service sends real SMTP; pointing it here lets end-to-end tests read what was
"sent" from a folder instead of a mailbox. Run with
`python -m shared.local.mailcatcher --host 127.0.0.1 --port 1025 --dir .stack/mail`; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from aiosmtpd.controller import Controller


class SaveToDir:
    """aiosmtpd handler writing each message to `<dir>/<UTC timestamp>-<counter>.eml`.

    The envelope (MAIL FROM / RCPT TO) is prepended as `X-Envelope-*` headers because Bcc
    recipients only exist there. Files are written to a temporary name and renamed, so a test
    polling the folder never reads half a message.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def save(self, mail_from: str, rcpt_tos: list[str], content: bytes) -> Path:
        """Write one message; returns its path."""
        with self._lock:
            n = next(self._counter)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = self.directory / f"{stamp}-{time.time_ns() % 1_000_000_000:09d}-{n:06d}.eml"
        headers = f"X-Envelope-From: {mail_from}\r\nX-Envelope-To: {', '.join(rcpt_tos)}\r\n"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(headers.encode() + content)
        os.replace(tmp, path)
        return path

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """aiosmtpd hook: called once per message after the DATA command."""
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        self.save(envelope.mail_from or "", list(envelope.rcpt_tos), content)
        return "250 Message accepted for delivery"


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", type=Path, default=Path(".stack/mail"))
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    controller = Controller(
        SaveToDir(args.dir), hostname=args.host, port=args.port, enable_SMTPUTF8=True
    )
    controller.start()
    print(f"mailcatcher: listening on {args.host}:{args.port}, writing to {args.dir}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        controller.stop()
        print("mailcatcher: stopped", flush=True)


if __name__ == "__main__":
    main()
