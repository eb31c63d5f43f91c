"""Configuration from the environment (contract, section 3).

Read once per process. Anything missing or contradictory becomes one
``ConfigError`` whose message names the variable, so start-up fails with one
clear line instead of a traceback.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from handlers.errors import ConfigError

# CDF project url-names and cluster names: no path characters can slip into a URL.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")
TOPIC_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._~%+-]{2,254}$")
GCP_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,61}[a-z0-9]$|^[A-Za-z0-9.:_-]{1,100}$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    """Every variable of the contract; field names are the variables, lower-cased."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    cdf_project: str
    cdf_cluster: str | None = None
    cdf_url: str | None = None
    cdf_allowed_projects: str | None = None
    cdf_api_version: str = "beta"
    idp_token_url: str | None = None
    idp_client_id: str | None = None
    idp_client_secret: SecretStr | None = None
    idp_scopes: str | None = None
    idp_audience: str | None = None
    cdf_token: SecretStr | None = None
    relay_topic: str | None = None
    relay_error_topic: str | None = None
    google_cloud_project: str | None = None
    poll_initial_delay_s: float = Field(1.0, gt=0)
    poll_max_delay_s: float = Field(30.0, gt=0)
    poll_budget_s: float = Field(480.0, gt=0)
    run_max_wait_s: float = Field(82800.0, gt=0)
    http_timeout_s: float = Field(30.0, gt=0)
    log_level: str = "INFO"

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any, info: Any) -> Any:
        # An empty variable means "not set", except CDF_API_VERSION where it means "send no header".
        if info.field_name != "cdf_api_version" and isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str | None) -> str:
        level = (value or "INFO").upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        _check_name("CDF_PROJECT", self.cdf_project)
        for project in self.allowed_projects:
            _check_name("CDF_ALLOWED_PROJECTS", project)
        if self.cdf_project not in self.allowed_projects:
            raise ConfigError("CDF_ALLOWED_PROJECTS: must contain CDF_PROJECT")
        _ = self.base_url
        self._check_credentials()
        if self.poll_initial_delay_s > self.poll_max_delay_s:
            raise ConfigError("POLL_INITIAL_DELAY_S: must not exceed POLL_MAX_DELAY_S")
        for name, value in (("RELAY_TOPIC", self.relay_topic), ("RELAY_ERROR_TOPIC", self.relay_error_topic)):
            if value is not None:
                _topic_path(name, value, self.google_cloud_project)
        return self

    def _check_credentials(self) -> None:
        idp = {
            "IDP_TOKEN_URL": self.idp_token_url,
            "IDP_CLIENT_ID": self.idp_client_id,
            "IDP_CLIENT_SECRET": self.idp_client_secret,
        }
        if self.cdf_token is not None:
            if any(v is not None for v in idp.values()):
                raise ConfigError("CDF_TOKEN: set either CDF_TOKEN or the IDP_ variables, not both")
            return
        for name, value in idp.items():
            if value is None:
                raise ConfigError(f"{name}: required (or set CDF_TOKEN for a static token)")
        _check_url("IDP_TOKEN_URL", self.idp_token_url or "")

    @property
    def base_url(self) -> str:
        """``CDF_URL``, or the one ``CDF_CLUSTER`` gives; both set must agree."""
        from_cluster = None
        if self.cdf_cluster is not None:
            _check_name("CDF_CLUSTER", self.cdf_cluster)
            from_cluster = f"https://{self.cdf_cluster}.cognitedata.com"
        if self.cdf_url is None:
            if from_cluster is None:
                raise ConfigError("CDF_URL: required (or set CDF_CLUSTER)")
            return from_cluster
        url = _check_url("CDF_URL", self.cdf_url)
        if from_cluster is not None and url != from_cluster:
            raise ConfigError(f"CDF_URL: contradicts CDF_CLUSTER (which gives {from_cluster})")
        return url

    @property
    def allowed_projects(self) -> tuple[str, ...]:
        if self.cdf_allowed_projects is None:
            return (self.cdf_project,)
        return tuple(p.strip() for p in self.cdf_allowed_projects.split(",") if p.strip())

    @property
    def scopes(self) -> str:
        raw = self.idp_scopes or f"{self.base_url}/.default"
        return " ".join(s for s in re.split(r"[\s,]+", raw) if s)

    def topic(self) -> str:
        """The full path of ``RELAY_TOPIC``; required wherever events are published."""
        if self.relay_topic is None:
            raise ConfigError("RELAY_TOPIC: required (or use --stdout)")
        return _topic_path("RELAY_TOPIC", self.relay_topic, self.google_cloud_project)

    def error_topic(self) -> str:
        if self.relay_error_topic is None:
            return self.topic()
        return _topic_path("RELAY_ERROR_TOPIC", self.relay_error_topic, self.google_cloud_project)


def _check_name(variable: str, value: str) -> None:
    if not NAME_RE.match(value):
        raise ConfigError(f"{variable}: {value!r} is not a valid name (letters, digits, '-' and '_')")


def _check_url(variable: str, value: str) -> str:
    if not re.match(r"^https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/-]*)?$", value):
        raise ConfigError(f"{variable}: {value!r} is not an http(s) URL")
    return value.rstrip("/")


def _topic_path(variable: str, value: str, gcp_project: str | None) -> str:
    match = re.match(r"^projects/([^/]+)/topics/([^/]+)$", value)
    project, topic = (match.group(1), match.group(2)) if match else (gcp_project, value)
    if project is None:
        raise ConfigError(f"{variable}: a short topic name needs GOOGLE_CLOUD_PROJECT (or use projects/P/topics/T)")
    if not GCP_PROJECT_RE.match(project) or not TOPIC_RE.match(topic):
        raise ConfigError(f"{variable}: {value!r} is not a valid topic (projects/P/topics/T, T of 3+ characters)")
    return f"projects/{project}/topics/{topic}"


def load_settings(*, publishing: bool = True) -> Settings:
    """Read the environment once; any problem becomes one ``ConfigError`` line.

    ``publishing`` False (``run --stdout``) does not require ``RELAY_TOPIC``.
    """
    try:
        settings = Settings()  # type: ignore[call-arg]  # values come from the environment
        if publishing:
            settings.topic()
        return settings
    except ConfigError:
        raise
    except ValidationError as exc:
        error = exc.errors()[0]
        ctx_error = (error.get("ctx") or {}).get("error")
        if isinstance(ctx_error, ConfigError):
            raise ctx_error from None
        variable = str(error["loc"][0]).upper() if error["loc"] else "configuration"
        raise ConfigError(f"{variable}: {error['msg']}") from None
