"""A local HTTP server that answers as the Hugging Face hub does, for the -hf tests.

It serves the two routes huggingface_hub uses to find and fetch a model file:
`GET /api/models/OWNER/NAME/tree/REV` (the file list, as list_repo_files reads it) and
`HEAD|GET /OWNER/NAME/resolve/REV/PATH` (X-Repo-Commit, X-Linked-Etag / ETag and size
headers, ranges for resumed downloads), with the hub's error codes (X-Error-Code:
RepoNotFound, EntryNotFound, GatedRepo). Nothing is faked on moeviz's side: the real
huggingface_hub client talks to this server through HF_ENDPOINT.
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


@dataclass
class Repo:
    files: dict[str, bytes]
    token: str | None = None                 # gated: only this Bearer token gets in
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    cut_once: set[str] = field(default_factory=set)   # paths whose first full GET breaks half-way


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.log: list[tuple[str, str, str | None]] = []   # (method, path, Range header)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):   # quiet
                pass

            def do_HEAD(self):
                hub._serve(self, head=True)

            def do_GET(self):
                hub._serve(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, repo: str, files: dict[str, bytes | Path], **kw) -> Repo:
        data = {p: (v.read_bytes() if isinstance(v, Path) else v) for p, v in files.items()}
        self.repos[repo] = Repo(data, **kw)
        return self.repos[repo]

    def gets(self, path_suffix: str) -> list[tuple[str, str, str | None]]:
        return [e for e in self.log if e[0] == "GET" and e[1].endswith(path_suffix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- routes ---------------------------------------------------------------------
    def _serve(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        path = unquote(urlparse(h.path).path)
        self.log.append(("HEAD" if head else "GET", path, h.headers.get("Range")))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
            return self._tree(h, "/".join(parts[2:4]))
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._file(h, "/".join(parts[:2]), "/".join(parts[4:]), head)
        self._error(h, 404, None, "not found")

    def _repo(self, h, name: str) -> Repo | None:
        repo = self.repos.get(name)
        if repo is None:
            self._error(h, 404, "RepoNotFound", "Repository not found")
            return None
        if repo.token and h.headers.get("Authorization") != f"Bearer {repo.token}":
            self._error(h, 401 if not h.headers.get("Authorization") else 403, "GatedRepo",
                        "Access to model is restricted")
            return None
        return repo

    def _tree(self, h, name: str) -> None:
        repo = self._repo(h, name)
        if repo is None:
            return
        entries = [{"type": "file", "oid": hashlib.sha1(data).hexdigest(), "size": len(data), "path": p,
                    **({"lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}}
                       if p.endswith(".gguf") else {})}
                   for p, data in sorted(repo.files.items())]
        self._send(h, 200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, head=False)

    def _file(self, h, name: str, path: str, head: bool) -> None:
        repo = self._repo(h, name)
        if repo is None:
            return
        data = repo.files.get(path)
        if data is None:
            return self._error(h, 404, "EntryNotFound", "Entry not found")
        etag = hashlib.sha256(data).hexdigest()
        headers = {"X-Repo-Commit": repo.commit, "X-Linked-Etag": f'"{etag}"', "ETag": f'"{etag}"',
                   "X-Linked-Size": str(len(data)), "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        start, status = 0, 200
        if rng := h.headers.get("Range"):
            start = int(rng.split("=")[1].split("-")[0])
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        if not head and status == 200 and path in repo.cut_once:
            repo.cut_once.discard(path)   # announce the whole file, send half, hang up
            h.send_response(200)
            for k, v in {**headers, "Content-Length": str(len(body))}.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)
            return
        self._send(h, status, body, headers, head)

    @staticmethod
    def _send(h, status: int, body: bytes, headers: dict, head: bool) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _error(self, h, status: int, code: str | None, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(h, status, body, {"Content-Type": "application/json",
                                     **({"X-Error-Code": code} if code else {}), "X-Error-Message": message},
                   head=h.command == "HEAD")
