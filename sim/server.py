"""A scriptable stand-in for CDF's pipeline-run endpoints and an OAuth token endpoint.

Stdlib only (http.server), so a step can do what a real server or proxy does
to a client: drop the socket, stall, or stream a huge body.
"""

from __future__ import annotations

import functools
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl

from sim import openapi
from sim.handler import HttpServer
from sim.lists import Catalog
from sim.steps import Request, Step
from sim.writeside import WriteSide

TOKEN_PATH = "/oauth2/token"
RUN_PATH = re.compile(
    r"/api/v1/projects/(?P<project>[^/]+)/context/entitymatching"
    r"/pipelines/(?P<pipeline>[^/]+)/runs/(?P<run>[^/]+)"
)
LIST_PATH = re.compile(
    r"/api/v1/projects/(?P<project>[^/]+)/context/entitymatching/pipelines(?:/(?P<pipeline>[^/]+)/runs)?"
)
MAX_ID = 9007199254740991


def _oauth_error(code: int, error: str, description: str) -> Step:
    # Identity providers answer with RFC 6749 error bodies, not CDF's.
    body = json.dumps({"error": error, "error_description": description}).encode()
    return Step.raw(code, body, {"Cache-Control": "no-store"})


def _valid_id(text: str) -> bool:
    return text.isdecimal() and text.isascii() and 1 <= int(text) <= MAX_ID


