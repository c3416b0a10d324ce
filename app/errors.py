"""Every failure in a UI handler becomes a one-line message for the person, never a traceback.

Known input problems (``MediaError``, ``CheckpointError``, ``ValueError`` and friends) are shown
with their own one-line message; anything else is logged with its traceback on the server and the
person sees a short generic message. Handlers keep their other outputs unchanged on failure
(``gr.skip()``), so an upload, a chat or earlier results are never lost.

API endpoints (``api_errors``) raise ``gr.Error`` with the same one-line message instead, so a
``gradio_client`` caller gets an exception it can catch, not a "successful" result with a banner.
"""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from stgcma.checkpoint import CheckpointError

log = logging.getLogger("stgcma.app")

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, CheckpointError, FileNotFoundError)
GENERIC_MESSAGE = ("Something went wrong on our side (the details are in the server log). "
                   "Your upload and earlier results are kept; try again or try another clip.")


def one_line(err: BaseException, limit: int = 400) -> str:
    """The first line of an error's message, shortened to ``limit`` characters."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_html(message: str = "", kind: str = "info", code: bool = False) -> str:
    """A status banner: ``kind`` in info, ok, warn, error; an empty message gives an empty banner."""
    if not message:
        return ""
    icon = {"ok": "✓", "warn": "⚠", "error": "✕", "info": "ℹ"}.get(kind, "")
    body = message if code else html.escape(message)
    return f'<div class="stg-status stg-{kind}">{icon} {body}</div>'


def warnings_html(warnings: list[str]) -> str:
    """All warnings of a result as one prominent banner (empty when there are none)."""
    if not warnings:
        return ""
    items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
    return f'<div class="stg-status stg-warn">⚠ <b>Read before trusting these results:</b><ul>{items}</ul></div>'


def user_message(err: BaseException, where: str) -> str:
    """What the person is told about ``err``: its own first line for input problems, else a generic line.

    Unexpected errors are logged with their traceback (call this inside the ``except`` block).
    """
    if isinstance(err, gr.Error):
        return str(err.message)
    if isinstance(err, USER_ERRORS):
        message = one_line(err)
        log.info("%s: %s", where, message)
        return message
    log.error("unexpected error in %s", where, exc_info=err)
    return GENERIC_MESSAGE


def api_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an API endpoint: any failure becomes ``gr.Error(one-line message)`` for the client."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            raise gr.Error(user_message(err, fn.__qualname__), print_exception=False) from None

    return wrapper


def guarded(n_outputs: int, toast: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a handler whose LAST output is a status banner (``gr.HTML``).

    On failure every other output is left as it is and the banner says what went wrong, plus a
    toast when ``toast`` (for banners that may be out of sight). A handler with a single output
    gets just the banner.
    """
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as err:
                message = user_message(err, fn.__qualname__)
            if toast:
                gr.Warning(message)
            banner = status_html(message, "error")
            if n_outputs == 1:
                return banner
            return tuple(gr.skip() for _ in range(n_outputs - 1)) + (banner,)

        return wrapper

    return decorate
