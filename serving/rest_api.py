"""TF Serving's REST API on its own port, over the same repository and checks as the gRPC services.

GET  /v1/models/NAME[/versions/N | /labels/L]            model status (what readiness probes call)
GET  /v1/models/NAME[/versions/N | /labels/L]/metadata   the signature_defs
POST /v1/models/NAME[/versions/N | /labels/L]:predict    {"signature_name": ..., "instances": [...]} (row
     format: one object per row, answered {"predictions": [...]}) or {"inputs": {...}} (columnar, answered
     {"outputs": {...}}). Errors are {"error": "..."} with 400, 404 or 503, as TF Serving answers them.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from google.protobuf import json_format

from serving.errors import BadRequest, NotFound, ServingError
from serving.inputs import LIMITS, decode_json
from serving.repository import ModelRepository

PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?(/metadata|:predict)?")
MAX_BODY = LIMITS["bytes"]


def _jsonable(value):
    """An output (or one row of it) as JSON: strings decoded as UTF-8, numbers as numbers."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    array = np.asarray(value)
    if array.dtype == object:
        return [_jsonable(a) for a in array] if array.ndim else array.item().decode("utf-8", "replace")
    return array.tolist()


def status_body(repository: ModelRepository, name: str, version: int | None) -> dict:
    rows = repository.statuses(name, version)
    return {
        "model_version_status": [
            {
                "version": str(v),
                "state": state,
                "status": {"error_code": "OK" if not error else "UNKNOWN", "error_message": error},
            }
            for v, state, error in rows
        ]
    }


def metadata_body(repository: ModelRepository, name: str, version: int | None, label: str | None) -> dict:
    model = repository.get(name, version, label)
    return {
        "model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
        "metadata": {
            "signature_def": {
                "signature_def": {k: json_format.MessageToDict(v) for k, v in model.signature_defs.items()}
            }
        },
    }


def predict_body(repository: ModelRepository, name: str, version: int | None, label: str | None, body) -> dict:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object with 'instances' or 'inputs'")
    signature = body.get("signature_name", "serving_default")
    if not isinstance(signature, str):
        raise BadRequest("'signature_name' key must be a string value.")
    if ("instances" in body) == ("inputs" in body):
        raise BadRequest("the request must have exactly one of 'instances' (row format) or 'inputs' (columnar)")
    model = repository.get(name, version, label)
    specs = model.input_specs(signature)
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise BadRequest("'instances' must be a list of objects, one per row, naming every input")
        columns = {key: [row.get(key) for row in rows] for key in specs}
        for row in rows:
            if set(row) != set(specs):
                raise BadRequest(f"every instance must name exactly the inputs {sorted(specs)}")
    else:
        columns = body["inputs"]
        if not isinstance(columns, dict):
            raise BadRequest("'inputs' must be an object naming every input")
    arrays = {key: decode_json(key, value, specs[key]) if key in specs else None for key, value in columns.items()}
    outputs = model.run(signature, arrays)
    if "instances" in body:
        size = len(body["instances"])
        return {"predictions": [{k: _jsonable(v[i]) for k, v in outputs.items()} for i in range(size)]}
    return {"outputs": {k: _jsonable(v) for k, v in outputs.items()}}


def make_handler(repository: ModelRepository):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self, method: str) -> None:
            match = PATH.fullmatch(self.path.split("?", 1)[0])
            try:
                if not match:
                    raise NotFound(f"Malformed request: {method} {self.path}")
                name, version, label, action = match.groups()
                version = int(version) if version else None
                if method == "GET" and action is None:
                    self._answer(200, status_body(repository, name, version))
                elif method == "GET" and action == "/metadata":
                    self._answer(200, metadata_body(repository, name, version, label))
                elif method == "POST" and action == ":predict":
                    length = int(self.headers.get("Content-Length") or 0)
                    if length > MAX_BODY:
                        raise BadRequest(f"the request body has {length:,} bytes; at most {MAX_BODY:,}")
                    try:
                        body = json.loads(self.rfile.read(length) or b"null")
                    except ValueError as err:
                        raise BadRequest(f"the request body is not JSON: {err}") from err
                    self._answer(200, predict_body(repository, name, version, label, body))
                else:
                    raise NotFound(f"Malformed request: {method} {self.path}")
            except ServingError as err:
                self._answer(err.http_status, {"error": str(err)})

        def do_GET(self):  # noqa: N802
            self._route("GET")

        def do_POST(self):  # noqa: N802
            self._route("POST")

        def log_message(self, *args):
            pass

    return Handler


def start_rest(repository: ModelRepository, host: str, port: int) -> ThreadingHTTPServer:
    """Serve the REST API in a background thread; `server_address[1]` is the bound port."""
    server = ThreadingHTTPServer((host, port), make_handler(repository))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="rest-api").start()
    return server
