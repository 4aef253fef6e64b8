"""Every refusal in one shape, ErrorOut, and an OpenAPI schema that says so: the farm's own
errors, FastAPI's validation errors and Starlette's 404/405 alike."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from controller.schemas import ERROR_MEANINGS, ErrorOut
from controller.service_error import ServiceError

ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
FASTAPI_422 = {"HTTPValidationError", "ValidationError"}
WRITE_METHODS = {"post", "put", "patch", "delete"}
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def install_error_handlers(app: FastAPI) -> None:
    """ServiceError, request validation and Starlette's HTTP errors all answer an ErrorOut."""
    app.add_exception_handler(ServiceError, _service_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]


def document_errors(app: FastAPI) -> None:
    """Completes the generated schema: a 400 on every operation (Host, headers), 401 where a key
    is asked, 403 on writes (cross-origin), and ErrorOut in place of FastAPI's 422 body."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _with_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def error_response(status: int, body: ErrorOut, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def refusal_response(error: ServiceError) -> JSONResponse:
    """A refusal in the error shape: from a route's handler or from middleware before any route."""
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return error_response(
        error.status, ErrorOut(error=error.error, detail=error.detail, hint=error.hint), headers
    )


async def _service_error(_: Request, error: ServiceError) -> JSONResponse:
    return refusal_response(error)


async def _invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
    detail = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
    body = ErrorOut(error="invalid request", detail=detail, hint="see /openapi.json for the request shapes")
    return error_response(422, body)


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    method, path = request.method, request.url.path
    if error.status_code == 404:
        body = ErrorOut(error=f"no route {method} {path}", hint="see /openapi.json for the routes")
    elif error.status_code == 405:
        allowed = _allowed_methods(request)
        body = ErrorOut(error=f"{path} does not take {method}", detail=[f"allowed: {', '.join(allowed)}"])
        return error_response(405, body, {"Allow": ", ".join(allowed)})
    else:
        body = ErrorOut(error=str(error.detail))
    return error_response(error.status_code, body, dict(error.headers or {}))


def _allowed_methods(request: Request) -> list[str]:
    # Starlette names only the first route of the path in Allow; a path may have several.
    routes = request.app.router.routes
    return [
        method
        for method in HTTP_METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]


def _with_errors(schema: dict[str, Any]) -> dict[str, Any]:
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            statuses = [400] + [401] * ("security" in operation) + [403] * (method in WRITE_METHODS)
            for status in statuses:
                responses.setdefault(str(status), _error_doc(status))
            if "422" in responses:
                responses["422"] = _error_doc(422)
    components = schema.get("components", {}).get("schemas", {})
    for name in FASTAPI_422:
        components.pop(name, None)
    return schema


def _error_doc(status: int) -> dict[str, Any]:
    return {"description": ERROR_MEANINGS[status], "content": {"application/json": {"schema": ERROR_REF}}}
