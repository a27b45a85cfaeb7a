"""Declarative checks for the SDK's frozen value objects (``ConvaiConfig`` and the policies).

Each dataclass field carries one :class:`Spec` in its metadata (``field(..., metadata=rule(...))``),
so adding a validated setting is one line. :func:`check_fields` runs every field's spec from
``__post_init__`` and raises :class:`~convai_sync.errors.ConfigurationError` (``config.invalid``)
with a message that names the field, says what it accepts and what it got, e.g.
``"ConvaiConfig.slot_wait must be a SlotWaitPolicy or None, got int 5"``. :func:`validated`
makes a class without a spec on every field fail at import time, not at a user's first call.

Numbers: ``bool`` is never accepted where a number is expected (``True`` is an ``int`` in
Python, but ``timeout=True`` is a bug), and NaN and infinities are refused (a wait of ``inf``
seconds overflows ``threading`` timeouts; NaN compares false with every bound).
"""

from __future__ import annotations

import dataclasses
import json
import math
import reprlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .errors import ConfigurationError, ErrorCode, SessionError

__all__ = [
    "Spec", "base_url", "check_fields", "count", "flag", "function", "instance", "invalid", "json_object", "number",
    "name", "one_of", "rule", "seconds_tuple", "sequence", "specs_of", "str_mapping", "text", "validated",
]

_SPEC_KEY = "convai_sync.spec"
_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
C = TypeVar("C", bound=type)


def _fmt(bound: float) -> str:
    """``120``, ``0.5``, ``10000000`` (not ``1e+07``)."""
    return str(int(bound)) if float(bound).is_integer() and abs(bound) < 1e15 else f"{bound:g}"


def _article(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


class Spec:
    """What one field accepts. Subclasses implement :meth:`expected` and :meth:`problem`.

    Args:
        optional: None is accepted too.
        secret: Never show the value in an error message (only its type).
    """

    def __init__(self, *, optional: bool = False, secret: bool = False) -> None:
        self.optional = optional
        self.secret = secret

    def expected(self) -> str:
        """What the field accepts, e.g. ``"a finite number of seconds in (0, 120]"``."""
        raise NotImplementedError

    def problem(self, value: Any) -> str | None:
        """None when ``value`` (never None here) is valid, else a detail ("" for none)."""
        raise NotImplementedError

    def normalise(self, value: Any) -> Any:
        """The value to store (default: ``value`` itself), applied before :meth:`problem`."""
        return value

    def describe(self) -> str:
        """:meth:`expected`, with ``or None`` when None is accepted."""
        return f"{self.expected()} or None" if self.optional else self.expected()

    def show(self, value: Any) -> str:
        """How an invalid ``value`` appears in the message: its type and a short repr."""
        if value is None:
            return "None"
        if self.secret:
            return f"{type(value).__name__} (value not shown)"
        return f"{type(value).__name__} {_repr.repr(value)}"

    def validate(self, where: str, value: Any) -> Any:
        """Return the (normalised) value, or raise ``ConfigurationError`` naming ``where``."""
        if value is None:
            if self.optional:
                return None
            raise invalid(f"{where} must be {self.describe()}, got None")
        value = self.normalise(value)
        detail = self.problem(value)
        if detail is None:
            return value
        message = f"{where} must be {self.describe()}, got {self.show(value)}"
        raise invalid(f"{message} ({detail})" if detail else message)


def invalid(message: str) -> ConfigurationError:
    """A ``ConfigurationError`` with code ``config.invalid`` and ``message``."""
    return ConfigurationError(SessionError.of(ErrorCode.CONFIG_INVALID, message))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Number(Spec):
    def __init__(self, low: float | None, high: float | None, *, low_open: bool, integer: bool,
                 unit: str, optional: bool) -> None:
        super().__init__(optional=optional)
        self.low, self.high, self.low_open, self.integer, self.unit = low, high, low_open, integer, unit

    def _range(self) -> str:
        if self.low is None and self.high is None:
            return ""
        low = "-inf" if self.low is None else _fmt(self.low)
        high = "inf" if self.high is None else _fmt(self.high)
        return f" in {'(' if self.low_open else '['}{low}, {high}]"

    def expected(self) -> str:
        kind = "int" if self.integer else "finite number"
        unit = f" of {self.unit}" if self.unit else ""
        return f"{_article(kind)}{unit}{self._range()}"

    def problem(self, value: Any) -> str | None:
        if self.integer and not (isinstance(value, int) and not isinstance(value, bool)):
            return ""
        if not _is_number(value) or not math.isfinite(value):
            return ""
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return ""
        if self.high is not None and value > self.high:
            return ""
        return None


def number(low: float | None = 0.0, high: float | None = None, *, low_open: bool = True,
           integer: bool = False, unit: str = "seconds", optional: bool = False) -> Spec:
    """An ``int``/``float`` (never ``bool``), finite, in ``low..high``.

    Args:
        low: Lower bound (None: none); exclusive when ``low_open``.
        high: Inclusive upper bound (None: none).
        integer: Only ``int`` values.
        unit: Named in the message (``"seconds"``; ``""`` for counts).
        optional: None is accepted too.
    """
    return _Number(low, high, low_open=low_open, integer=integer, unit=unit, optional=optional)


def count(low: int, high: int, *, optional: bool = False) -> Spec:
    """An ``int`` (never ``bool``) in ``[low, high]`` (or None when ``optional``)."""
    return _Number(low, high, low_open=False, integer=True, unit="", optional=optional)


class _Flag(Spec):
    def expected(self) -> str:
        return "a bool (True or False)"

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, bool) else ""