class CdfSimulator(WriteSide):
    """CDF on 127.0.0.1: tokens, scripted run answers, and a record of every request.

    The write side (one pipeline, classic resources, assets) comes from `WriteSide`;
    `write_limit`, `write_latency_s`, `byids_latency_s` and `list_latency_s` configure it (sim/writes.py).
    """

    def __init__(
        self,
        project: str = "demo",
        client_id: str = "matchrelay",
        client_secret: str = "s3cret",
        token_ttl_s: float = 3600,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        write_limit: int | None = None,
        write_latency_s: float = 0.0,
        byids_latency_s: float = 0.0,
        list_latency_s: float = 0.0,
    ) -> None:
        self.project = project
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl_s = token_ttl_s
        self.static_tokens: set[str] = set()
        self.token_steps: list[Step] = []
        self.requests: list[Request] = []
        self._address = (host, port)
        self._lock = threading.Lock()
        self._scripts: dict[tuple[int, str], list[Step]] = {}
        self.catalog = Catalog(seed)  # what the list endpoints show; `seed` shuffles their order
        self._list_scripts: dict[int | None, list[Step | None]] = {}
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._issued: dict[str, float] = {}  # token -> monotonic time it was issued
        self._stopping = threading.Event()
        self._httpd: HttpServer | None = None
        self._init_write_side(write_limit, write_latency_s, byids_latency_s, list_latency_s)

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> CdfSimulator:
        """Listen on a free port (unless one was given) and serve in a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        openapi.ready()  # once a process: CDF's first request does not wait for its schemas to load
        self._httpd = HttpServer(self._address, self._answer, self._stopping)
        # A short poll interval keeps stop() (which waits for the loop) fast.
        serve = functools.partial(self._httpd.serve_forever, poll_interval=0.02)
        threading.Thread(target=serve, name="cdf-sim", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open connections, so clients see the server gone."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes Step.slow sleepers
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("simulator not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def token_url(self) -> str:
        return f"{self.url}{TOKEN_PATH}"

    # -- scripting -----------------------------------------------------------

    def set_run(self, pipeline_id: int, run_id: int, steps: list[Step]) -> None:
        """Script GET .../pipelines/{pipeline_id}/runs/{run_id}; the last step repeats."""
        self._script((pipeline_id, str(run_id)), steps)

    def set_latest(self, pipeline_id: int, steps: list[Step]) -> None:
        """Script GET .../pipelines/{pipeline_id}/runs/latest; the last step repeats."""
        self._script((pipeline_id, "latest"), steps)

    def add_pipeline(
        self,
        pipeline_id: int,
        *,
        external_id: str | None = None,
        name: str | None = None,
        schedule_interval: int | None = None,
        source_resource: str = "time_series",
        target_resource: str = "assets",
        confirmed: Iterable[dict[str, Any]] = (),
        rejected: Iterable[dict[str, Any]] = (),
    ) -> None:
        """List a pipeline under GET .../pipelines (and GET .../pipelines/{id}); `schedule_interval` in seconds;
        `confirmed` and `rejected` its lists of pairs (a `Lazy` for a long one)."""
        with self._lock:
            self.catalog.add_pipeline(
                pipeline_id,
                external_id=external_id,
                name=name,
                schedule_interval=schedule_interval,
                source_resource=source_resource,
                target_resource=target_resource,
                confirmed=confirmed,
                rejected=rejected,
            )

    def add_run(
        self,
        pipeline_id: int,
        job_id: int,
        created_ms: int,
        status: str = "Completed",
        *,
        error_message: str | None = None,
        steps: list[Step] | None = None,
    ) -> None:
        """List a run summary under GET .../pipelines/{pipeline_id}/runs (the pipeline too, if new).

        `steps`, when given, also script the run itself (as `set_run`).
        """
        with self._lock:
            self.catalog.add_run(pipeline_id, job_id, created_ms, status, error_message)
        if steps is not None:
            self.set_run(pipeline_id, job_id, steps)

    def script_list(self, pipeline_id: int | str | None, steps: list[Step | None]) -> None:
        """Answer the next requests of a list (the pipelines' for None, else that pipeline's runs) with `steps`.

        `None` in `steps` answers that request normally; once the steps are used up, every request is.
        A kind (`"timeseries"`) scripts the classic list of that kind instead (`script_classic_list`, where
        None means any kind: here None was the pipelines' list first).
        """
        if isinstance(pipeline_id, str):
            self.script_classic_list(pipeline_id, steps)
            return
        with self._lock:
            self._list_scripts[pipeline_id] = list(steps)

    def list_requests(self, pipeline_id: int | None = None) -> list[Request]:
        """The requests of one list: the pipelines' (None) or that pipeline's runs."""
        return [
            r for r in self.cdf_requests() if (found := LIST_PATH.fullmatch(r.path)) and _pipeline(found) == pipeline_id
        ]

    def _script(self, key: tuple[int, str], steps: list[Step]) -> None:
        if not steps:
            raise ValueError("a script needs at least one step")
        with self._lock:
            self._scripts[key] = list(steps)

    def expire_tokens(self, older_than_s: float = 0.0) -> int:
        """Invalidate every token issued more than ``older_than_s`` ago (static tokens stay valid); how many."""
        with self._lock:
            cutoff = time.monotonic() - older_than_s
            old = [token for token, issued in self._issued.items() if issued <= cutoff and token in self._tokens]
            for token in old:
                del self._tokens[token]
            return len(old)

    def reset(self) -> None:
        """Forget scripts, token faults, recorded requests, issued tokens, and the write side's state."""
        self._reset_write_side()
        with self._lock:
            self._scripts.clear()
            self._list_scripts.clear()
            self.catalog = Catalog(self.catalog.seed)
            self._tokens.clear()
            self._issued.clear()
            self.token_steps.clear()
            self.requests.clear()

    def cdf_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith("/api/")]

    def token_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == TOKEN_PATH]

    # -- answering (called from handler threads) ------------------------------

    def _answer(self, request: Request) -> Step:
        with self._lock:
            self.requests.append(request.recorded())
        if request.path == TOKEN_PATH:
            return self._answer_token(request)
        return self._answer_cdf(request)

    def _answer_token(self, request: Request) -> Step:
        with self._lock:
            if self.token_steps:
                return self.token_steps.pop(0)
        if request.method != "POST":
            return _oauth_error(405, "invalid_request", "use POST")
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return _oauth_error(400, "invalid_request", "body must be form-encoded")
        form = dict(parse_qsl(request.body.decode("utf-8", "replace")))
        fields = ("grant_type", "client_id", "client_secret", "scope")
        missing = [name for name in fields if not form.get(name)]
        if missing:
            return _oauth_error(400, "invalid_request", f"missing: {', '.join(missing)}")
        if form["grant_type"] != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "use client_credentials")
        if form["client_id"] != self.client_id or form["client_secret"] != self.client_secret:
            return _oauth_error(401, "invalid_client", "client authentication failed")
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_ttl_s
            self._issued[token] = time.monotonic()
        granted = {"access_token": token, "token_type": "Bearer"}
        return Step.run({**granted, "expires_in": math.ceil(self.token_ttl_s)})

    def _authorized(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        with self._lock:
            expiry = self._tokens.get(token)
            return token in self.static_tokens or (expiry is not None and expiry > time.monotonic())

    def _answer_cdf(self, request: Request) -> Step:
        # Same order as CDF: authentication, then project access, then the resource.
        if not self._authorized(request.headers.get("authorization", "")):
            return Step.error(401, "Unauthorized")
        if (written := self._answer_write_side(request)) is not None:
            return written
        listed = LIST_PATH.fullmatch(request.path)
        if request.method == "GET" and listed is not None:
            return self._answer_list(listed, request)
        found = RUN_PATH.fullmatch(request.path)
        if request.method != "GET" or found is None:
            return Step.error(404, f"No such endpoint: {request.method} {request.path}")
        if found["project"] != self.project:
            return Step.error(
                403,
                "Resource not found. This may also be due to insufficient access rights.",
            )
        pipeline, run = found["pipeline"], found["run"]
        if not _valid_id(pipeline) or not (run == "latest" or _valid_id(run)):
            return Step.error(400, "Invalid id in path: ids are integers in 1..9007199254740991")
        key = (int(pipeline), run if run == "latest" else str(int(run)))
        with self._lock:
            steps = self._scripts.get(key)
            if steps is None:
                return Step.error(404, f"Pipeline run not found: pipelines/{pipeline}/runs/{run}")
            return steps.pop(0) if len(steps) > 1 else steps[0]

    def _answer_list(self, found: re.Match[str], request: Request) -> Step:
        if found["project"] != self.project:
            return Step.error(403, "Resource not found. This may also be due to insufficient access rights.")
        pipeline = found["pipeline"]
        if pipeline is not None and not _valid_id(pipeline):
            return Step.error(400, "Invalid id in path: ids are integers in 1..9007199254740991")
        key = None if pipeline is None else int(pipeline)
        with self._lock:
            steps = self._list_scripts.get(key)
            if steps:
                step = steps.pop(0)
                if step is not None:
                    return step
            if key is None:
                return self.catalog.page("pipelines", self.catalog.pipeline_items(), request.query)
            if key not in self.catalog.pipelines:
                return Step.error(404, f"Pipeline not found: pipelines/{key}")
            return self.catalog.page(f"runs/{key}", self.catalog.run_items(key), request.query)


def _pipeline(found: re.Match[str]) -> int | None:
    return None if found["pipeline"] is None else int(found["pipeline"]) if _valid_id(found["pipeline"]) else -1
