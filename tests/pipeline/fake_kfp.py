"""A fake Kubeflow Pipelines API (v2beta1 REST) on loopback that records what kfp.Client sends."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class FakeKubeflow:
    """Answers the calls `pipeline.kubeflow` makes through kfp.Client; `requests` lists them in order."""

    def __init__(self):
        self.requests: list[dict] = []
        self.experiments: dict[str, dict] = {}
        self.recurring: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def answer(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, dict]:
        parts = path.strip("/").split("/")
        if parts[:2] != ["apis", "v2beta1"]:
            return 404, {"error": f"unknown path {path}"}
        resource, rest = parts[2] if len(parts) > 2 else "", parts[3:]
        if resource == "healthz":
            return 200, {"multi_user": False}
        if resource == "experiments" and method == "GET" and not rest:
            wanted = _filter_value(query.get("filter", [""])[0])
            found = [e for e in self.experiments.values() if wanted is None or e["display_name"] == wanted]
            return 200, {"experiments": found, "total_size": len(found)}
        if resource == "experiments" and method == "POST":
            experiment = {**body, "experiment_id": str(uuid.uuid4())}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if resource == "runs" and method == "POST":
            run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING"}
            self.runs[run["run_id"]] = run
            return 200, run
        if resource == "recurringruns" and method == "GET" and not rest:
            wanted = query.get("experiment_id", [None])[0]
            found = [r for r in self.recurring.values() if wanted in (None, r.get("experiment_id"))]
            return 200, {"recurringRuns": found, "total_size": len(found)}
        if resource == "recurringruns" and method == "POST":
            job = {**body, "recurring_run_id": str(uuid.uuid4())}
            self.recurring[job["recurring_run_id"]] = job
            return 200, job
        if resource == "recurringruns" and method == "DELETE" and rest:
            self.recurring.pop(rest[0], None)
            return 200, {}
        return 404, {"error": f"no fake for {method} {path}"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method):
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                query = parse_qs(url.query)
                fake.requests.append({"method": method, "path": url.path, "query": query, "body": body})
                status, payload = fake.answer(method, url.path, query, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                self._serve("GET")

            def do_POST(self):  # noqa: N802
                self._serve("POST")

            def do_DELETE(self):  # noqa: N802
                self._serve("DELETE")

            def log_message(self, *args):
                pass

        return Handler


def _filter_value(text: str) -> str | None:
    """The display name asked for by kfp.Client's URL-encoded JSON filter, if any."""
    if not text:
        return None
    try:
        predicates = json.loads(text).get("predicates", [])
    except ValueError:
        return None
    for predicate in predicates:
        if predicate.get("key") in ("display_name", "name"):
            return predicate.get("string_value") or predicate.get("stringValue")
    return None
