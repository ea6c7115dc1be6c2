"""Embeddings out and in: every face of an image with its vector (represent), and 1:N
search of a gallery with a supplied vector."""

from typing import Annotated

from facerec_common.embeddings import Encoding
from facerec_common.messages import JobKind, JobParams
from facerec_common.results import RepresentResult, SearchResult
from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import JSONResponse

from facerec_gateway.auth import ReadTenant
from facerec_gateway.deps import CollectionPath, ServicesDep
from facerec_gateway.job_store import JobBody
from facerec_gateway.queries import FastQuery, MaxFacesQuery, MinFaceSizeQuery, WaitQuery
from facerec_gateway.responses import job_responses
from facerec_gateway.submit import submit_images
from facerec_gateway.vector_search import EmbeddingSearch, search_by_embedding

router = APIRouter(prefix="/v1", tags=["embeddings"])


@router.post(
    "/represent",
    status_code=202,
    response_model=None,
    responses=job_responses(JobBody[RepresentResult]),
)
async def represent(
    services: ServicesDep,
    tenant: ReadTenant,
    image: Annotated[UploadFile, File(description="JPEG, PNG, WebP or BMP")],
    encoding: Annotated[
        Encoding,
        Query(description="json: lists of numbers; base64: float32 little-endian bytes"),
    ] = Encoding.JSON,
    max_faces: MaxFacesQuery = None,
    min_face_size: MinFaceSizeQuery = None,
    fast: FastQuery = False,
    wait: WaitQuery = 0,
) -> JSONResponse:
    """Every face in the image: box, 5 landmarks, detection score and its unit embedding,
    tagged with the model that made it (pack, version, dimension, normalisation)."""
    params = JobParams(
        max_faces=max_faces, min_face_size=min_face_size, fast=fast, encoding=encoding
    )
    return await submit_images(services, tenant, JobKind.REPRESENT, [image], params, wait)


@router.post("/collections/{collection}/search", response_model=SearchResult)
async def search(
    collection: CollectionPath, body: EmbeddingSearch, services: ServicesDep, tenant: ReadTenant
) -> JSONResponse | SearchResult:
    """1:N with a supplied embedding: the gallery's best identities for it. The vector must
    carry the tag of this deployment's model, have its dimension, be finite and of non-zero
    length; each refusal is a 422 saying which."""
    await services.identities.require_collection(tenant, collection)
    return await search_by_embedding(services, tenant, collection, body)
