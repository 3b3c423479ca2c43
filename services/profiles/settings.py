"""Settings of profiles: the shared ones, plus its HTTP ingress (`POST /events`)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from shared.runtime.settings import ServiceSettings

MAX_BATCH = 1000  # events in one application/cloudevents-batch+json request


class ProfilesSettings(ServiceSettings):
    http_port: int = 8001
    # tenant -> the bearer token of its HR system on POST /events. No tenant: every request 401.
    http_ingress_tokens: dict[str, SecretStr] = Field(default_factory=dict)
    http_ingress_max_bytes: int = Field(default=8 * 1024 * 1024, gt=0)  # larger bodies: 413
    # Events a second each tenant may post (per replica), and how many may come at once.
    http_ingress_rate: float = Field(default=2000.0, ge=0)  # 0: no limit
    http_ingress_burst: int = Field(default=10_000, ge=MAX_BATCH)  # a full batch must fit

    @model_validator(mode="after")
    def _one_tenant_per_token(self) -> ProfilesSettings:
        tokens = [t.get_secret_value() for t in self.http_ingress_tokens.values()]
        if len(set(tokens)) != len(tokens):
            raise ValueError("HTTP_INGRESS_TOKENS: two tenants have the same token")
        if any(not token for token in tokens):
            raise ValueError("HTTP_INGRESS_TOKENS: a tenant's token is empty")
        return self

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if any(len(t.get_secret_value()) < 32 for t in self.http_ingress_tokens.values()):
            problems.append("HTTP_INGRESS_TOKENS: tokens of 32 characters or more")
        return problems
