"""A loopback stand-in for the Hugging Face Hub, for push/pull tests with the real clients.

It speaks the part of the Hub's HTTP API that `huggingface_hub` (2.x) and `transformers` use to create a
repo, commit regular (non-LFS, base64) files in one commit, and read them back by branch or commit hash.
Point a client at it with `HF_ENDPOINT=<server.url>`, set before huggingface_hub is imported: nothing in
the client is mocked. No pip-installable server accepts uploads (see notes/stack-on-cpu.md section 13).

Routes (all a model repo needs), as the clients call them:
  POST /api/repos/create                          HfApi.create_repo
  POST /api/validate-yaml                         HfApi.create_commit checks README.md front matter first
  POST /api/models/{repo}/preupload/{rev}         answers uploadMode "regular" for every file (no LFS/Xet)
  POST /api/models/{repo}/commit/{rev}            NDJSON: header, then file / deletedFile lines
  POST /api/models/{repo}/branch/{branch}         HfApi.create_branch
  GET  /api/models/{repo}[/revision/{rev}]        repo_info / resolve_revision: the commit sha + siblings
  GET  /api/models/{repo}/tree/{rev}[/{path}]     list_repo_tree, used by snapshot_download
  HEAD|GET /{repo}/resolve/{rev}/{path}           downloads: X-Repo-Commit, ETag, Content-Length
"""

import base64
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

# The token the tests give `HubServer(token=...)` and send with their writes (the `hub` fixture uses it).
HUB_TOKEN = "hf_loopback_test_token"

REPO = r"(?P<repo>[^/]+/[^/]+)"
REV = r"(?P<rev>[^/]+)"  # clients quote the revision, so a ref like refs/pr/1 is one segment


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]
    message: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # branch name -> commit sha
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        """A branch name or a full commit sha, like the Hub (no tags, no short shas)."""
        return self.commits.get(self.branches.get(revision, revision))


