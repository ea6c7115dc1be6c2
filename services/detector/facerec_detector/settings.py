from facerec_common.settings import ServiceSettings
from facerec_runtime.settings import RuntimeSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class DetectorSettings(ServiceSettings, RuntimeSettings):
    model_config = SettingsConfigDict(
        env_prefix="FACEREC_DETECTOR_", extra="ignore", populate_by_name=True
    )

    # Prometheus metrics at http://<host>:<port>/metrics (0: off).
    metrics_port: int = Field(9101, ge=0, le=65535)

    # SCRFD input size (square); images are letterboxed to it.
    det_size: int = Field(640, ge=128, le=2048, multiple_of=32)
    det_thresh: float = Field(0.5, gt=0, lt=1)
    # Faces whose shorter box side is below this are reported as too small, never matched.
    min_face_size: int = Field(20, ge=1)
    # At most this many faces per image (the largest) are embedded and matched.
    max_faces: int = Field(64, ge=1)
