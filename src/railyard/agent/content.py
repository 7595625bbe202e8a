"""What a user prompt can hold besides text: images, audio and documents, by URL or as bytes.

```python
await agent.run(["What is in this picture?", ImageUrl("https://example.com/cat.png")])
```

Each kind knows its media type (from the URL's file extension, or given with the
bytes) and its short format (`png`, `mp3`, `pdf`, ...). Bytes travel as base64 in JSON,
so a conversation holding them round-trips through `ModelMessagesTypeAdapter` and
through a durable store.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeAlias
from urllib.parse import urlsplit

import pydantic

__all__ = (
    "AudioFormat",
    "AudioMediaType",
    "AudioUrl",
    "BinaryContent",
    "DocumentFormat",
    "DocumentMediaType",
    "DocumentUrl",
    "ImageFormat",
    "ImageMediaType",
    "ImageUrl",
    "UnknownMediaType",
    "UserContent",
)

AudioMediaType: TypeAlias = Literal["audio/wav", "audio/mpeg"]
"""The media types of sounds models take."""
ImageMediaType: TypeAlias = Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
"""The media types of images models take."""
DocumentMediaType: TypeAlias = Literal[
    "application/pdf",
    "text/plain",
    "text/csv",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "text/html",
    "text/markdown",
    "application/vnd.ms-excel",
]
"""The media types of documents models take."""
AudioFormat: TypeAlias = Literal["wav", "mp3"]
"""The short names of sound kinds."""
ImageFormat: TypeAlias = Literal["jpeg", "png", "gif", "webp"]
"""The short names of image kinds."""
DocumentFormat: TypeAlias = Literal["csv", "doc", "docx", "html", "md", "pdf", "txt", "xls", "xlsx"]
"""The short names of document kinds."""

_IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}
_AUDIO_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav"}
_DOCUMENT_TYPES = {
    "pdf": "application/pdf",
    "txt": "text/plain",
    "csv": "text/csv",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "html": "text/html",
    "md": "text/markdown",
    "doc": "application/msword",
    "xls": "application/vnd.ms-excel",
}
_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
    **{media_type: extension for extension, media_type in _DOCUMENT_TYPES.items()},
}


class UnknownMediaType(ValueError, RuntimeError):
    """A URL's file extension, or a media type, is not one of a kind models take.

    A `ValueError`, and a `RuntimeError` too, which is what pydantic-ai raises for a
    document's, so code written for either catches it.
    """


def _media_type(url: str, types: dict[str, str], kind: str) -> str:
    """The media type of the file `url` names, from its extension and `types`."""
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    media_type = types.get(extension)
    if media_type is None:
        raise UnknownMediaType(f"Unknown {kind} file extension: {url}")
    return media_type


@dataclass
class ImageUrl:
    """An image the model should fetch from `url` (png, jpeg, gif or webp)."""

    url: str
    """Where the image is."""
    kind: Literal["image-url"] = "image-url"
    """Tag of this kind of content."""

    @property
    def media_type(self) -> str:
        """The image's media type, from the URL's extension.

        Raises:
            UnknownMediaType: the extension is not one of an image kind models take.
        """
        return _media_type(self.url, _IMAGE_TYPES, "image")

    @property
    def format(self) -> str:
        """`png`, `jpeg`, `gif` or `webp`."""
        return _FORMATS[self.media_type]


@dataclass
class AudioUrl:
    """A sound file the model should fetch from `url` (mp3 or wav)."""

    url: str
    """Where the sound is."""
    kind: Literal["audio-url"] = "audio-url"
    """Tag of this kind of content."""

    @property
    def media_type(self) -> str:
        """The sound's media type, from the URL's extension.

        Raises:
            UnknownMediaType: the extension is neither `mp3` nor `wav`.
        """
        return _media_type(self.url, _AUDIO_TYPES, "audio")


@dataclass
class DocumentUrl:
    """A document the model should fetch from `url` (pdf, txt, csv, docx, html, md, ...)."""

    url: str
    """Where the document is."""
    kind: Literal["document-url"] = "document-url"
    """Tag of this kind of content."""

    @property
    def media_type(self) -> str:
        """The document's media type, from the URL's extension.

        Raises:
            UnknownMediaType: the extension is not one of a document kind models take.
        """
        return _media_type(self.url, _DOCUMENT_TYPES, "document")

    @property
    def format(self) -> str:
        """The short name of the document's kind (`pdf`, `docx`, ...)."""
        return _FORMATS[self.media_type]


def _to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _from_base64(value: Any) -> Any:
    return base64.b64decode(value, validate=True) if isinstance(value, str) else value


Base64Bytes = Annotated[
    bytes,
    pydantic.BeforeValidator(_from_base64),
    pydantic.PlainSerializer(_to_base64, return_type=str, when_used="json"),
]
"""Bytes that are base64 text in JSON."""


@dataclass
class BinaryContent:
    """An image, a sound or a document given as bytes, with its media type."""

    data: Base64Bytes
    """The content."""
    media_type: str
    """Its media type (`image/png`, `audio/wav`, `application/pdf`, ...)."""
    kind: Literal["binary"] = "binary"
    """Tag of this kind of content."""

    @property
    def is_image(self) -> bool:
        """Whether it is an image."""
        return self.media_type.startswith("image/")

    @property
    def is_audio(self) -> bool:
        """Whether it is a sound."""
        return self.media_type.startswith("audio/")

    @property
    def is_document(self) -> bool:
        """Whether it is a document of a kind models take."""
        return self.media_type in _DOCUMENT_TYPES.values()

    @property
    def format(self) -> str:
        """The short name of its kind (`png`, `mp3`, `pdf`, ...).

        Raises:
            UnknownMediaType: the media type is not one models take.
        """
        found = _FORMATS.get(self.media_type)
        if found is None:
            raise UnknownMediaType(f"Unknown media type: {self.media_type}")
        return found


UserContent = str | Annotated[ImageUrl | AudioUrl | DocumentUrl | BinaryContent, pydantic.Discriminator("kind")]
"""One item of a user prompt: text, or an image, sound or document."""
