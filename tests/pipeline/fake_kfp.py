"""A fake Kubeflow Pipelines API (v2beta1 REST) on loopback that records what kfp.Client sends.

With multi_user=True it holds clients to multi-user Kubeflow's rules (profiles): every request needs the
bearer token (401 otherwise), experiments are created and listed within a namespace, and runs and
recurring runs land in their experiment's namespace."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class FakeKubeflow:
    """Answers the calls `pipeline.kubeflow` makes through kfp.Client; `requests` lists them in order."""

    def __init__(self, multi_user: bool = False, token: str | None = None):
        self.multi_user, self.token = multi_user, token
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

    def answer(
        self, method: str, path: str, query: dict, body: dict | None, authorization: str | None = None
    ) -> tuple[int, dict]:
        parts = path.strip("/").split("/")
        if parts[:2] != ["apis", "v2beta1"]:
            return 404, {"error": f"unknown path {path}"}
        resource, rest = parts[2] if len(parts) > 2 else "", parts[3:]
        if resource == "healthz":
            return 200, {"multi_user": self.multi_user}
        if self.multi_user and authorization != f"Bearer {self.token}":
            return 401, {"error": "Unauthenticated: request header error: there is no user identity header"}
        namespace = query.get("namespace", [None])[0]
        if resource == "experiments" and method == "GET" and not rest:
            if self.multi_user and not namespace:
                return 400, {"error": "Invalid input error: In multi-user mode, ListExperiment requires namespace"}
            wanted = _filter_value(query.get("filter", [""])[0])
            found = [
                e
                for e in self.experiments.values()
                if (wanted is None or e["display_name"] == wanted) and (not self.multi_user or e["namespace"] == namespace)
            ]
            return 200, {"experiments": found, "total_size": len(found)}
        if resource == "experiments" and method == "POST":
            if self.multi_user and not body.get("namespace"):
                return 400, {"error": "Invalid input error: In multi-user mode, experiment namespace must be specified"}
            experiment = {**body, "experiment_id": str(uuid.uuid4())}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if resource in ("runs", "recurringruns") and method == "POST" and self.multi_user:
            if body.get("experiment_id") not in self.experiments:
                return 400, {"error": "Invalid input error: in multi-user mode a run needs an experiment"}
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
                authorization = self.headers.get("Authorization")
                fake.requests.append(
                    {"method": method, "path": url.path, "query": query, "body": body, "authorization": authorization}
                )
                status, payload = fake.answer(method, url.path, query, body, authorization)
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
