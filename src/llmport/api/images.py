"""Images in requests: from the wire (data URLs, Ollama's base64, allowed remote URLs)
to bytes, and their places in a prompt.

The API never decodes an image: it checks that the bytes start like an image file and
hands them to the engine, which decodes them where the model runs. Remote URLs are
fetched only from the hosts ``--allowed-media-domains`` names: a server that fetches
whatever a client names can be made to probe the network it sits in.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.requests import Request

from llmport.api.state import app_state
from llmport.errors import InvalidParameter, UnsupportedOption
from llmport.types import Image

#: The key of a template-ready message that says how many images it shows (they are in
#: ``GenerationRequest.images``, in order); rendering turns it into placeholders.
IMAGE_COUNT = "llmport_images"

#: How PNG, JPEG, GIF and BMP files start (WebP: below).
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*),(?P<data>.*)$",
                       re.DOTALL)  # fmt: skip
_FETCH_SECONDS = 10.0


@dataclass(frozen=True)
class ImageRef:
    """An image as the client sent it (a data URL, an http(s) URL, or bare base64) and
    the field it came in."""

    source: str
    where: str


async def request_images(request: Request, refs: list[ImageRef]) -> list[Image]:
    """``load_images`` under the server's settings (allowed hosts, request size limit)."""
    state = app_state(request)
    return await load_images(refs, state.allowed_media_domains, state.limits.max_request_bytes)


async def load_images(
    refs: list[ImageRef], allowed_domains: list[str], max_bytes: int
) -> list[Image]:
    """The bytes of each image, checked; a bad one is a 400 naming its field. All of a
    request's images together may hold ``max_bytes`` (the request size limit), fetched
    ones included."""
    images, room = [], max_bytes
    for ref in refs:
        if ref.source.startswith("data:"):
            data = _from_data_url(ref)
        elif ref.source.startswith(("http://", "https://")):
            data = await _fetch(ref, allowed_domains, room)
        else:
            data = _from_base64(ref.source, ref.where)
        room -= len(data)
        if room < 0:
            raise InvalidParameter(
                f"{ref.where}: the request's images hold more than {max_bytes} bytes",
                param=ref.where,
            )
        images.append(_checked(data, ref.where))
    return images


def _from_data_url(ref: ImageRef) -> bytes:
    found = _DATA_URL.match(ref.source)
    if found is None or ";base64" not in found["params"]:
        raise InvalidParameter(
            f"{ref.where}: a data URL must be data:image/TYPE;base64,DATA", param=ref.where
        )
    if found["type"] and not found["type"].startswith("image/"):
        raise InvalidParameter(
            f"{ref.where}: {found['type']} is not an image type", param=ref.where
        )
    return _from_base64(found["data"], ref.where)


def _from_base64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameter(f"{where}: not valid base64", param=where) from None


async def _fetch(ref: ImageRef, allowed_domains: list[str], max_bytes: int) -> bytes:
    host = urlsplit(ref.source).hostname or ""
    if host not in allowed_domains:
        raise UnsupportedOption(
            f"{ref.where}: remote image URLs are fetched only from hosts the server allows "
            f"(--allowed-media-domains); {host!r} is not one: send the image as a data URL",
            param=ref.where,
        )
    data = bytearray()
    try:
        async with (
            httpx.AsyncClient(timeout=_FETCH_SECONDS, follow_redirects=False) as client,
            client.stream("GET", ref.source) as response,
        ):
            if response.status_code != 200:
                raise InvalidParameter(
                    f"{ref.where}: fetching the image answered {response.status_code}",
                    param=ref.where,
                )
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > max_bytes:
                    raise InvalidParameter(
                        f"{ref.where}: the request's images hold more than the request size limit",
                        param=ref.where,
                    )
    except httpx.HTTPError as error:
        raise InvalidParameter(
            f"{ref.where}: the image could not be fetched: {error}", param=ref.where
        ) from None
    return bytes(data)


def _checked(data: bytes, where: str) -> Image:
    """Bytes that start like an image file (PNG, JPEG, GIF, BMP, WebP); the engine that
    decodes them reports anything else wrong with them."""
    is_webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    if not is_webp and not data.startswith(_SIGNATURES):
        raise InvalidParameter(f"{where}: not a PNG, JPEG, GIF, BMP or WebP image", param=where)
    return Image(data=data, where=where)


def refuse_images(images: list[Image], model: str, engine: str) -> None:
    """A model whose engine takes no images answers 400 naming the first image's field."""
    if images:
        where = images[0].where
        raise UnsupportedOption(
            f"{where}: model {model!r} takes no images (it is served by {engine}, as a text model)",
            param=where,
        )


def placed(messages: list[dict[str, Any]], placeholder: str) -> list[dict[str, Any]]:
    """Messages whose images are marked in their text, as vLLM's server marks them: the
    placeholders a message's text lacks lead it, one per line (``{n}`` numbers them
    across the conversation)."""
    out, number = [], 0
    for message in messages:
        count = message.get(IMAGE_COUNT, 0)
        message = {k: v for k, v in message.items() if k != IMAGE_COUNT}
        if count:
            text = str(message.get("content") or "")
            message["content"] = with_placeholders(text, marks(placeholder, count, number))
            number += count
        out.append(message)
    return out


def marks(placeholder: str, count: int, before: int = 0) -> list[str]:
    """The placeholders of ``count`` images after ``before`` others ("" marks nothing:
    the engine places images itself)."""
    if not placeholder:
        return []
    return [placeholder.replace("{n}", str(before + n + 1)) for n in range(count)]


def with_placeholders(text: str, wanted: list[str]) -> str:
    """``text`` led by the ``wanted`` marks it does not already hold (a client may place
    its images itself)."""
    present = {mark: text.count(mark) for mark in wanted}
    missing = []
    for mark in wanted:
        if present[mark]:
            present[mark] -= 1
        else:
            missing.append(mark)
    return "\n".join([*missing, text]) if missing else text
