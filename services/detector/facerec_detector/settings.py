from facerec_common.quality import QualityFilter
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

    # Longest side of the coarse detector pass; an image smaller than this is seen at its
    # own size, never enlarged (see facerec_detector.passes).
    det_size: int = Field(640, ge=128, le=2048, multiple_of=32)
    det_thresh: float = Field(0.5, gt=0, lt=1)
    # The smallest face looked for (shorter box side, original pixels): it sizes the finer
    # passes over large images; faces found below it are reported too_small, never matched.
    min_face_size: int = Field(32, ge=8)
    # Pixels the detector's passes over one image may add up to; past it, the finest pass
    # is coarser and its result says the smallest face it looked for.
    max_detect_pixels: int = Field(16_000_000, ge=100_000)
    # At most this many faces per image (the largest) are embedded and matched.
    max_faces: int = Field(100, ge=1)
    # Enrolment refuses faces under this quality bar (facerec_common.quality), unless the
    # request or the gallery names another level.
    enrol_quality_filter: QualityFilter = QualityFilter.LOW
