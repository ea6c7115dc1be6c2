from facerec_common.settings import ServiceSettings
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from facerec_gateway.egress import EgressPolicy, parse_allowed


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="FACEREC_GATEWAY_", extra="ignore", populate_by_name=True
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # Longest a request may wait for its job with ?wait=; longer values are cut to this.
    max_wait_s: float = Field(30.0, ge=0)
    # Redis connections of one gateway process; a request waits up to the timeout for one.
    redis_max_connections: int = Field(256, ge=4)
    redis_pool_timeout_s: float = Field(10.0, gt=0)
    # How long identity and gallery calls wait for the indexer (counts, erasure).
    index_timeout_s: float = Field(30.0, gt=0)
    max_images_per_request: int = Field(10, ge=1)
    # The first admin key of bootstrap_tenant, created at start-up when that tenant has no
    # admin key; once revoked it is never created again.
    bootstrap_admin_key: SecretStr | None = None
    bootstrap_tenant: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    # Days an audit record (admin and erasure actions, GET /v1/audit) is kept.
    audit_retention_days: int = Field(365, ge=1, le=36500)
    # Requests per minute per API key unless the key sets its own (429 above it).
    rate_limit_per_minute: int = Field(600, ge=1)
    # New image requests get 429 while any stage queue holds more tasks than this.
    max_queue_length: int = Field(1000, ge=0)
    retry_after_s: int = Field(5, ge=1)
    # Batches: images per upload request, and the batch backlog above which uploads get
    # 429 (batch images wait in Redis, so this bounds the memory they take there).
    max_images_per_batch_request: int = Field(50, ge=1)
    max_batch_queue_length: int = Field(500, ge=1)
    # Batch callbacks: attempts in all, first retry after callback_backoff_s, then doubling.
    callback_attempts: int = Field(6, ge=1)
    callback_backoff_s: float = Field(2.0, gt=0)
    callback_timeout_s: float = Field(10.0, gt=0)
    # Callbacks go only to public addresses, and to the networks named here (comma-separated
    # addresses or CIDRs, e.g. "10.20.0.0/16,127.0.0.1"): a receiver inside the deployment.
    callback_allowed_networks: str = ""

    @field_validator("callback_allowed_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        parse_allowed(value)  # a typo fails at start-up, not at the first callback
        return value

    def egress(self) -> EgressPolicy:
        return EgressPolicy(parse_allowed(self.callback_allowed_networks))
