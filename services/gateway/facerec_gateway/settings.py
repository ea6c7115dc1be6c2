from facerec_common.settings import ServiceSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="FACEREC_GATEWAY_", extra="ignore", populate_by_name=True
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # Longest a request may wait for its job with ?wait=; longer values are cut to this.
    max_wait_s: float = Field(30.0, ge=0)
    # How long identity and gallery calls wait for the indexer (counts, erasure).
    index_timeout_s: float = Field(30.0, gt=0)
    max_images_per_request: int = Field(10, ge=1)
    # Until API keys arrive every request acts for this tenant.
    default_tenant: str = "default"
