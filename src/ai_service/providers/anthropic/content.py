"""OpenAI content parts -> Anthropic content blocks.

- `text` (and an assistant's `refusal`) -> a text block; empty and
  whitespace-only text is dropped, since Anthropic rejects such blocks.
- `image_url` with a base64 data URL -> `{"type": "image", "source": {"type":
  "base64", "media_type", "data"}}` (jpeg, png, gif, webp; `image/jpg` is read
  as jpeg); with an http(s) URL -> `{"type": "image", "source": {"type": "url",
  "url"}}`. OpenAI's `detail` has no counterpart and is dropped.
- `file` with inline base64 PDF `file_data` -> a base64 document block; an
  OpenAI `file_id` cannot be resolved upstream and is a 400.
- Any other part type (`input_audio`, ...) is a 400 naming the part.
- `cache_control` on a part is kept (clients that know Anthropic use it).
"""

from __future__ import annotations

from typing import Any

from ai_service.errors import InvalidRequestError
from ai_service.providers.base import JsonObject

IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
DOCUMENT_MEDIA_TYPES = frozenset({"application/pdf"})
_MEDIA_TYPE_ALIASES = {"image/jpg": "image/jpeg"}


def content_blocks(content: object, where: str) -> list[JsonObject]:
    """Anthropic blocks for an OpenAI `content` (string, parts, or null)."""
    if content is None:
        return []
    if isinstance(content, str):
        return _text_block(content, None)
    if not isinstance(content, list):
        raise InvalidRequestError("content must be a string or an array of parts", param=where)
    blocks: list[JsonObject] = []
    for j, part in enumerate(content):
        blocks.extend(_part_blocks(part, f"{where}[{j}]"))
    return blocks


def _text_block(text: str, part: dict[str, Any] | None) -> list[JsonObject]:
    if not text.strip():
        return []
    block: JsonObject = {"type": "text", "text": text}
    if part is not None and isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return [block]


def _part_blocks(part: object, where: str) -> list[JsonObject]:
    if isinstance(part, str):
        return _text_block(part, None)
    if not isinstance(part, dict):
        raise InvalidRequestError("each content part must be an object", param=where)
    kind = part.get("type")
    if kind in ("text", "refusal"):
        text = part.get(kind)
        if not isinstance(text, str):
            raise InvalidRequestError(f"a {kind} part needs a string {kind!r}", param=where)
        return _text_block(text, part)
    if kind == "image_url":
        block = _image_block(part.get("image_url"), f"{where}.image_url")
    elif kind == "file":
        block = _document_block(part.get("file"), f"{where}.file")
    else:
        raise InvalidRequestError(
            f"content part type {kind!r} is not supported by this provider", param=f"{where}.type"
        )
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return [block]


def _image_block(image: object, where: str) -> JsonObject:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise InvalidRequestError("image_url needs a string url", param=where)
    if url.startswith("data:"):
        media_type, data = _parse_data_url(url, where)
        if media_type not in IMAGE_MEDIA_TYPES:
            raise InvalidRequestError(
                f"image type {media_type!r} is not supported; use "
                + ", ".join(sorted(IMAGE_MEDIA_TYPES)),
                param=where,
            )
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequestError("image_url must be an http(s) URL or a base64 data URL", param=where)


def _document_block(file: object, where: str) -> JsonObject:
    data_url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data_url, str):
        raise InvalidRequestError(
            "file parts need inline file_data (file_id is not supported by this provider)",
            param=where,
        )
    media_type, data = _parse_data_url(data_url, f"{where}.file_data")
    if media_type not in DOCUMENT_MEDIA_TYPES:
        raise InvalidRequestError(
            f"file type {media_type!r} is not supported; use application/pdf",
            param=f"{where}.file_data",
        )
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": data},
    }


def _parse_data_url(url: str, where: str) -> tuple[str, str]:
    header, comma, data = url[len("data:") :].partition(",")
    params = header.split(";")
    if not comma or "base64" not in params[1:] or not data:
        raise InvalidRequestError("data URLs must be base64 encoded", param=where)
    media_type = params[0].strip().lower()
    return _MEDIA_TYPE_ALIASES.get(media_type, media_type), data
