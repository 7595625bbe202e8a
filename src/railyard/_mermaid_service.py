"""Images of mermaid text from a rendering service over HTTP, for every graph API.

The service is the public https://mermaid.ink unless `base_url` or the environment
variable `RAILYARD_MERMAID_URL` names another; requests need httpx (the `image` extra).
The functions here take the diagram's text, so they know nothing of graphs.
"""

from __future__ import annotations

import base64
import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from annotated_types import Ge, Le
from typing_extensions import TypedDict, Unpack

from railyard.exceptions import MermaidServiceError

if TYPE_CHECKING:
    import httpx

__all__ = ("DEFAULT_BASE_URL", "TEXT_SUFFIXES", "ImageConfig", "image_options", "request_image", "save_image")

DEFAULT_BASE_URL = "https://mermaid.ink"
"""The rendering service used unless `base_url` or `RAILYARD_MERMAID_URL` names another."""
TEXT_SUFFIXES = ("mmd", "mermaid", "md")
"""File suffixes `save_image` writes the mermaid text to, rather than an image."""


class ImageConfig(TypedDict, total=False):
    """How the rendering service draws a diagram, and where it is."""

    image_type: Literal["jpeg", "png", "webp", "svg", "pdf"]
    """Image format; by default the service's (JPEG), or the file suffix in `mermaid_save`."""
    pdf_fit: bool
    """PDF only: fit the page to the diagram."""
    pdf_landscape: bool
    """PDF only: landscape orientation."""
    pdf_paper: Literal["letter", "legal", "tabloid", "ledger", "a0", "a1", "a2", "a3", "a4", "a5", "a6"]
    """PDF only: paper size."""
    background_color: str
    """Background colour: a hex code, or a named colour prefixed with `!`."""
    theme: Literal["default", "neutral", "dark", "forest"]
    """Mermaid theme."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    scale: Annotated[float, Ge(1), Le(3)]
    """Scale, from 1 to 3; needs `width` or `height`."""
    httpx_client: httpx.Client
    """The HTTP client to send the request with."""
    base_url: str
    """Base URL of the rendering service."""


_IMAGE_KEYS = ImageConfig.__optional_keys__
_QUERY_PARAMS = (
    ("background_color", "bgColor"),
    ("theme", "theme"),
    ("width", "width"),
    ("height", "height"),
    ("scale", "scale"),
)


def image_options(config: Mapping[str, Any]) -> ImageConfig:
    """The options of `config` (a wider config of a front end) that `request_image` takes."""
    return cast(ImageConfig, {key: value for key, value in config.items() if key in _IMAGE_KEYS})


def request_image(code: str, /, **kwargs: Unpack[ImageConfig]) -> bytes:
    """Render the mermaid text `code` as an image with the rendering service.

    Raises:
        MermaidServiceError: httpx is not installed, or the service could not be reached
            or answered with an error.
    """
    try:
        import httpx
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise MermaidServiceError("Rendering mermaid images needs httpx: pip install 'railyard-graph[image]'") from None
    base_url = (kwargs.get("base_url") or os.environ.get("RAILYARD_MERMAID_URL") or DEFAULT_BASE_URL).rstrip("/")
    image_type = kwargs.get("image_type")
    encoded = base64.b64encode(code.encode()).decode()
    endpoint = image_type if image_type in ("svg", "pdf") else "img"
    url = f"{base_url}/{endpoint}/{encoded}"
    params: dict[str, str] = {}
    if image_type not in (None, "svg", "pdf"):
        params["type"] = str(image_type)
    if image_type == "pdf":
        if kwargs.get("pdf_fit"):
            params["fit"] = ""
        if kwargs.get("pdf_landscape"):
            params["landscape"] = ""
        if paper := kwargs.get("pdf_paper"):
            params["paper"] = paper
    for key, param in _QUERY_PARAMS:
        if value := kwargs.get(key):
            params[param] = str(value)
    given = kwargs.get("httpx_client")
    try:
        if given is not None:
            response = given.get(url, params=params)
        else:
            with httpx.Client() as client:
                response = client.get(url, params=params)
    except httpx.HTTPError as err:
        raise MermaidServiceError(
            f"Could not reach the mermaid rendering service at {base_url}: {err}. Check the network, "
            f"or point base_url= (or RAILYARD_MERMAID_URL) at a reachable service."
        ) from err
    if not response.is_success:
        raise _status_error_class(httpx)(
            f"{response.status_code} error generating image:\n{response.text}",
            request=response.request,
            response=response,
        )
    return response.content


@functools.cache
def _status_error_class(httpx: Any) -> Callable[..., MermaidServiceError]:
    """The error for a service's error answer: a `MermaidServiceError` and an `httpx.HTTPStatusError`.

    Code written for pydantic-graph catches `httpx.HTTPStatusError` and reads its
    `response`; code written for railyard catches `MermaidServiceError`. Both work.
    """

    class MermaidServiceStatusError(MermaidServiceError, httpx.HTTPStatusError):  # type: ignore[misc]
        """The mermaid rendering service answered with an error status (see `response`)."""

        def __init__(self, message: str, *, request: httpx.Request, response: httpx.Response) -> None:
            httpx.HTTPStatusError.__init__(self, message, request=request, response=response)
            self.message = message

    MermaidServiceStatusError.__module__ = "railyard.exceptions"
    return MermaidServiceStatusError


def save_image(path: Path | str, code: str, /, **kwargs: Unpack[ImageConfig]) -> None:
    """Save the mermaid text `code` to `path`: the text itself for `.md`/`.mmd`/`.mermaid`, else an image.

    The image format comes from `image_type`, or else from the file suffix; a text file
    needs no service, unless `image_type` asks for an image.

    Raises:
        MermaidServiceError: an image was needed and the service could not render it.
    """
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix in TEXT_SUFFIXES and "image_type" not in kwargs:
        path.write_text(code)
        return
    if "image_type" not in kwargs and suffix in ("png", "webp", "svg", "pdf"):
        kwargs["image_type"] = suffix  # type: ignore[typeddict-item]
    path.write_bytes(request_image(code, **kwargs))
