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

from handlers.core.errors import ConfigError
from handlers.core.models import MAX_ID
from handlers.core.poll import Backoff
from handlers.process.names import check_name, check_url, topic_of_source, topic_path

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TRACE_EXPORTERS = ("gcp_trace", "otlp", "none")  # one exporter at a time; unset is none
DEFAULT_TIMEOUT_S = 540.0  # event functions (gen2) time out after at most 540 s
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 5.0, 3600.0  # below 5 s the margin would leave no time to work; 3600: Cloud Run's most
DEFAULT_BUDGET_S = 480.0


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
    relay_trigger_topic: str | None = None
    google_cloud_project: str | None = None
    poll_initial_delay_s: float = Field(1.0, gt=0)
    poll_max_delay_s: float = Field(30.0, gt=0)
    poll_budget_s: float | None = Field(None, gt=0)  # unset: see ``budget_s``
    invocation_timeout_s: float | None = Field(None, ge=MIN_TIMEOUT_S, le=MAX_TIMEOUT_S)
    cloud_run_timeout_seconds: float | None = Field(None, ge=0, le=MAX_TIMEOUT_S)  # set by Google's runtimes
    run_max_wait_s: float = Field(82800.0, gt=0)
    http_timeout_s: float = Field(30.0, gt=0)
    link_min_score: float = Field(0.9, ge=0, le=1)  # the link (contract, section 8)
    link_overwrite: bool = False
    link_concurrency: int = Field(4, ge=1, le=16)
    link_pipelines: str | None = None  # comma-separated ids; unset: every pipeline (``link_pipeline_ids``)
    link_dry_run: bool = False
    link_trust_rules: bool = True  # a rule match links whatever its score (contract, section 8.3)
    link_topic: str | None = None  # unset: RELAY_TOPIC (``linked_topic``)
    review_min_score: float = Field(0.5, ge=0, le=1)  # a source below LINK_MIN_SCORE gets a link.review from here up
    review_max_events: int = Field(10_000, ge=0)  # link.review events per run at most, the best-scored first
    review_topic: str | None = None  # unset: LINK_TOPIC (``reviewed_topic``): review.applied (contract, section 10)
    log_level: str = "INFO"
    otel_traces_exporter: str | None = None  # OpenTelemetry's own variables: traces off unless an exporter is named
    otel_service_name: str | None = None

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

    @field_validator("otel_traces_exporter")
    @classmethod
    def _exporter(cls, value: str | None) -> str:
        exporter = (value or "none").lower()
        if exporter not in TRACE_EXPORTERS:
            raise ConfigError(f"OTEL_TRACES_EXPORTER: {value!r} is not one of {', '.join(TRACE_EXPORTERS)}")
        return exporter

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        check_name("CDF_PROJECT", self.cdf_project)
        for project in self.allowed_projects:
            check_name("CDF_ALLOWED_PROJECTS", project)
        if self.cdf_project not in self.allowed_projects:
            raise ConfigError("CDF_ALLOWED_PROJECTS: must contain CDF_PROJECT")
        _ = self.base_url
        self._check_credentials()
        if self.poll_initial_delay_s > self.poll_max_delay_s:
            raise ConfigError("POLL_INITIAL_DELAY_S: must not exceed POLL_MAX_DELAY_S")
        if self.poll_budget_s is not None and self.poll_budget_s >= self.timeout_s:
            raise ConfigError(f"POLL_BUDGET_S: must be below INVOCATION_TIMEOUT_S ({self.timeout_s:g} s)")
        if self.invocation_timeout_s is None and 0 < (self.cloud_run_timeout_seconds or 0) < MIN_TIMEOUT_S:
            raise ConfigError(f"CLOUD_RUN_TIMEOUT_SECONDS: below {MIN_TIMEOUT_S:g} s; set INVOCATION_TIMEOUT_S")
        topics = {
            "RELAY_TOPIC": self.relay_topic,
            "RELAY_ERROR_TOPIC": self.relay_error_topic,
            "RELAY_TRIGGER_TOPIC": self.relay_trigger_topic,
        }
        for name, value in topics.items():
            if value is not None:
                topic_path(name, value, self.google_cloud_project)
        return self

    @model_validator(mode="after")
    def _link(self) -> Settings:
        _ = self.link_pipeline_ids
        if self.link_topic is not None:
            topic_path("LINK_TOPIC", self.link_topic, self.google_cloud_project)
        if self.review_topic is not None:
            topic_path("REVIEW_TOPIC", self.review_topic, self.google_cloud_project)
        return self

    @property
    def link_pipeline_ids(self) -> frozenset[int]:
        """``LINK_PIPELINES`` as ids; empty means every pipeline."""
        ids = set()
        for text in (self.link_pipelines or "").split(","):
            if not text.strip():
                continue
            if not re.fullmatch(r"[0-9]{1,16}", text.strip()) or not 1 <= int(text) <= MAX_ID:
                raise ConfigError(f"LINK_PIPELINES: {text.strip()[:32]!r} is not a pipeline id (1 to {MAX_ID})")
            ids.add(int(text))
        return frozenset(ids)

    def linked_topic(self) -> str:
        """The full path of ``LINK_TOPIC``, else of ``RELAY_TOPIC``: where ``run.linked`` goes."""
        if self.link_topic is None:
            return self.topic()
        return topic_path("LINK_TOPIC", self.link_topic, self.google_cloud_project)

    def reviewed_topic(self) -> str:
        """The full path of ``REVIEW_TOPIC``, else where ``run.linked`` goes: where ``review.applied`` goes."""
        if self.review_topic is None:
            return self.linked_topic()
        return topic_path("REVIEW_TOPIC", self.review_topic, self.google_cloud_project)

    @property
    def timeout_s(self) -> float:
        """``INVOCATION_TIMEOUT_S``, else the platform's ``CLOUD_RUN_TIMEOUT_SECONDS`` (0 means unset), else 540."""
        if self.invocation_timeout_s is not None:
            return self.invocation_timeout_s
        return self.cloud_run_timeout_seconds or DEFAULT_TIMEOUT_S

    @property
    def backoff(self) -> Backoff:
        """Section 4's waits between polls and between tries: POLL_INITIAL_DELAY_S up to POLL_MAX_DELAY_S."""
        return Backoff(self.poll_initial_delay_s, self.poll_max_delay_s)

    @property
    def budget_s(self) -> float:
        """``POLL_BUDGET_S``; unset, 480 s, or 80 % of a timeout of 480 s or less (a default is never invalid)."""
        if self.poll_budget_s is not None:
            return self.poll_budget_s
        return DEFAULT_BUDGET_S if self.timeout_s > DEFAULT_BUDGET_S else 0.8 * self.timeout_s

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
        check_url("IDP_TOKEN_URL", self.idp_token_url or "")

    @property
    def base_url(self) -> str:
        """``CDF_URL``, or the one ``CDF_CLUSTER`` gives; both set must agree."""
        from_cluster = None
        if self.cdf_cluster is not None:
            check_name("CDF_CLUSTER", self.cdf_cluster)
            from_cluster = f"https://{self.cdf_cluster}.cognitedata.com"
        if self.cdf_url is None:
            if from_cluster is None:
                raise ConfigError("CDF_URL: required (or set CDF_CLUSTER)")
            return from_cluster
        url = check_url("CDF_URL", self.cdf_url)
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
        return topic_path("RELAY_TOPIC", self.relay_topic, self.google_cloud_project)

    def error_topic(self) -> str:
        if self.relay_error_topic is None:
            return self.topic()
        return topic_path("RELAY_ERROR_TOPIC", self.relay_error_topic, self.google_cloud_project)

    def trigger_topic(self, event_source: str | None = None) -> str | None:
        """``RELAY_TRIGGER_TOPIC``, else the topic the trigger came from (Eventarc's ``source``), else none."""
        if self.relay_trigger_topic is not None:
            return topic_path("RELAY_TRIGGER_TOPIC", self.relay_trigger_topic, self.google_cloud_project)
        return topic_of_source(event_source)


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
