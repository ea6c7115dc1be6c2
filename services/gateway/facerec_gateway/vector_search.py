"""1:N search with a supplied embedding: the body, its checks, and the job that runs it.

The vector's shape, values and length are checked here, before anything is queued; whether
it comes from this deployment's model is for the embed stage to say (only it knows the
model). The job starts at the embed stage and ends at the index stage, and the request waits
for it: the answer is the search result, or the job's problem with its status.
"""

from typing import Annotated, Any

import numpy as np
from facerec_common.codec import pack_vectors
from facerec_common.embeddings import EmbeddingModel, checked_vector, decode_b64
from facerec_common.errors import IndexUnavailable, InvalidInput
from facerec_common.jobs import JobStatus
from facerec_common.logs import current_job
from facerec_common.messages import JobKind, JobParams, PipelineMessage
from facerec_common.names import Task
from facerec_common.results import SearchResult
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from facerec_gateway.deps import Services
from facerec_gateway.ids import sortable_id
from facerec_gateway.limits import ensure_room
from facerec_gateway.problems import problem_from_stored
from facerec_gateway.queries import threshold_params

# Larger than any face model's vector (512 here), small enough for a JSON body.
MAX_DIM = 4096


class EmbeddingSearch(BaseModel):
    """A vector to search with and the tag of the model that made it (as represent
    answers it). Give ``embedding`` or ``embedding_b64``, not both."""

    model_config = ConfigDict(extra="forbid")

    embedding: (
        Annotated[list[Annotated[float, Field(strict=True)]], Field(max_length=MAX_DIM)] | None
    ) = None
    embedding_b64: (
        Annotated[
            str,
            Field(
                max_length=(MAX_DIM * 4 + 2) // 3 * 4,
                description="float32 little-endian bytes, base64",
            ),
        ]
        | None
    ) = None
    model: EmbeddingModel
    # strict: JSON true is no number.
    limit: int = Field(1, ge=1, le=20, strict=True, description="Identities to return, best first")
    threshold: float | None = Field(None, ge=-1, le=1, strict=True)
    confidence_threshold: float | None = Field(None, gt=0, lt=1, strict=True)

    @model_validator(mode="after")
    def _one_vector(self) -> "EmbeddingSearch":
        if (self.embedding is None) == (self.embedding_b64 is None):
            raise ValueError("give embedding or embedding_b64, exactly one")
        return self

    def vector(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        """The unit vector, once it fits the tag (``InvalidInput`` saying why not)."""
        if self.embedding_b64 is not None:
            values = decode_b64(self.embedding_b64)
        else:
            values = np.asarray(self.embedding, dtype=np.float64).astype(np.float32)
            if not np.all(np.isfinite(values)) and np.all(
                np.isfinite(np.asarray(self.embedding, dtype=np.float64))
            ):
                raise InvalidInput("the embedding is not finite: a value overflows float32")
        return checked_vector(values, self.model)


async def search_by_embedding(
    services: Services, tenant: str, collection: str, body: EmbeddingSearch
) -> JSONResponse | SearchResult:
    vector = body.vector()
    await ensure_room(services.redis, services.settings)
    job_id = sortable_id()
    current_job.set(job_id)
    msg = PipelineMessage(
        job_id=job_id,
        kind=JobKind.SEARCH,
        tenant=tenant,
        params=JobParams(
            collection=collection,
            top_k=body.limit,
            embedding_model=body.model,
            **threshold_params(body.threshold, body.confidence_threshold),
        ),
        images=[],
        dim=len(vector),
        vectors=pack_vectors(vector[None, :]),
    )
    await services.jobs.submit(job_id, JobKind.SEARCH.value, tenant, Task.EMBED, msg.to_task())
    wait_s = services.settings.index_timeout_s
    job = await services.waiter.wait(services.jobs, job_id, wait_s)
    if job is None or not job.finished:
        raise IndexUnavailable(f"the search did not finish within {wait_s} s")
    if job.status is JobStatus.FAILED or job.result is None:
        return problem_from_stored(job.error or {}, job_id=job_id)
    return SearchResult.model_validate(job.result)
