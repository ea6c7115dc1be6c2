from typing import Annotated

from facerec_common.messages import JobKind, JobParams
from facerec_common.quality import Landmarks
from facerec_common.results import DetectResult, VerifyResult
from fastapi import APIRouter, File, UploadFile
from fastapi.responses import JSONResponse

from facerec_gateway.auth import ReadTenant
from facerec_gateway.deps import ServicesDep
from facerec_gateway.job_store import JobBody
from facerec_gateway.queries import (
    ConfidenceQuery,
    FastQuery,
    LandmarksQuery,
    MaxFacesQuery,
    MinFaceSizeQuery,
    QualityFilterQuery,
    ThresholdQuery,
    WaitQuery,
    threshold_params,
)
from facerec_gateway.responses import job_responses
from facerec_gateway.submit import submit_images

router = APIRouter(prefix="/v1", tags=["images"])


@router.post(
    "/detect", status_code=202, response_model=None, responses=job_responses(JobBody[DetectResult])
)
async def detect(
    services: ServicesDep,
    tenant: ReadTenant,
    image: Annotated[UploadFile, File(description="JPEG, PNG, WebP or BMP")],
    max_faces: MaxFacesQuery = None,
    min_face_size: MinFaceSizeQuery = None,
    fast: FastQuery = False,
    quality_filter: QualityFilterQuery = None,
    landmarks: LandmarksQuery = Landmarks.FIVE,
    wait: WaitQuery = 0,
) -> JSONResponse:
    """Every face in the image: box, 5 landmarks, detection score, quality and pose."""
    params = JobParams(
        max_faces=max_faces,
        min_face_size=min_face_size,
        fast=fast,
        quality_filter=quality_filter,
        landmarks=landmarks,
    )
    return await submit_images(services, tenant, JobKind.DETECT, [image], params, wait)


@router.post(
    "/verify", status_code=202, response_model=None, responses=job_responses(JobBody[VerifyResult])
)
async def verify(
    services: ServicesDep,
    tenant: ReadTenant,
    image1: Annotated[UploadFile, File()],
    image2: Annotated[UploadFile, File()],
    threshold: ThresholdQuery = None,
    confidence_threshold: ConfidenceQuery = None,
    landmarks: LandmarksQuery = Landmarks.FIVE,
    wait: WaitQuery = 0,
) -> JSONResponse:
    """1:1: are the largest faces of the two images the same person?"""
    params = JobParams(
        largest_face=True,
        landmarks=landmarks,
        **threshold_params(threshold, confidence_threshold),
    )
    return await submit_images(services, tenant, JobKind.VERIFY, [image1, image2], params, wait)
