"""``POST /v1/txn``: compares and operations applied all-or-nothing, as one revision.

The body (etcd's transaction without an else branch)::

    {"compare": [{"table": "accounts", "key": "ada", "target": "version", "op": "=", "value": 3}],
     "ops": [{"op": "merge", "table": "accounts", "key": "ada", "patch": {"balance": 5}},
             {"op": "put", "table": "audit", "key": "e1", "value": {"what": "debit"}, "ttl": 60},
             {"op": "delete", "table": "tmp", "key": "x"}]}

``target`` is ``value``, ``version``, ``mod_revision``, ``create_revision``
(0 for an absent key) or ``exists`` (``true``/``false`` with ``=``/``!=``).
``200`` answers ``{"revision": r, "results": [...]}`` with, per op, the key's
new entry (put, merge), the deleted one (delete), or ``null``; a compare that
does not hold answers ``412`` naming it and changes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...database import Compare, Delete, Entry, Merge, Put
from ...errors import InvalidArgument
from ...store.batch import Op
from .api import HttpApi
from .bodies import JSON, read_json
from .keys import MAX_TTL, entry_meta, ttl_ms
from .problems import problem_responses

__all__ = ["TxnRequest", "openapi_schemas", "txn_router"]

#: Operations in one transaction at most (the batch byte limit applies too).
MAX_OPS = 10_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TxnCompare(_Strict):
    table: str
    key: str
    target: Literal["value", "version", "mod_revision", "create_revision", "exists"]
    op: Literal["=", "!=", "<", "<=", ">", ">="] = "="
    value: Any = Field(description="The operand: a JSON value, an int, or a bool for exists.")


class TxnPut(_Strict):
    op: Literal["put"]
    table: str
    key: str
    value: Any
    ttl: Annotated[float | None, Field(gt=0, le=MAX_TTL, allow_inf_nan=False)] = None
    keep_ttl: bool = False


class TxnMerge(_Strict):
    op: Literal["merge"]
    table: str
    key: str
    patch: Any
    ttl: Annotated[float | None, Field(gt=0, le=MAX_TTL, allow_inf_nan=False)] = None


class TxnDelete(_Strict):
    op: Literal["delete"]
    table: str
    key: str


TxnOp = Annotated[TxnPut | TxnMerge | TxnDelete, Field(discriminator="op")]


class TxnRequest(_Strict):
    compare: Annotated[list[TxnCompare], Field(max_length=MAX_OPS)] = []
    ops: Annotated[list[TxnOp], Field(min_length=1, max_length=MAX_OPS)]


class TxnEntry(BaseModel):
    table: str
    key: str
    value: Any
    revision: int
    create_revision: int
    version: int
    expires_at_ms: int | None


class TxnResponse(BaseModel):
    revision: int
    results: list[TxnEntry | None]


def openapi_schemas() -> dict[str, Any]:
    """The body's schemas, for the app's ``components`` (the route reads it by hand)."""
    schema = TxnRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = schema.pop("$defs", {})
    schemas["TxnRequest"] = schema
    return schemas


def _op(op: TxnPut | TxnMerge | TxnDelete) -> Op:
    if isinstance(op, TxnPut):
        if op.ttl is not None and op.keep_ttl:
            raise InvalidArgument(f"op on {op.table}:{op.key}: give ttl or keep_ttl, not both")
        return Put(op.table, op.key, op.value, ttl_ms(op.ttl), op.keep_ttl)
    if isinstance(op, TxnMerge):
        return Merge(op.table, op.key, op.patch, ttl_ms(op.ttl))
    return Delete(op.table, op.key)


def txn_router(api: HttpApi) -> APIRouter:
    """The transaction route."""
    router = APIRouter(tags=["transactions"])
    db = api.ctx.db

    @router.post(
        "/v1/txn",
        name="txn",
        summary="Apply operations atomically if every compare holds",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/TxnRequest"}}},
            }
        },
        responses=problem_responses(400, 412, 413, 415, 422),
    )
    async def txn(request: Request) -> TxnResponse:
        # Read by hand, not as a FastAPI body: the same media type, size and
        # strict-JSON rules as the key routes (FastAPI skips JSON parsing for
        # a missing or foreign Content-Type and then reports a wrong shape).
        data = await read_json(request, (JSON,), db.config.limits.max_batch_bytes)
        try:
            body = TxnRequest.model_validate(data)
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            raise RequestValidationError(errors, body=data) from None
        compares = [Compare(c.table, c.key, c.target, c.op, c.value) for c in body.compare]
        ops = [_op(op) for op in body.ops]
        result = await db.atxn(compares, ops)
        results: list[TxnEntry | None] = []
        for op, entry in zip(body.ops, result.entries, strict=True):
            if entry is None:
                results.append(None)
            else:
                assert isinstance(entry, Entry)  # no update ops come over HTTP
                results.append(TxnEntry(value=entry.value, **entry_meta(op.table, entry)))
        return TxnResponse(revision=result.revision, results=results)

    return router
