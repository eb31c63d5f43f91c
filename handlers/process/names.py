"""Names that come from configuration and end up in URLs or topic paths, checked (contract, section 6).

No path character can slip into a URL through a project or cluster name, and a
topic is always a full ``projects/P/topics/T`` path once read.
"""

from __future__ import annotations

import re

from handlers.core.errors import ConfigError

# CDF project url-names and cluster names: no path characters can slip into a URL.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")
TOPIC_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._~%+-]{2,254}$")
GCP_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,61}[a-z0-9]$|^[A-Za-z0-9.:_-]{1,100}$")


def topic_of_source(source: str | None) -> str | None:
    """``projects/P/topics/T`` from a ``//pubsub.googleapis.com/projects/P/topics/T`` source, if it is one."""
    if not isinstance(source, str) or len(source) > 512:
        return None
    match = re.fullmatch(r"//pubsub\.googleapis\.com/(projects/[^/]+/topics/[^/]+)", source)
    if match is None:
        return None
    try:
        return topic_path("source", match.group(1), None)
    except ConfigError:
        return None


def check_name(variable: str, value: str) -> None:
    if not NAME_RE.match(value):
        raise ConfigError(f"{variable}: {value!r} is not a valid name (letters, digits, '-' and '_')")


def check_url(variable: str, value: str) -> str:
    if not re.match(r"^https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/-]*)?$", value):
        raise ConfigError(f"{variable}: {value!r} is not an http(s) URL")
    return value.rstrip("/")


def topic_path(variable: str, value: str, gcp_project: str | None) -> str:
    match = re.match(r"^projects/([^/]+)/topics/([^/]+)$", value)
    project, topic = (match.group(1), match.group(2)) if match else (gcp_project, value)
    if project is None:
        raise ConfigError(f"{variable}: a short topic name needs GOOGLE_CLOUD_PROJECT (or use projects/P/topics/T)")
    if not GCP_PROJECT_RE.match(project) or not TOPIC_RE.match(topic):
        raise ConfigError(f"{variable}: {value!r} is not a valid topic (projects/P/topics/T, T of 3+ characters)")
    return f"projects/{project}/topics/{topic}"
