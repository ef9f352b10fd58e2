"""A real TensorBoard server on a free localhost port, read through its HTTP API (what its web pages read)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


class TensorBoard:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str, **query: str) -> Any:
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)

    def post(self, path: str, body: dict) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def runs(self) -> list[str]:
        return self.get("/data/runs")

    def scalars(self, run: str, tag: str) -> list[tuple[int, float]]:
        """(step, value) of each point of a run's scalar, in step order."""
        return [(step, value) for _, step, value in self.get("/data/plugin/scalars/scalars", run=run, tag=tag)]

    def tags(self) -> dict[str, list[str]]:
        return {run: sorted(tags) for run, tags in self.get("/data/plugin/scalars/tags").items()}

    def sessions(self) -> dict[str, dict[str, Any]]:
        """The HParams plugin's sessions by run: hyperparameters, each metric's last value and step, status."""
        body = {"experimentName": "", "startIndex": 0, "sliceSize": 10000, "allowedStatuses": STATUSES}
        groups = self.post("/data/plugin/hparams/session_groups", body).get("sessionGroups", [])
        return {
            group["name"]: {
                "hparams": group["hparams"],
                "metrics": {
                    metric["name"]["tag"]: (metric["trainingStep"], metric["value"])
                    for metric in group["sessions"][0]["metricValues"]
                },
                "status": group["sessions"][0]["status"],
            }
            for group in groups
        }

    def everything(self) -> dict[str, Any]:
        """Every run's scalars and session: what the tests compare."""
        tags = self.tags()
        return {
            "scalars": {run: {tag: self.scalars(run, tag) for tag in run_tags} for run, run_tags in tags.items()},
            "sessions": self.sessions(),
        }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def tensorboard(logdir: Path | None = None, logdir_spec: str | None = None, runs: int = 1) -> Iterator[TensorBoard]:
    """`tensorboard --logdir` (its default, fast loader) serving until `runs` runs are loaded and two reads of
    everything agree (the loader reads files in the background)."""
    port = free_port()
    where = ["--logdir", str(logdir)] if logdir_spec is None else ["--logdir_spec", logdir_spec]
    command = [sys.executable, "-m", "tensorboard.main", *where, "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    board = TensorBoard(port)
    try:
        deadline, previous = time.monotonic() + 60, None
        while True:
            if process.poll() is not None:
                raise AssertionError(f"tensorboard ended: {process.stderr.read()}")
            try:
                current = board.everything() if len(board.runs()) >= runs else None
            except OSError:
                current = None
            if current is not None and current == previous and len(current["sessions"]) >= runs:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"tensorboard at {board.url} did not load {runs} runs in 60 s")
            previous = current
            time.sleep(0.5)
        yield board
    finally:
        process.terminate()
        process.wait(timeout=30)
