"""Settings every service shares. Each service subclasses with its own env prefix.

Shared keys use the plain ``FACEREC_`` prefix (``FACEREC_REDIS_URL``), so one value in an
``.env`` file reaches every service; a service's own keys use ``FACEREC_<SERVICE>_``.
"""

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def shared(name: str) -> AliasChoices:
    """Env alias for a key that every service reads under the same name."""
    return AliasChoices(f"FACEREC_{name.upper()}", name)


class ImageLimits(BaseSettings):
    """Limits on uploaded images, checked by the gateway and again by the detector."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    max_image_bytes: int = Field(10 * 1024 * 1024, gt=0, validation_alias=shared("max_image_bytes"))
    # Checked from the image header before any pixel is decoded (decompression bombs).
    max_image_pixels: int = Field(40_000_000, gt=0, validation_alias=shared("max_image_pixels"))


class ServiceSettings(ImageLimits):
    """Base of every service's settings class."""

    model_config = SettingsConfigDict(
        extra="ignore", populate_by_name=True, env_nested_delimiter="__"
    )

    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=shared("redis_url"))
    log_level: str = Field("INFO", validation_alias=shared("log_level"))
    # json: one JSON object a line with the job id (for log collectors); text: for people.
    log_format: Literal["json", "text"] = Field("json", validation_alias=shared("log_format"))
    # Workers serve Prometheus metrics on this port (0: none); each worker sets its default.
    metrics_port: int = Field(0, ge=0, le=65535)
    # How long a finished job's record (status and result) stays readable.
    job_ttl_s: int = Field(24 * 3600, gt=0, validation_alias=shared("job_ttl_s"))
    # Uploaded image bytes wait in Redis at most this long; a finished job deletes them at once.
    image_ttl_s: int = Field(15 * 60, gt=0, validation_alias=shared("image_ttl_s"))
    # Workers beat this often; one silent for three beats is taken for dead, and the task
    # it was running is sent to another worker (facerec_common.reaper).
    heartbeat_interval_s: float = Field(5.0, gt=0, validation_alias=shared("heartbeat_interval_s"))
    # A stage of a job is started at most this many times (its worker died, or it raised
    # something unexpected); then the job fails and its message becomes a dead letter.
    max_attempts: int = Field(3, ge=1, validation_alias=shared("max_attempts"))
    # A task of a worker that vanished without a heartbeat record comes back after this
    # long at the latest (the broker's visibility timeout); larger than every stage's limit.
    visibility_timeout_s: int = Field(600, ge=30, validation_alias=shared("visibility_timeout_s"))
    # Dead letters, and the images of their jobs, are kept this long for a re-drive.
    dead_letter_ttl_s: int = Field(
        7 * 24 * 3600, gt=0, validation_alias=shared("dead_letter_ttl_s")
    )
    # A task running longer than this is stopped and its job fails (stage-timeout).
    # Each worker sets its default; keep it below visibility_timeout_s.
    task_time_limit_s: float = Field(120.0, gt=0)
