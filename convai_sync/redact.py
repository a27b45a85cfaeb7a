"""Hide the API key (and auth tokens) in any text or exception that may leave the SDK (messages, logs, errors).

A key can reach text in more forms than the one configured: a library quoting a header shows
``repr()`` escapes (``'sk-…\\n'``), a server echoing it back has stripped it, a URL has it
percent-encoded. :func:`scrub` replaces every one of those forms with ``***``.

Strings shorter than :data:`MIN_SCRUB_LENGTH` characters are not scrubbed: they cannot be told
apart from ordinary words (a key ``"k"`` would turn every "k" of a message into ``***``), and
no real credential is that short.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

MASK = "***"
MIN_SCRUB_LENGTH = 4


def key_forms(key: str) -> list[str]:
    """Every form of ``key`` that :func:`scrub` hides, longest first.

    Args:
        key: The key as configured or as first received (whitespace included).

    Returns:
        The key as given, stripped on either or both sides, and each of those as ``repr()``
        escapes, ``unicode_escape`` escapes and percent-encoding; forms shorter than
        :data:`MIN_SCRUB_LENGTH` (after stripping) are left out.
    """
    if not isinstance(key, str) or not key:
        return []
    bases = {key, key.strip(), key.lstrip(), key.rstrip()}
    forms: set[str] = set()
    for base in bases:
        forms.update((base, repr(base)[1:-1], base.encode("unicode_escape").decode("ascii"),
                      quote(base, safe="")))
    return sorted((f for f in forms if len(f.strip()) >= MIN_SCRUB_LENGTH), key=len, reverse=True)


def scrub(text: str, key: str) -> str:
    """Return ``text`` with every form of ``key`` (see :func:`key_forms`) replaced by ``***``."""
    for form in key_forms(key):
        if form in text:
            text = text.replace(form, MASK)
    return text


def key_scrubber(key: str) -> Callable[[str], str]:
    """A one-argument :func:`scrub` bound to ``key`` (forms computed once)."""
    forms = key_forms(key)

    def scrub_text(text: str) -> str:
        for form in forms:
            if form in text:
                text = text.replace(form, MASK)
        return text
    return scrub_text


def secrets_scrubber(*secrets: str | None) -> Callable[[str], str]:
    """Like :func:`key_scrubber` for several secrets at once (an API key and auth tokens);
    ``None`` and ``""`` are skipped."""
    forms = sorted({form for secret in secrets if secret for form in key_forms(secret)}, key=len, reverse=True)

    def scrub_text(text: str) -> str:
        for form in forms:
            if form in text:
                text = text.replace(form, MASK)
        return text
    return scrub_text


def scrubbed_copy(exc: BaseException, key: str, *others: str | None) -> ConnectionError:
    """A plain ``ConnectionError("<Type>: <scrubbed text>")`` standing in for ``exc``.

    The original is dropped rather than kept as a cause: a ``requests`` exception holds the
    prepared request, whose headers hold the key, and its ``args`` may quote that header.
    ``others`` are more secrets to hide (the attempt's auth token).
    """
    return ConnectionError(secrets_scrubber(key, *others)(f"{type(exc).__name__}: {exc}"))
