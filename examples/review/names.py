"""The names people know sources and assets by, read from CDF when the page has a CDF identity of its own.

matchrelay's events name a source and its candidates by id and external id. With
``CDF_URL`` and ``CDF_PROJECT``, and a token (``CDF_TOKEN``, or the client
credentials ``IDP_TOKEN_URL``, ``IDP_CLIENT_ID``, ``IDP_CLIENT_SECRET`` and
``IDP_SCOPES``), the page reads each pipeline once (the resource of its sources)
and the names of the sources and assets it shows by ids, once each, and keeps
them. The identity needs to read entity matching, assets and the sources'
resource, nothing more. Without it, or when CDF does not answer, the page shows
the external ids: a name is an aid, never a reason for the page to fail.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx

# The pipeline's resource names, as CDF's URLs name them.
PATHS = {"time_series": "timeseries", "timeseries": "timeseries", "assets": "assets", "events": "events"}
PATHS |= {"files": "files", "sequences": "sequences"}
BYIDS_MAX = 1000
log = logging.getLogger("review-page")


class Names:
    """Names by (CDF path, id), fetched as pages ask for them; ``annotate`` adds ``sourceName``, ``currentName`` (the
    asset in place of a conflict) and each candidate's ``targetName``."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._base = f"{environ.get('CDF_URL', '').rstrip('/')}/api/v1/projects/{environ.get('CDF_PROJECT', '')}"
        self._env = environ
        self.enabled = bool(environ.get("CDF_URL") and environ.get("CDF_PROJECT"))
        self.enabled &= bool(environ.get("CDF_TOKEN") or environ.get("IDP_TOKEN_URL"))
        self._names: dict[tuple[str, int], str | None] = {}
        self._paths: dict[int, str] = {}  # pipeline id: its sources' path
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()  # one reader of CDF at a time: the page's requests run in threads

    def annotate(self, reviews: list[dict[str, Any]]) -> None:
        """Give each review's source and candidates their names, where CDF has them."""
        if not self.enabled or not reviews:
            return
        with self._lock:
            try:
                with httpx.Client(timeout=10) as http:
                    self._fetch(http, reviews)
            except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
                log.warning("names not read from CDF: %s", exc)
            for review in reviews:
                path = self._paths.get(review["pipelineId"])
                review["sourceName"] = self._names.get((path, review["sourceId"])) if path else None
                review["currentName"] = self._names.get(("assets", review.get("current") or 0))
                for candidate in review["candidates"]:
                    candidate["targetName"] = self._names.get(("assets", candidate.get("targetId") or 0))

    def _fetch(self, http: httpx.Client, reviews: list[dict[str, Any]]) -> None:
        headers = {"Authorization": f"Bearer {self._bearer(http)}"}
        for pipeline_id in {r["pipelineId"] for r in reviews} - set(self._paths):
            answer = http.get(f"{self._base}/context/entitymatching/pipelines/{pipeline_id}", headers=headers)
            answer.raise_for_status()
            self._paths[pipeline_id] = PATHS.get(answer.json()["sources"]["resource"], "timeseries")
        wanted: dict[str, set[int]] = {}
        for review in reviews:
            wanted.setdefault(self._paths[review["pipelineId"]], set()).add(review["sourceId"])
            assets = wanted.setdefault("assets", set())
            assets.update(c["targetId"] for c in review["candidates"] if c.get("targetId"))
            if review.get("current"):  # a conflict: the asset in place, by name too
                assets.add(review["current"])
        for path, ids in wanted.items():
            self._read(http, headers, path, sorted(i for i in ids if (path, i) not in self._names))

    def _read(self, http: httpx.Client, headers: dict[str, str], path: str, ids: list[int]) -> None:
        for start in range(0, len(ids), BYIDS_MAX):
            chunk = ids[start : start + BYIDS_MAX]
            body = {"items": [{"id": i} for i in chunk], "ignoreUnknownIds": True}
            answer = http.post(f"{self._base}/{path}/byids", json=body, headers=headers)
            answer.raise_for_status()
            found = {int(item["id"]): item.get("name") for item in answer.json()["items"]}
            self._names.update(((path, i), found.get(i)) for i in chunk)

    def _bearer(self, http: httpx.Client) -> str:
        if token := self._env.get("CDF_TOKEN"):
            return token
        if self._token is None or self._token[1] < time.monotonic():
            form = {"grant_type": "client_credentials", "client_id": self._env.get("IDP_CLIENT_ID", "")}
            form |= {"client_secret": self._env.get("IDP_CLIENT_SECRET", ""), "scope": self._env.get("IDP_SCOPES", "")}
            answer = http.post(self._env["IDP_TOKEN_URL"], data=form)
            answer.raise_for_status()
            body = answer.json()
            self._token = (str(body["access_token"]), time.monotonic() + float(body.get("expires_in", 3600)) / 2)
        return self._token[0]
