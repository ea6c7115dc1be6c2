from facerec_common.settings import ServiceSettings
from facerec_runtime.settings import RuntimeSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class EmbedderSettings(ServiceSettings, RuntimeSettings):
    model_config = SettingsConfigDict(
        env_prefix="FACEREC_EMBEDDER_", extra="ignore", populate_by_name=True
    )

    # Prometheus metrics at http://<host>:<port>/metrics (0: off).
    metrics_port: int = Field(9102, ge=0, le=65535)

    # Crops per inference call; all faces of an image go in one call up to this many.
    batch_size: int = Field(32, ge=1, le=1024)
    # Overrides the model pack's default match threshold (cosine similarity).
    threshold: float | None = Field(None, ge=-1, le=1)