def flag() -> Spec:
    """Exactly ``True`` or ``False`` (``"no"``, ``0`` and None are refused)."""
    return _Flag()


class _Instance(Spec):
    def __init__(self, cls: type, optional: bool) -> None:
        super().__init__(optional=optional)
        self.cls = cls

    def expected(self) -> str:
        return _article(self.cls.__name__)

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, self.cls) else ""


def instance(cls: type, *, optional: bool = False) -> Spec:
    """An instance of ``cls`` (subclasses too)."""
    return _Instance(cls, optional)


class _OneOf(Spec):
    def __init__(self, choices: tuple[str, ...]) -> None:
        super().__init__()
        self.choices = choices

    def expected(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, str) and value in self.choices else ""


def one_of(*choices: str) -> Spec:
    """One of the given strings (exact, case-sensitive)."""
    return _OneOf(choices)


def _bad_char(value: str, allowed: Callable[[str], bool]) -> str | None:
    for ch in value:
        if not allowed(ch):
            return f"U+{ord(ch):04X}"
    return None


class _Text(Spec):
    def __init__(self, *, optional: bool, strip: bool, token: bool, secret: bool) -> None:
        super().__init__(optional=optional, secret=secret)
        self.strip, self.token = strip, token

    def expected(self) -> str:
        if self.token:
            what = "a str of printable ASCII characters without whitespace"
        else:
            what = "a str without control characters"
        return f"{what} (surrounding whitespace is stripped)" if self.strip else what

    def normalise(self, value: Any) -> Any:
        return value.strip() if self.strip and isinstance(value, str) else value

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return ""
        if self.token:
            bad = _bad_char(value, lambda ch: "!" <= ch <= "~")
        else:
            bad = _bad_char(value, lambda ch: ch.isprintable() or ch == " ")
        return None if bad is None else f"it contains {bad}"


def text(*, optional: bool = False, strip: bool = False, token: bool = False, secret: bool = False) -> Spec:
    """A ``str``.

    Args:
        optional: None is accepted too.
        strip: Surrounding whitespace is removed before the checks and the stripped value kept.
        token: Only printable ASCII without whitespace (an HTTP header value such as an API
            key); otherwise only control characters are refused.
        secret: The value never appears in the message (which names the offending character's
            code point only).
    """
    return _Text(optional=optional, strip=strip, token=token, secret=secret)


class _Url(Spec):
    def expected(self) -> str:
        return "an http(s) base URL without whitespace, credentials, query or fragment"

    def show(self, value: Any) -> str:
        if isinstance(value, str) and "@" in value:
            return "str (value not shown: it may contain credentials)"
        return super().show(value)

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return ""
        bad = _bad_char(value, lambda ch: ch.isprintable() and not ch.isspace())
        if bad is not None:
            return f"it contains {bad}"
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError as exc:
            return str(exc)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return ""
        if parts.username is not None or parts.password is not None:
            return "credentials in a URL end up in logs; pass the key as api_key"
        if parts.query or parts.fragment:
            return "paths such as /connect are appended to it"
        return None


def base_url() -> Spec:
    """An ``http``/``https`` base URL with a host; no whitespace, userinfo, query or fragment."""
    return _Url()


class _Items(Spec):
    def __init__(self, item: Spec, min_items: int) -> None:
        super().__init__()
        self.item, self.min_items = item, min_items

    def expected(self) -> str:
        least = " (at least one)" if self.min_items == 1 else ""
        least = f" (at least {self.min_items})" if self.min_items > 1 else least
        return f"a tuple{least} whose items are each {self.item.expected()}"

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, tuple) or len(value) < self.min_items:
            return ""
        for index, item in enumerate(value):
            if item is None or self.item.problem(item) is not None:
                return f"item {index} is {self.item.show(item)}"
        return None


def seconds_tuple(high: float, *, low_open: bool, min_items: int) -> Spec:
    """A ``tuple`` of finite seconds in ``(0|[0, high]`` (a list is refused: the value is frozen)."""
    return _Items(_Number(0.0, high, low_open=low_open, integer=False, unit="seconds", optional=False),
                  min_items)


