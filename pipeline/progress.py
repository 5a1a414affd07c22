"""Progress of a local run: stages append JSON lines to a file, run-local prints them as they come.

Stages run as separate processes under kfp.local, and everything they print (kfp's executor JSON,
TensorFlow's start-up logs) goes to the run's log file. What a person wants to see instead — each
stage starting and ending, with its time and whether it came from the cache, and the training
epochs — reaches the terminal through this file. Without SYNCREC_PROGRESS_FILE set (on Kubeflow),
`note` does nothing.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from pipeline.stage_table import STAGES

ENV = "SYNCREC_PROGRESS_FILE"
CLEAR_LINE = "\r\033[K"  # carriage return + erase line: the epoch bar is redrawn in place on a terminal
STAGE_NAMES = {s.key: s.display for s in STAGES}  # pipeline/stage_table.py


def note(event: str, stage: str, **fields) -> None:
    """Append one progress event (start, end, epoch) for `stage`."""
    path = os.environ.get(ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"event": event, "stage": stage, "time": time.time(), **fields}) + "\n")


class StageTimer:
    """with StageTimer("train") as info: ...; info["cache"] = True  -> start/end events with the time taken."""

    def __init__(self, stage: str):
        self.stage, self.info = stage, {}

    def __enter__(self):
        self.started = time.time()
        note("start", self.stage)
        return self.info

    def __exit__(self, kind, value, _tb):
        note("end", self.stage, seconds=round(time.time() - self.started, 1), failed=kind is not None, **self.info)
        return False


def format_event(event: dict, terminal: bool) -> str | None:
    """The line run-local prints for one event (None: print nothing)."""
    name = STAGE_NAMES.get(event["stage"], event["stage"])
    if event["event"] == "start":
        return f"  {name} ..." if terminal else None
    if event["event"] == "epoch":
        if not terminal:
            return None
        done, total = event["epoch"], event["epochs"]
        bar = "#" * int(20 * done / total)
        return (
            f"{CLEAR_LINE}  Trainer [{bar:<20}] epoch {done}/{total} (at most)  valid NDCG@10 {event['ndcg']:.4f}  "
            f"best epoch {event['best']}"
        )
    if event["event"] == "end":
        prefix = CLEAR_LINE if terminal else ""
        if event.get("failed"):
            return f"{prefix}x {name} failed after {event['seconds']} s"
        detail = "  " + event["detail"] if event.get("detail") else ""
        cache = " (reused from cache)" if event.get("cache") else ""
        return f"{prefix}- {name:<16} {event['seconds']:>6.1f} s{cache}{detail}"
    return None


def event_is_epoch(text: str) -> bool:
    """True for the epoch bar, which is redrawn in place."""
    return text.startswith(CLEAR_LINE + "  Trainer [")


class Follower(threading.Thread):
    """Prints the progress file's new events to `out` while a run goes on."""

    def __init__(self, path: str, out, terminal: bool):
        super().__init__(daemon=True)
        self.path, self.out, self.terminal = path, out, terminal
        self.stopping = threading.Event()
        self.offset = 0

    def poll(self) -> None:
        """Print the events appended since the last poll."""
        if not os.path.exists(self.path):
            return
        with open(self.path, encoding="utf-8") as handle:
            handle.seek(self.offset)
            for line in handle:
                if not line.endswith("\n"):
                    break
                self.offset += len(line.encode("utf-8"))
                text = format_event(json.loads(line), self.terminal)
                if text:
                    in_place = self.terminal and event_is_epoch(text)
                    self.out.write(text if in_place else text + "\n")
                    self.out.flush()

    def run(self) -> None:
        while not self.stopping.wait(0.2):
            self.poll()
        self.poll()

    def stop(self) -> None:
        """Print what is left and stop following."""
        self.stopping.set()
        self.join()


def terminal_stream():
    """A writable stream on the real terminal (fd 1 as it is now, before any redirection)."""
    return os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
