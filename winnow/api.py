"""API plumbing shared by every app: error format, pagination, the v1 router."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, pagination, serializers
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger("winnow.api")


def _flatten(detail, prefix: str = "") -> list[dict]:
    """DRF's nested error detail -> [{"field": "responses.0.text", "reason": ..., "code": ...}]."""
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            name = None if key == "non_field_errors" else str(key)
            path = f"{prefix}.{name}" if prefix and name else (name or prefix or None)
            out.extend(_flatten(value, path or ""))
        return out
    if isinstance(detail, list):
        if all(isinstance(item, (str, exceptions.ErrorDetail)) for item in detail):
            return [
                {"field": prefix or None, "reason": str(item), "code": getattr(item, "code", "invalid")}
                for item in detail
            ]
        out = []
        for index, item in enumerate(detail):
            if item:
                out.extend(_flatten(item, f"{prefix}.{index}" if prefix else str(index)))
        return out
    return [{"field": prefix or None, "reason": str(detail), "code": getattr(detail, "code", "invalid")}]


def _encodable(value):
    """Error messages quote the input; a lone surrogate in it (valid in JSON text, not in UTF-8)
    must not turn a 400 into a 500 when the response is rendered."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def exception_handler(exc, context):
    """Every API error is JSON: {"detail", "code", "errors": [{"field", "reason", "code"}]}."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = [{key: _encodable(value) for key, value in error.items()} for error in _flatten(exc.detail)]
        first = errors[0] if errors else {"field": None, "reason": "invalid input"}
        detail = f"{first['field']}: {first['reason']}" if first["field"] else first["reason"]
        body = {"detail": detail, "code": "invalid", "errors": errors}
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        body = {"detail": _encodable(str(detail)), "code": code, "errors": []}
    response.data = body
    return response


def json_not_found(request, exception=None, **_path):
    return JsonResponse({"detail": "Not found.", "code": "not_found", "errors": []}, status=404)


def json_server_error(request):
    return JsonResponse(
        {"detail": "Internal server error; the error has been logged.", "code": "server_error",
         "errors": []},
        status=500,
    )


class PageNumberPagination(pagination.PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


MAX_DB_ID = 2**63 - 1


def id_param(params, name: str) -> int | None:
    """An integer id from the query string (None when absent): a 400 for anything that is not
    a plain ASCII number a database id column can hold, never an overflow further down."""
    value = params.get(name)
    if value in (None, ""):
        return None
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_DB_ID:
        raise serializers.ValidationError({name: "must be an integer id"})
    return int(value)


class IdCursorPagination(pagination.CursorPagination):
    """Stable, O(1)-per-page paging for tables that grow to millions of rows."""

    ordering = "id"
    page_size_query_param = "page_size"
    max_page_size = 500


def username_field(source: str | None = None) -> serializers.SlugRelatedField:
    """A user foreign key shown as the username, or null when unset.

    Not `CharField(source="author.username", default=None)`: on a PATCH (a partial serializer)
    DRF skips a default, so a row whose user is unset came back without the key at all, and the
    response broke its own schema (found by schemathesis on PATCH /records/{id})."""
    return serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True, source=source)
