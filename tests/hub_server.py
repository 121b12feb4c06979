"""A minimal Hugging Face Hub-compatible HTTP server for offline tests (standard library only).

It serves what `huggingface_hub` (with `HF_HUB_DISABLE_XET=1`) and `datasets` call for `create_repo`,
`upload_folder`/`create_commit` (preupload, the LFS batch API and PUT, the ndjson commit), `hf_hub_download`,
`snapshot_download`, `HfFileSystem` and `load_dataset`, for models, datasets and spaces. History is linear: each
commit keeps a full tree (path -> blob); blob bytes live once, by sha256, in a temp folder.

    server = HubServer().start()     # server.url, then point HF_ENDPOINT at it (in a subprocess)
    server.fail_next_commits(2)      # the next two commit POSTs answer 500
    server.commits("user/repo")      # [{"oid", "title", "parent", "files"}, ...], oldest first
    server.stop()
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".safetensors", ".npy", ".gguf", ".pt", ".zip", ".gz", ".png", ".jpg")
GITATTRIBUTES = b"".join(b"*%s filter=lfs diff=lfs merge=lfs -text\n" % s.encode() for s in LFS_SUFFIXES)


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HTTPError(Exception):
    def __init__(self, status: int, code: str, message: str = ""):
        super().__init__(message or code)
        self.status, self.code = status, code


class HubServer:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hub-server-"))
        self.repos: dict[tuple[str, str], dict] = {}
        self.lock = threading.Lock()
        self._fail_commits = 0
        self.log: list[tuple[str, str, int]] = []  # (method, path, status) of every request

    # --- test controls -------------------------------------------------------------------------------------------
    def start(self) -> HubServer:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        shutil.rmtree(self.root, ignore_errors=True)

    def fail_next_commits(self, n: int) -> None:
        self._fail_commits = n

    def commits(self, repo_id: str, repo_type: str = "dataset") -> list[dict]:
        return list(self.repos[(repo_type, repo_id)]["commits"])

    def files(self, repo_id: str, repo_type: str = "dataset") -> dict[str, bytes]:
        tree = self.repos[(repo_type, repo_id)]["commits"][-1]["files"]
        return {p: (self.root / "blobs" / e["sha256"]).read_bytes() for p, e in tree.items()}

    # --- storage ----------------------------------------------------------------------------------------------------
    def _store(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        (self.root / "blobs").mkdir(exist_ok=True)
        (self.root / "blobs" / sha).write_bytes(data)
        return sha

    def _entry(self, data: bytes, lfs: bool) -> dict:
        sha = self._store(data)
        entry = {"sha256": sha, "size": len(data), "lfs": lfs, "git": git_sha1(data)}
        if lfs:  # a tree lists an LFS file by the git oid of its pointer file
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()
            entry.update(git=git_sha1(pointer), pointer_size=len(pointer))
        return entry

    def _commit(self, repo: dict, title: str, files: dict, description: str = "") -> dict:
        parent = repo["commits"][-1]["oid"] if repo["commits"] else None
        digest = json.dumps([parent, title, len(repo["commits"]), sorted((p, e["git"]) for p, e in files.items())])
        commit = {"oid": hashlib.sha1(digest.encode()).hexdigest(), "title": title, "description": description,
                  "parent": parent, "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), "files": files}
        for entry in files.values():
            entry.setdefault("last_commit", commit["oid"])
        repo["commits"].append(commit)
        return commit

    def _repo(self, repo_type: str, repo_id: str) -> dict:
        if (repo_type, repo_id) not in self.repos:
            raise HTTPError(404, "RepoNotFound", f"Repository {repo_id} not found")
        return self.repos[(repo_type, repo_id)]

    def _rev(self, repo: dict, rev: str) -> dict:
        rev = unquote(rev)
        for commit in reversed(repo["commits"]):
            if rev in ("main", commit["oid"]) or (len(rev) >= 7 and commit["oid"].startswith(rev)):
                return commit
        raise HTTPError(404, "RevisionNotFound", f"Invalid rev id: {rev}")

    # --- JSON shapes ------------------------------------------------------------------------------------------------
    def _file_json(self, path: str, e: dict, commit: dict, expand: bool) -> dict:
        out = {"type": "file", "path": path, "oid": e["git"], "size": e["size"]}
        if e["lfs"]:
            out["lfs"] = {"oid": e["sha256"], "size": e["size"], "pointerSize": e["pointer_size"]}
        if expand:
            c = next((c for c in self.all_commits if c["oid"] == e["last_commit"]), commit)
            out["lastCommit"] = {"id": c["oid"], "title": c["title"], "date": c["date"]}
        return out

    def _dir_json(self, path: str, commit: dict) -> dict:
        return {"type": "directory", "path": path, "oid": hashlib.sha1(f"{commit['oid']}:{path}".encode()).hexdigest(),
                "size": 0}

    def _listing(self, commit: dict, path: str, recursive: bool, expand: bool) -> list[dict]:
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        out, dirs = [], set()
        for p in sorted(commit["files"]):
            if not p.startswith(prefix):
                continue
            parts = p[len(prefix):].split("/")
            for i in range(1, len(parts) if recursive else min(2, len(parts))):
                dirs.add(prefix + "/".join(parts[:i]))
            if recursive or len(parts) == 1:
                out.append(self._file_json(p, commit["files"][p], commit, expand))
        if prefix and not out and not dirs:
            raise HTTPError(404, "EntryNotFound", f"{path} does not exist on this revision")
        return [self._dir_json(d, commit) for d in sorted(dirs)] + out

    def _info(self, repo_type: str, repo_id: str, repo: dict, commit: dict) -> dict:
        info = {"id": repo_id, "_id": repo_id, "author": repo_id.split("/")[0], "sha": commit["oid"],
                "lastModified": commit["date"], "createdAt": repo["commits"][0]["date"], "private": repo["private"],
                "disabled": False, "gated": False, "tags": [], "downloads": 0, "likes": 0,
                "siblings": [{"rfilename": p, "size": e["size"]} for p, e in sorted(commit["files"].items())]}
        if repo_type == "space":
            info.update(sdk=repo.get("sdk"), runtime=repo["runtime"])
        return info

    @property
    def all_commits(self) -> list[dict]:
        return [c for repo in self.repos.values() for c in repo["commits"]]


def _make_handler(hub: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean; hub.log has every request
            pass

        def _send(self, status: int, body: bytes | dict | list = b"", headers: dict | None = None) -> None:
            if not isinstance(body, bytes):
                body, headers = json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, str(value))
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            hub.log.append((self.command, self.path, status))

        def _read_body(self) -> bytes:  # read it all up front, so that keep-alive connections stay in sync
            if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)

        def _json(self) -> dict:
            raw = self.raw
            if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                return {k: v if k == "paths" else v[0] for k, v in parse_qs(raw.decode()).items()}
            return json.loads(raw or b"{}")

        def _dispatch(self) -> None:
            self.raw = self._read_body()
            url = urlsplit(self.path)
            seg, query = url.path.strip("/").split("/"), parse_qs(url.query)
            try:
                with hub.lock:
                    self._route(seg, query)
            except HTTPError as err:
                self._send(err.status, {"error": str(err)}, {"X-Error-Code": err.code, "X-Error-Message": str(err)})
            except Exception as err:  # a server bug: answer it instead of dropping the connection
                self._send(500, {"error": f"{type(err).__name__}: {err}"})

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

        def _split(self, repo_type: str, rest: list[str]) -> tuple[str, list[str]]:
            for n in (2, 1):  # "org/name" or a legacy "name"
                if (repo_type, "/".join(rest[:n])) in hub.repos:
                    return "/".join(rest[:n]), rest[n:]
            return "/".join(rest[:2]), rest[2:]

        def _route(self, seg: list[str], query: dict) -> None:
            m = self.command
            if seg[:2] == ["api", "repos"] and seg[2:] == ["create"]:
                return self._create(self._json())
            if seg[:2] == ["api", "repos"] and seg[2:] == ["delete"]:
                body = self._json()
                name = "/".join(filter(None, [body.get("organization"), body["name"]]))
                hub.repos.pop((body.get("type") or "model", name), None)
                return self._send(200, {})
            if seg == ["api", "validate-yaml"]:
                return self._send(200, {"errors": [], "warnings": []})
            if seg == ["api", "whoami-v2"]:
                return self._send(200, {"type": "user", "name": "dummy", "orgs": [], "auth": {}})
            if seg[0] == "lfs-upload" and m == "PUT":
                data = self.raw
                if hashlib.sha256(data).hexdigest() != seg[1]:
                    raise HTTPError(400, "BadRequest", "sha256 mismatch")
                hub._store(data)
                return self._send(200)
            if seg[0] == "api" and len(seg) > 2 and seg[1] in TYPES:
                repo_type = TYPES[seg[1]]
                repo_id, rest = self._split(repo_type, seg[2:])
                return self._api(repo_type, repo_id, hub._repo(repo_type, repo_id), rest, query)
            repo_type = TYPES[seg[0]] if seg[0] in ("datasets", "spaces") else "model"
            rest = seg[1:] if seg[0] in ("datasets", "spaces") else seg
            if len(rest) > 4 and rest[-4:] == ["info", "lfs", "objects", "batch"]:
                return self._lfs_batch(repo_type, "/".join(rest[:-4])[: -len(".git")])
            repo_id, rest = self._split(repo_type, rest)
            if rest[:1] == ["resolve"] and len(rest) > 2:
                return self._resolve(repo_id, hub._repo(repo_type, repo_id), rest[1], unquote("/".join(rest[2:])))
            raise HTTPError(404, "NotFound", f"no route for {m} {self.path}")

        def _create(self, body: dict) -> None:
            repo_type = body.get("type") or "model"
            repo_id = "/".join(filter(None, [body.get("organization"), body["name"]]))
            url = f"{hub.url}/{PREFIX[repo_type]}{repo_id}"
            if (repo_type, repo_id) in hub.repos:  # the Hub's 409 carries the url, which create_repo(exist_ok) reads
                return self._send(409, {"error": "You already created this repo", "url": url})
            repo = {"private": body.get("visibility", "private" if body.get("private") else "public") != "public",
                    "sdk": body.get("sdk"), "commits": [], "secrets": {}, "variables": {},
                    "runtime": {"stage": "RUNNING", "hardware": {"current": "cpu-basic", "requested": "cpu-basic"}}}
            hub._commit(repo, "initial commit", {".gitattributes": hub._entry(GITATTRIBUTES, lfs=False)})
            hub.repos[(repo_type, repo_id)] = repo
            self._send(200, {"url": url, "name": repo_id, "id": repo_id})

        def _api(self, repo_type: str, repo_id: str, repo: dict, rest: list[str], query: dict) -> None:
            action, rev = (rest[0] if rest else ""), (rest[1] if len(rest) > 1 else "main")
            expand = query.get("expand", ["false"])[0].lower() in ("1", "true")
            if action in ("", "revision"):
                return self._send(200, hub._info(repo_type, repo_id, repo, hub._rev(repo, rev)))
            if action == "tree":
                recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                listing = hub._listing(hub._rev(repo, rev), unquote("/".join(rest[2:])), recursive, expand)
                return self._send(200, listing)
            if action == "paths-info":
                commit, body = hub._rev(repo, rev), self._json()
                expand = str(body.get("expand", expand)).lower() in ("1", "true")
                out = []
                for path in body.get("paths", []):
                    path = path.strip("/")
                    if path in commit["files"]:
                        out.append(hub._file_json(path, commit["files"][path], commit, expand))
                    elif any(p.startswith(path + "/") for p in commit["files"]):
                        out.append(hub._dir_json(path, commit))
                return self._send(200, out)
            if action == "commits":
                commits = [c for c in reversed(repo["commits"][: repo["commits"].index(hub._rev(repo, rev)) + 1])]
                return self._send(200, [{"id": c["oid"], "title": c["title"], "message": c["description"],
                                         "date": c["date"], "authors": [{"user": "dummy"}]} for c in commits])
            if action == "refs":
                head = repo["commits"][-1]["oid"]
                return self._send(200, {"branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": head}],
                                        "converts": [], "tags": []})
            if action == "preupload":
                files = hub._rev(repo, rev)["files"]
                out = []
                for f in self._json()["files"]:
                    sample = base64.b64decode(f["sample"])
                    lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] >= 10 * 2**20 or b"\0" in sample
                    old = files.get(f["path"])
                    oid = (old["sha256"] if old["lfs"] else old["git"]) if old else None
                    out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular",
                                "shouldIgnore": False, "oid": oid})
                return self._send(200, {"files": out})
            if action == "commit" and self.command == "POST":
                return self._commit_ndjson(repo_type, repo_id, repo, rev)
            if action in ("secrets", "variables"):
                body = self._json() if self.command in ("POST", "DELETE") else {}
                if self.command == "POST":
                    repo[action][body["key"]] = body.get("value")
                elif self.command == "DELETE":
                    repo[action].pop(body["key"], None)
                return self._send(200, {k: {"value": v} for k, v in repo[action].items()} if action == "variables"
                                  else {})
            if action == "runtime":
                return self._send(200, repo["runtime"])
            raise HTTPError(404, "NotFound", f"no route for {self.command} {self.path}")

        def _commit_ndjson(self, repo_type: str, repo_id: str, repo: dict, rev: str) -> None:
            lines = [json.loads(line) for line in self.raw.splitlines() if line.strip()]
            if hub._fail_commits > 0:
                hub._fail_commits -= 1
                raise HTTPError(500, "InternalError", "injected commit failure")
            head = hub._rev(repo, rev)
            files = {p: dict(e) for p, e in head["files"].items()}
            header = {}
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "header":
                    header = value
                    if value.get("parentCommit") and value["parentCommit"] != head["oid"]:
                        raise HTTPError(412, "PreconditionFailed", "A commit has happened since. Please refresh.")
                elif key == "file":
                    files[value["path"]] = hub._entry(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    blob = hub.root / "blobs" / value["oid"]
                    if not blob.exists():
                        raise HTTPError(422, "LfsObjectMissing", f"LFS object {value['oid']} was not uploaded")
                    files[value["path"]] = hub._entry(blob.read_bytes(), lfs=True)
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: e for p, e in files.items() if not p.startswith(folder)}
            for path, entry in files.items():  # unchanged files keep the commit that last touched them
                if path in head["files"] and head["files"][path]["git"] == entry["git"]:
                    entry["last_commit"] = head["files"][path]["last_commit"]
            commit = hub._commit(repo, header.get("summary", ""), files, header.get("description", ""))
            url = f"{hub.url}/{PREFIX[repo_type]}{repo_id}/commit/{commit['oid']}"
            self._send(200, {"success": True, "commitOid": commit["oid"], "commitUrl": url})

        def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
            hub._repo(repo_type, repo_id)
            objects = []
            for obj in self._json()["objects"]:
                out = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if not (hub.root / "blobs" / obj["oid"]).exists():  # objects with no actions are already uploaded
                    out["actions"] = {"upload": {"href": f"{hub.url}/lfs-upload/{obj['oid']}"}}
                objects.append(out)
            self._send(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

        def _resolve(self, repo_id: str, repo: dict, rev: str, path: str) -> None:
            commit = hub._rev(repo, rev)
            entry = commit["files"].get(path)
            if entry is None:
                raise HTTPError(404, "EntryNotFound", f"{path} does not exist on {rev}")
            data = (hub.root / "blobs" / entry["sha256"]).read_bytes()
            headers = {"ETag": f'"{entry["sha256"] if entry["lfs"] else entry["git"]}"', "Accept-Ranges": "bytes",
                       "X-Repo-Commit": commit["oid"], "Content-Type": "application/octet-stream"}
            if entry["lfs"]:
                headers.update({"X-Linked-Etag": headers["ETag"], "X-Linked-Size": entry["size"]})
            status, rng = 200, self.headers.get("Range", "")
            if rng.startswith("bytes="):
                start_s, end_s = rng[len("bytes="):].split(",")[0].split("-")
                start = int(start_s) if start_s else max(0, len(data) - int(end_s))
                end = min(int(end_s), len(data) - 1) if start_s and end_s else len(data) - 1
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data, status = data[start: end + 1], 206
            headers["Content-Length"] = len(data)
            self._send(status, data, headers)

    return Handler