class HubError(Exception):
    """An error answer, with the headers huggingface_hub maps to its exception types."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None):
        super().__init__(message)
        self.status, self.code, self.commit = status, code, commit


def git_blob_sha(content: bytes) -> str:
    """The git object id of a file: what the Hub reports as a regular file's oid and ETag."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class HubServer:
    """In-memory repos behind a ThreadingHTTPServer on 127.0.0.1; use as a context manager.

    `token`, when given, is required (as `Authorization: Bearer <token>`) for every write.
    `requests` records "METHOD path" of every request, so tests can assert nothing was uploaded.
    """

    def __init__(self, token: str | None = None):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self._counter = itertools.count()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.hub = self
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.routes = [
            ("POST", re.compile(r"^/api/repos/create$"), self.create_repo),
            ("POST", re.compile(r"^/api/validate-yaml$"), lambda body, query: (200, {"errors": [], "warnings": []})),
            ("POST", re.compile(rf"^/api/models/{REPO}/preupload/{REV}$"), self.preupload),
            ("POST", re.compile(rf"^/api/models/{REPO}/commit/{REV}$"), self.commit),
            ("POST", re.compile(rf"^/api/models/{REPO}/branch/{REV}$"), self.create_branch),
            ("GET", re.compile(rf"^/api/models/{REPO}(?:/revision/{REV})?$"), self.model_info),
            ("GET", re.compile(rf"^/api/models/{REPO}/tree/{REV}(?:/(?P<path>.+))?$"), self.tree),
        ]
        self.resolve_route = re.compile(rf"^/{REPO}/resolve/{REV}/(?P<path>.+)$")

    def __enter__(self) -> "HubServer":
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc_info):
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- repository state ------------------------------------------------------------------------------------

    def new_commit(self, repo: Repo, files: dict[str, bytes], message: str) -> Commit:
        listing = sorted((path, git_blob_sha(content)) for path, content in files.items())
        seed = json.dumps([repo.repo_id, next(self._counter), message, listing]).encode()
        commit = Commit(hashlib.sha1(seed).hexdigest(), files, message)
        repo.commits[commit.sha] = commit
        return commit

    def repo(self, repo_id: str) -> Repo:
        if repo_id not in self.repos:
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return self.repos[repo_id]

    def commit_at(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def branch_head(self, repo: Repo, branch: str) -> Commit:
        if branch not in repo.branches:
            raise HubError(404, f"Branch {branch} not found: commits go to an existing branch", "RevisionNotFound")
        return repo.commits[repo.branches[branch]]

    # -- API ---------------------------------------------------------------------------------------------------

    def create_repo(self, body: bytes, query: dict):
        payload = json.loads(body)
        if payload.get("type", "model") != "model":
            raise HubError(400, "This test server only hosts model repos")
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        if "/" not in repo_id:
            raise HubError(400, "Give a namespace: org/name")
        url = f"{self.url}/{repo_id}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": url}
        repo = Repo(repo_id, private=payload.get("visibility") == "private")
        repo.branches["main"] = self.new_commit(repo, {}, "initial commit").sha
        self.repos[repo_id] = repo
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def preupload(self, body: bytes, query: dict, repo: str, rev: str):
        head = self.branch_head(self.repo(repo), rev)
        files = [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": _oid(head, f["path"])}
            for f in json.loads(body)["files"]
        ]
        return 200, {"files": files, "commitOid": head.sha}

    def commit(self, body: bytes, query: dict, repo: str, rev: str):
        """Apply every line of the NDJSON payload, or none of them: a commit is atomic."""
        if query.get("create_pr"):
            raise HubError(400, "This test server does not open pull requests: commit to a branch")
        target = self.repo(repo)
        head = self.branch_head(target, rev)
        files, message = dict(head.files), ""
        for line in filter(None, body.splitlines()):
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value["summary"]
                if value.get("parentCommit") not in (None, head.sha):
                    raise HubError(412, f"A commit has happened since {value['parentCommit']}")
            elif key == "file" and value.get("encoding") == "base64":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
            elif key == "deletedFolder":
                files = {p: c for p, c in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:
                raise HubError(400, f"Unsupported commit operation {key!r} (this server only takes regular files)")
        commit = self.new_commit(target, files, message)
        target.branches[rev] = commit.sha
        return 200, {"success": True, "commitOid": commit.sha, "commitUrl": f"{self.url}/{repo}/commit/{commit.sha}"}

    def create_branch(self, body: bytes, query: dict, repo: str, rev: str):
        target = self.repo(repo)
        if rev in target.branches:
            raise HubError(409, f"Branch {rev} already exists")
        starting_point = json.loads(body or b"{}").get("startingPoint") or "main"
        target.branches[rev] = self.commit_at(target, starting_point).sha
        return 200, {}

    def model_info(self, body: bytes, query: dict, repo: str, rev: str | None = None):
        target = self.repo(repo)
        commit = self.commit_at(target, rev or "main")
        siblings = [
            {"rfilename": p, "size": len(c), "blobId": git_blob_sha(c)} for p, c in sorted(commit.files.items())
        ]
        return 200, {"id": repo, "modelId": repo, "sha": commit.sha, "private": target.private, "siblings": siblings}

    def tree(self, body: bytes, query: dict, repo: str, rev: str, path: str | None = None):
        commit = self.commit_at(self.repo(repo), rev)
        recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
        prefix = f"{path.rstrip('/')}/" if path else ""
        entries, folders = [], set()
        for name, content in sorted(commit.files.items()):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            entries.append({"type": "file", "oid": git_blob_sha(content), "size": len(content), "path": name})
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": name} for name in sorted(folders)]
        return 200, entries

    def resolve(self, repo: str, rev: str, path: str) -> tuple[Commit, bytes]:
        commit = self.commit_at(self.repo(repo), rev)
        if path not in commit.files:
            raise HubError(404, f"Entry {path} not found", "EntryNotFound", commit=commit.sha)
        return commit, commit.files[path]


def _oid(commit: Commit, path: str) -> str | None:
    return git_blob_sha(commit.files[path]) if path in commit.files else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries a Content-Length

    def do_HEAD(self):
        self.dispatch("HEAD")

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def log_message(self, format, *args):  # quiet: `HubServer.requests` is the log
        pass

    def dispatch(self, method: str):
        hub: HubServer = self.server.hub
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        hub.requests.append(f"{method} {url.path}")
        try:
            if method == "POST" and hub.token and self.headers.get("Authorization") != f"Bearer {hub.token}":
                raise HubError(401, "Invalid credentials in Authorization header")
            with hub.lock:
                if method in ("HEAD", "GET") and (match := hub.resolve_route.match(url.path)):
                    commit, content = hub.resolve(**_unquoted(match))
                    return self.send_file(method, commit, content)
                for route_method, pattern, handler in hub.routes:
                    if route_method == method and (match := pattern.match(url.path)):
                        status, payload = handler(body, parse_qs(url.query), **_unquoted(match))
                        return self.send_json(status, payload)
            raise HubError(404, f"No route for {method} {url.path} on this test server")
        except HubError as error:
            headers = {"X-Error-Message": str(error)}
            if error.code:
                headers["X-Error-Code"] = error.code
            if error.commit:
                headers["X-Repo-Commit"] = error.commit
            self.send_json(error.status, {"error": str(error)}, headers, with_body=method != "HEAD")
        except Exception as error:  # a bug here: answer 500 rather than leave the client waiting
            self.send_json(500, {"error": repr(error)}, with_body=method != "HEAD")

    def send_json(self, status: int, payload, headers: dict | None = None, with_body: bool = True):
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data) if with_body else 0))
        self.end_headers()
        if with_body:
            self.wfile.write(data)

    def send_file(self, method: str, commit: Commit, content: bytes):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(content)))
        self.send_header("ETag", f'"{git_blob_sha(content)}"')
        self.send_header("X-Repo-Commit", commit.sha)
        self.end_headers()
        if method == "GET":
            self.wfile.write(content)


def _unquoted(match: re.Match) -> dict[str, str]:
    return {name: unquote(value) for name, value in match.groupdict().items() if value is not None}
