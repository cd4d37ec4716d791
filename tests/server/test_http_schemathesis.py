"""Schemathesis against the served ``/openapi.json``: no input makes a 5xx.

Bounded: every operation gets ``EXAMPLES`` generated requests in each of the
positive (schema-valid) and negative (schema-violating) modes, over a real
socket. Beyond "no server error", responses must match what the document
declares (status codes, media types, schemas).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from http_support import LiveServer
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import amber

EXAMPLES = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    db = amber.open("memory://")
    with LiveServer(db) as live:
        yield live
    db.close()


def _operations(server: LiveServer) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]


def test_every_operation_is_covered(server: LiveServer) -> None:
    labels = {operation.label for operation in _operations(server)}
    assert "PATCH /v1/tables/{table}/keys/{key}" in labels
    assert "POST /v1/txn" in labels
    assert len(labels) >= 10


def _check_watch(server: LiveServer, case: Any) -> None:
    """A valid watch streams until closed: read its head, check it, hang up."""
    request = case.as_transport_kwargs(base_url=server.url)
    request.pop("cookies", None)
    with (
        httpx.Client(timeout=10) as client,
        client.stream(**request) as response,
    ):
        assert response.status_code < 500, response.read()
        media_type = response.headers["content-type"]
        if response.status_code == 200:
            assert media_type.startswith("text/event-stream")
            assert next(response.iter_lines()).startswith(": watching from revision")
        else:
            assert response.status_code in (400, 410, 503)
            assert media_type == "application/problem+json"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(server: LiveServer, mode: GenerationMode) -> None:
    skipped: list[str] = []
    for operation in _operations(server):

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def exercise(case: Any) -> None:
            # The document declares the password's Bearer scheme, and generated
            # tokens include ones httpx will not send ("Bearer "); this server
            # has no password and ignores the header, so one fixed token does.
            case.headers = {**(case.headers or {}), "Authorization": "Bearer amber"}
            if case.operation.path == "/v1/watch":
                _check_watch(server, case)
                return
            response = case.call(base_url=server.url, timeout=10)
            case.validate_response(response, checks=CHECKS)

        try:
            exercise()
        except Unsatisfiable:
            # Nothing in this operation can be made schema-invalid (only free strings).
            assert mode is GenerationMode.NEGATIVE
            skipped.append(operation.label)
    typed = {
        "PUT /v1/tables/{table}/keys/{key}",
        "PATCH /v1/tables/{table}/keys/{key}",
        "GET /v1/tables/{table}",
        "POST /v1/txn",
        "GET /v1/watch",
    }
    assert not typed & set(skipped), skipped
