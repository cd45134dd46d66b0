"""A private single-node broker (scripts/kafka-local.sh) on free ports, in its own directory.

For tests and benchmarks that restart the broker, delete topics or need an authenticated
listener: they must never touch the broker on 127.0.0.1:9092 that others share. The jars
are shared with the default instance (KAFKA_LIBS_DIR), so only the data is separate.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "kafka-local.sh"
SHARED_LIBS = REPO / ".work" / "kafka" / "libs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalBroker:
    """`start()` formats fresh storage the first time; `stop()` / `start()` afterwards restart
    it on the same ports and data, as a real broker restart would."""

    def __init__(self, work_dir: Path, sasl_user: str | None = None, sasl_password: str | None = None,
                 start_timeout_s: int = 120):
        self.work_dir = Path(work_dir)
        self.port, self.controller_port = free_port(), free_port()
        self.sasl_port = free_port() if sasl_user else None
        self.env = {**os.environ, "KAFKA_WORK_DIR": str(self.work_dir), "KAFKA_PORT": str(self.port),
                    "KAFKA_CONTROLLER_PORT": str(self.controller_port), "KAFKA_LIBS_DIR": str(SHARED_LIBS),
                    "KAFKA_START_TIMEOUT": str(start_timeout_s), "KAFKA_HEAP_OPTS": "-Xmx384m -Xms128m"}
        if sasl_user:
            self.env.update(KAFKA_SASL_PORT=str(self.sasl_port), KAFKA_SASL_USER=sasl_user,
                            KAFKA_SASL_PASSWORD=sasl_password or "")
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    def _script(self, command: str, fresh: bool = False) -> str:
        env = {**self.env, "KAFKA_FRESH": "1" if fresh else "0"}
        done = subprocess.run(["bash", str(SCRIPT), command], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"kafka-local.sh {command} failed for {self.work_dir}:\n{done.stderr[-3000:]}")
        return done.stdout.strip()

    def start(self) -> str:
        out = self._script("start", fresh=not self._formatted)
        self._formatted = True
        return out

    def stop(self) -> str:
        return self._script("stop")

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