class _JsonObject(Spec):
    def expected(self) -> str:
        return "a JSON-serialisable mapping with str keys"

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, Mapping):
            return ""
        keys = [k for k in value if not isinstance(k, str)]
        if keys:
            return f"key {_repr.repr(keys[0])} is not a str"
        try:
            # allow_nan=False: NaN/Infinity are not JSON, and requests refuses them the same way.
            json.dumps(dict(value), allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            return f"not JSON-serialisable: {type(exc).__name__}: {_repr.repr(str(exc))}"
        name = value.get("name")
        if name is not None and not isinstance(name, str):
            # Convai's /connect request: end_user_metadata.name is a string or null.
            return "its 'name' must be a str or None"
        return None


def json_object(*, optional: bool = False) -> Spec:
    """A ``Mapping`` with ``str`` keys that ``json.dumps(..., allow_nan=False)`` accepts."""
    return _JsonObject(optional=optional)


class _Function(Spec):
    def expected(self) -> str:
        return "a callable"

    def problem(self, value: Any) -> str | None:
        return None if callable(value) else ""


def function() -> Spec:
    """Any callable."""
    return _Function()


def rule(spec: Spec) -> Mapping[str, Spec]:
    """Field metadata carrying ``spec``: ``x: float = field(default=1.0, metadata=rule(number()))``."""
    return {_SPEC_KEY: spec}


def specs_of(cls: type) -> dict[str, Spec]:
    """Every field's :class:`Spec` of a dataclass decorated with :func:`validated`, in order."""
    return {f.name: f.metadata[_SPEC_KEY] for f in dataclasses.fields(cls)}


def validated(cls: C) -> C:
    """Class decorator (below ``@dataclass``): fail at import when a field has no spec."""
    missing = [f.name for f in dataclasses.fields(cls) if _SPEC_KEY not in f.metadata]
    if missing:
        raise TypeError(f"{cls.__name__}: fields without a validation rule: {', '.join(missing)}")
    return cls


def check_fields(obj: Any, redact: Callable[[str], str] | None = None) -> None:
    """Validate every field of the frozen dataclass ``obj``; store normalised values.

    Args:
        obj: An instance of a :func:`validated` dataclass (called from its ``__post_init__``).
        redact: Applied to the error message (the config hides its API key with it).

    Raises:
        ConfigurationError: ``config.invalid``, naming ``<Class>.<field>``.
    """
    owner = type(obj).__name__
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        refused: ConfigurationError | None = None
        try:
            new = f.metadata[_SPEC_KEY].validate(f"{owner}.{f.name}", value)
        except ConfigurationError as exc:
            if redact is None:
                raise
            refused = invalid(redact(exc.error.message))
        if refused is not None:
            # Raised outside the except block: the unredacted original must not stay reachable
            # as its __context__ (``from None`` only hides it from tracebacks).
            raise refused
        if new is not value:
            object.__setattr__(obj, f.name, new)


# ---- specs of the character settings (actions, lip-sync, narrative) ------------------------------


class _Name(Spec):
    def expected(self) -> str:
        return "a non-empty str without control characters (surrounding whitespace is stripped)"

    def normalise(self, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str) or not value:
            return ""
        bad = _bad_char(value, lambda ch: ch.isprintable() or ch == " ")
        return None if bad is None else f"it contains {bad}"


def name(*, optional: bool = False) -> Spec:
    """A non-empty ``str`` (stripped) without control characters: an action, object or key name."""
    return _Name(optional=optional)


class _Sequence(_Items):
    """A ``tuple`` or ``list`` (stored as a tuple) of items, optionally with unique names."""

    def __init__(self, item: Spec, min_items: int, unique: Callable[[Any], str] | None) -> None:
        super().__init__(item, min_items)
        self.unique = unique

    def expected(self) -> str:
        what = super().expected().replace("a tuple", "a tuple or list", 1)
        return f"{what}, without duplicate names" if self.unique is not None else what

    def normalise(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return tuple(self.item.normalise(v) if v is not None else v for v in value)
        return value

    def problem(self, value: Any) -> str | None:
        detail = super().problem(value)
        if detail is not None or self.unique is None:
            return detail
        seen: set[str] = set()
        for index, item in enumerate(value):
            key = self.unique(item).casefold()
            if key in seen:
                return f"item {index} repeats the name {self.unique(item)!r}"
            seen.add(key)
        return None


def sequence(item: Spec, *, min_items: int = 0, unique: Callable[[Any], str] | None = None) -> Spec:
    """A ``tuple`` or ``list`` (stored as a ``tuple``) of items each accepted by ``item``.

    Args:
        item: The spec of each item (its normalisation applies to each).
        min_items: Fewest items accepted.
        unique: Key of an item whose case-insensitive repeats are refused (e.g. an action's name).
    """
    return _Sequence(item, min_items, unique)


class _StrMapping(Spec):
    def expected(self) -> str:
        return "a mapping of non-empty str keys to str values"

    def normalise(self, value: Any) -> Any:
        return dict(value) if isinstance(value, Mapping) else value

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, Mapping):
            return ""
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                return f"key {_repr.repr(key)} is not a non-empty str"
            if not isinstance(item, str):
                return f"the value of {key!r} is {type(item).__name__}, not str"
        return None


def str_mapping() -> Spec:
    """A ``Mapping[str, str]`` with non-empty keys (stored as a ``dict`` copy)."""
    return _StrMapping()
