"""A local stand-in for the Hugging Face Hub: the endpoints `HfApi.create_repo` and `HfApi.upload_folder`
(`create_commit`) call, recording every commit's files byte for byte.

    POST /api/repos/create                        -> {"url": ENDPOINT/NAMESPACE/NAME}
    POST /api/validate-yaml                       README.md metadata check (the Hub's own rules, below)
    POST /api/models/{repo}/preupload/{revision}  -> every file "regular" (inlined in the commit, no LFS/Xet)
    POST /api/models/{repo}/commit/{revision}     ndjson: header + one base64 "file" line per file

The metadata check refuses what the Hub refuses: a `base_model` or a `datasets` entry that is no Hub id
(e.g. `bundled:all-minilm-l6-v2`, `runs/msmarco/co-stg1`), an unknown license or pipeline tag, and a
`model-index` that huggingface_hub's `ModelCardData` cannot parse.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HUB_LICENSES = {
    "apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m", "cc-by-4.0",
    "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "bsd-3-clause", "gpl-3.0",
    "llama2", "llama3", "gemma", "other", "unknown",
}  # fmt: skip
PIPELINE_TAGS = {
    "feature-extraction", "sentence-similarity", "text-ranking", "text-classification", "fill-mask",
    "token-classification", "question-answering", "text-generation",
}  # fmt: skip


def metadata_errors(readme: str) -> list[str]:
    """What the Hub's metadata check would say about a README.md (empty: accepted)."""
    from huggingface_hub import ModelCard
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        card = ModelCard(readme, ignore_metadata_errors=False)
    except Exception as err:  # YAML or model-index that huggingface_hub cannot parse
        return [f"metadata: {err}"]
    data = card.data.to_dict()
    errors = []
    for key in ("base_model", "datasets"):
        values = data.get(key) or []
        for value in [values] if isinstance(values, str) else values:
            try:
                if not isinstance(value, str) or ":" in value:
                    raise HFValidationError(f"{value!r}")
                validate_repo_id(value)
            except HFValidationError:
                errors.append(f'"{key}" must be a Hub id, got {value!r}')
    if "license" in data and data["license"] not in HUB_LICENSES:
        errors.append(f'"license" {data["license"]!r} is not a Hub license id')
    if "pipeline_tag" in data and data["pipeline_tag"] not in PIPELINE_TAGS:
        errors.append(f'"pipeline_tag" {data["pipeline_tag"]!r} is not a Hub task')
    return errors


class FakeHub:
    """`with FakeHub() as hub:` serves on 127.0.0.1 (`hub.endpoint`); `hub.commits` lists
    {"repo", "message", "files": {path: bytes}}; `hub.refused` the metadata errors it answered 400 to."""

    def __init__(self):
        self.commits: list[dict] = []
        self.refused: list[str] = []
        self.unknown: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                hub.unknown.append(f"GET {self.path}")
                self._reply(404, {"error": "not found"})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    request = json.loads(body)
                    name = f"{request.get('organization') or 'user'}/{request['name']}"
                    if "/" in request["name"]:
                        name = request["name"]
                    return self._reply(200, {"url": f"{hub.endpoint}/{name}", "name": name})
                if path == "/api/validate-yaml":
                    errors = metadata_errors(json.loads(body)["content"])
                    hub.refused += errors
                    if errors:
                        return self._reply(400, {"errors": [{"message": e} for e in errors]})
                    return self._reply(200, {"warnings": []})
                if path.startswith("/api/models/") and "/preupload/" in path:
                    files = json.loads(body)["files"]
                    return self._reply(
                        200,
                        {
                            "files": [
                                {
                                    "path": f["path"],
                                    "uploadMode": "regular",
                                    "shouldIgnore": False,
                                    "oid": None,
                                }
                                for f in files
                            ]
                        },
                    )
                if path.startswith("/api/models/") and "/commit/" in path:
                    repo = path[len("/api/models/") :].split("/commit/")[0]
                    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                    header = next(line["value"] for line in lines if line["key"] == "header")
                    files = {
                        line["value"]["path"]: base64.b64decode(line["value"]["content"])
                        for line in lines
                        if line["key"] == "file"
                    }
                    hub.commits.append({"repo": repo, "message": header["summary"], "files": files})
                    oid = hashlib.sha1(body).hexdigest()
                    return self._reply(
                        200, {"commitUrl": f"{hub.endpoint}/{repo}/commit/{oid}", "commitOid": oid}
                    )
                hub.unknown.append(f"POST {path}")
                return self._reply(404, {"error": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
