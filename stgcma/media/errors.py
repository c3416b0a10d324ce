"""Typed errors for media input (STG-CMA Studio, PRODUCT.md "Clear, specific errors for bad input").

Every unusual upload ends in one of these, each carrying a one-line message a person understands.
All derive from :class:`MediaError` (a ``ValueError``) so callers can catch one type, and the app
can show ``str(err)`` as is.
"""

from __future__ import annotations


class MediaError(ValueError):
    """Base class: the upload cannot be analysed; ``str(err)`` is a one-line explanation."""


class MissingFileError(MediaError):
    """The path does not exist or is not a regular file."""


class EmptyFileError(MediaError):
    """The file has zero bytes (an upload that did not complete, or an empty placeholder)."""


class NotAVideoError(MediaError):
    """The file is not a media container at all (text, a still image, random bytes)."""


class NoVideoStreamError(MediaError):
    """The file is media but has no picture (audio-only, or only cover art)."""


class CorruptFileError(MediaError):
    """The file looks like a video container but cannot be read, or no frame decodes."""


class UnsupportedCodecError(MediaError):
    """The video codec is not one the bundled FFmpeg can decode."""


class TooLongError(MediaError):
    """The clip is longer than the configured limit and truncation is switched off."""


class TooLargeError(MediaError):
    """The file is larger than the configured size limit."""
