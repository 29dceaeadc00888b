"""A drf-spectacular postprocessing hook: the error answers DRF itself gives
on every endpoint, documented where a view did not document them.

- 401 and 403 (``{"detail"}``): authentication failed or missing, or the
  permission (staff only, an API key's scope) refused;
- 400 on operations that take parameters or a body: DRF's validation
  errors (field -> messages) or the view's own ``{code, message, errors}``;
- 404 on cursor-paginated lists: an invalid ``cursor``;

each as JSON, under every media type the success answer has (errors are
rendered by the renderer the request negotiated, e.g. ``text/csv``).
"""

from __future__ import annotations

from typing import Any

DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
    "description": "DRF's error body.",
}
VALIDATION = {
    "type": "object",
    "additionalProperties": True,
    "description": "Field -> messages, or {code, message, errors}.",
}
_HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def _body(schema: dict[str, Any], description: str, media_types: list[str]) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema} for media in media_types}}


def _media_types(responses: dict[str, Any]) -> list[str]:
    """application/json and the media types of the success answers: an error
    is rendered (as JSON) by the renderer the request negotiated."""
    found = ["application/json"]
    for code, response in responses.items():
        for media in response.get("content", {}) if code.startswith("2") else ():
            if media not in found:
                found.append(media)
    return found


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if method not in _HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            media = _media_types(responses)
            responses.setdefault("401", _body(DETAIL, "Not authenticated, or the credentials were refused.", media))
            responses.setdefault("403", _body(DETAIL, "Not allowed (permission, or the API key's scopes).", media))
            parameters = operation.get("parameters", [])
            if parameters or "requestBody" in operation:
                responses.setdefault("400", _body(VALIDATION, "Invalid parameters or body.", media))
            if any(parameter.get("name") == "cursor" for parameter in parameters):
                responses.setdefault("404", _body(DETAIL, "Invalid cursor.", media))
    return result
