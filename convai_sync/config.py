"""``ConvaiConfig``: every setting of a client, frozen and validated.

Every field is checked at construction against its rule (type, range, whether None is
allowed; see :func:`ConvaiConfig.field_rules`); an invalid value raises
:class:`~convai_sync.errors.ConfigurationError` (code ``config.invalid``, also a ``ValueError``)
whose message names the field, e.g. ``"ConvaiConfig.slot_wait must be a SlotWaitPolicy or None,
got int 5"``. ``bool`` is refused where a number is expected, and NaN/infinity everywhere.

An empty ``api_key`` or ``character_id`` is accepted here (so ``from_env()`` can build a config on
a machine without credentials) and fails ``connect()`` with ``config.api_key_missing`` /
``config.character_id_missing`` before any network traffic. The API key never appears in
``repr``/``str`` or in a validation message.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .character import ActionConfig, BlendshapeConfig, DynamicInfo, SceneObject, TurnDetectionConfig, VadParams
from .delivery import EventDeliveryPolicy
from .errors import ConfigurationError, ErrorCode, SessionError
from .redact import key_scrubber, scrub
from .retry import ReconnectPolicy, RetryPolicy, SlotWaitPolicy
from .validation import (
    Spec,
    base_url,
    check_fields,
    count,
    flag,
    instance,
    json_object,
    number,
    one_of,
    rule,
    seconds_tuple,
    sequence,
    specs_of,
    str_mapping,
    text,
    validated,
)

DEFAULT_URL = "https://live.convai.com"
MAX_CONNECTION_TIMEOUT = 120.0
#: Upper bound of the other timeouts (an hour): larger values are typos, and beyond
#: ``threading.TIMEOUT_MAX`` a wait raises ``OverflowError`` on the SDK's threads.
MAX_TIMEOUT = 3600.0
#: Upper bound of session durations and their warning lead times (a day).
MAX_DURATION = 86400.0
TRANSPORTS = ("websocket", "livekit")
#: ``llm_provider`` values of Convai's connect API.
LLM_PROVIDERS = ("dynamic", "gemini-live", "gemini-live-beta", "gemini-baml")
#: Convai's inbound WebSocket message limit (16 MB), the largest ``max_message_bytes``.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def _seconds(high: float, *, optional: bool = False) -> Mapping[str, Spec]:
    return rule(number(0.0, high, optional=optional))


@validated
@dataclass(frozen=True, repr=False)
class ConvaiConfig:
    """Settings of one :class:`~convai_sync.ConvaiClient`. All times in seconds (finite ``int`` or
    ``float``, never ``bool``).

    Attributes:
        api_key: Convai API key (``str``), sent as ``X-API-Key``. Surrounding whitespace (a key
            read from a file ends with a newline) is stripped at construction; whitespace,
            control or non-ASCII characters inside it are refused (they are not valid in an HTTP
            header). Never logged or shown in ``repr`` or error messages. ``""`` is accepted
            here and fails ``connect()`` with ``config.api_key_missing``.
        character_id: The character to talk to (``str``; surrounding whitespace stripped; ``""``
            fails ``connect()`` with ``config.character_id_missing``).
        url: Base URL of the realtime service (``https://live.convai.com``) or a simulator:
            ``http``/``https``, no whitespace, credentials, query or fragment.
        transport: ``"websocket"`` (Convai's ``/chat`` WebSocket) or ``"livekit"`` (extra).
        connection_timeout: Bound on each connect attempt including ``bot-ready``, in (0, 120].
        retry_policy: Connect attempts (:class:`RetryPolicy`, default 4 attempts 0/1/2/4 s).
        reconnect_policy: Reconnects after an unexpected drop (:class:`ReconnectPolicy`,
            default 3 attempts).
        slot_wait: :class:`SlotWaitPolicy` to keep waiting while the concurrency limit holds;
            None = fail at once.
        delivery_policy: Default :class:`EventDeliveryPolicy` of every subscription.
        end_user_id: Stable end-user id (``str`` or None; required by characters with Long-Term
            Memory).
        end_user_metadata: JSON-serialisable mapping with ``str`` keys sent with ``end_user_id``
            (its ``name``, if any, a ``str`` or None, as Convai's ``/connect`` request requires).
        character_session_id: Resume this conversation (``str``); None starts a new one.
        tts_enabled: ``default_tts_enabled`` for the session (``bool``).
        enable_emotion: Ask for ``bot-emotion`` (sends ``emotion_config``; ``bool``).
        max_session_duration: End the session cleanly after this long, in (0, 86400]; None = no cap.
        session_duration_warnings: ``tuple`` of lead times in (0, 86400] before the cap at which
            a ``SessionDurationWarning`` fires.
        reset_duration_on_reconnect: Restart the duration clock after a reconnect (``bool``).
        ack_timeout: How long a ``wait=True`` send waits for its ``server-response``, in (0, 3600].
        strict_handlers: Re-raise a handler's exception at the next ``pump``/``wait_for``/``close``.
        auto_reset_idle: Send ``reset-idle-timer`` semantics on every send (any message resets
            the server's idle timer; this also resets the local idle deadline).
        immediate_handler_budget: An IMMEDIATE handler running longer logs a warning, in (0, 60].
        event_queue_size: Bound of the MAIN_THREAD and BACKGROUND queues (``int`` in
            [1, 10_000_000]; overflow is reported).
        close_timeout: Seconds ``disconnect()`` and ``close()`` take at most, from the call,
            whatever the server does, in (0, 3600] (default 1).
        http_timeout: Timeout of each socket operation of ``POST /connect``, in (0, 3600] (the
            whole attempt, handshake and ``bot-ready`` included, is bounded by
            ``connection_timeout``).
        disconnect_timeout: Bound on a ``POST /disconnect`` made while the client goes on (after
            a drop, before reconnecting), in (0, 3600]; ``close()`` bounds it by ``close_timeout``.
        keepalive_interval: Seconds between WebSocket pings while CONNECTED, in (0, 3600];
            None = no keepalive.
        keepalive_timeout: A connection from which nothing (frame or pong) arrived for
            ``keepalive_interval + keepalive_timeout`` seconds is dropped as lost (then
            reconnected by ``reconnect_policy``), in (0, 3600].
        max_message_bytes: Largest inbound message accepted, ``int`` in [1024, 16 MiB] (Convai's
            own limit is 16 MB); a larger one is discarded unread and reported as
            ``protocol.message_invalid``, and the session goes on.
        send_queue_bytes: Bound of the bytes waiting while the server is slow to read, ``int`` in
            [1024, 1 GiB]; beyond it a send fails at once with ``SendQueueFullError``.
        close_grace: Seconds a transport close waits for the server's close reply, in (0, 10].
        ice_transport_policy: LiveKit only: ``"all"`` (LiveKit's default: direct UDP, falling back
            to TURN) or ``"relay"`` (TURN only, as Convai's Web SDK 1.2.0 joins).
        audio_routing: LiveKit only: where the character's voice travels, sent as
            ``audio_config.output.audio_routing``: ``"audio_only"`` (the audio track, default),
            ``"data_only"`` (``audio-data`` messages) or ``"both"``.
        audio_sample_rate: Hz of the character's voice as delivered (``AudioFrame``,
            ``BotReply.audio``), in [8000, 48000]; None = as the transport gives it. Applied on
            LiveKit; on the WebSocket the voice arrives at the rate the server sends.
        receive_audio: False: do not subscribe to the character's voice at all (text only; pays
            nothing for audio).
        audio_queue_frames: Bound of the audio frames waiting per delivery queue (MAIN_THREAD,
            BACKGROUND); a host that stops pumping loses the oldest audio frames only (counted in
            ``diagnostics()``), never another event.

        action_config: :class:`~convai_sync.ActionConfig` sent as ``action_config`` (the actions
            the character may answer with in ``action-response``), or None.
        scene_description: :class:`~convai_sync.SceneObject` items sent as ``scene_description``
            (descriptive only: they grant no action).
        narrative_template_keys: ``{key: value}`` (``str`` to ``str``) filling ``{key}`` placeholders
            in the character's narrative section objectives (``narrative_template_keys``).
        blendshape_config: :class:`~convai_sync.BlendshapeConfig` to receive lip-sync frames
            (sends ``blendshape_provider: "neurosync"``), or None for none.
        dynamic_info: :class:`~convai_sync.DynamicInfo` sent as ``dynamic_info``, or None.
        debug: Ask for Convai's debug messages (``debug: true``); ``metrics`` then arrive as
            :class:`~convai_sync.Metrics` on ``events.on_metrics``.
        vad_params: :class:`~convai_sync.VadParams` for the server's voice-activity detection, or
            None for Convai's defaults.
        turn_detection_config: :class:`~convai_sync.TurnDetectionConfig`, or None.
        stt_enabled: ``default_stt_enabled`` for the session (``bool``).
        thinking_mode: ``thinking_mode`` (``bool``).
        pending_trigger_limit: Triggers :meth:`ConvaiClient.send_trigger` holds while the character
            is not ready yet (``int`` in [1, 10000]); beyond it a send fails with
            ``SendQueueFullError``.
        llm_provider: ``llm_provider``: ``"dynamic"`` (Convai's default), ``"gemini-live"``,
            ``"gemini-live-beta"`` or ``"gemini-baml"``.
        stt_provider: ``stt_provider`` (``str``), or None for the character's own.
        debug_row_cap: ``debug_row_cap`` (``int`` in [1, 1000000]; used by the server only with
            ``debug``), or None.
        invocation_metadata: ``invocation_metadata`` (JSON-serialisable mapping with ``str`` keys;
            attribution), or None.

    Raises:
        ConfigurationError: ``config.invalid``, naming the first invalid field.
    """

    api_key: str = field(default="", metadata=rule(text(strip=True, token=True, secret=True)))
    character_id: str = field(default="", metadata=rule(text(strip=True)))
    url: str = field(default=DEFAULT_URL, metadata=rule(base_url()))
    transport: str = field(default="websocket", metadata=rule(one_of(*TRANSPORTS)))
    connection_timeout: float = field(default=30.0, metadata=_seconds(MAX_CONNECTION_TIMEOUT))
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy, metadata=rule(instance(RetryPolicy)))
    reconnect_policy: ReconnectPolicy = field(default_factory=ReconnectPolicy,
                                              metadata=rule(instance(ReconnectPolicy)))
    slot_wait: SlotWaitPolicy | None = field(default=None, metadata=rule(instance(SlotWaitPolicy, optional=True)))
    delivery_policy: EventDeliveryPolicy = field(default=EventDeliveryPolicy.BACKGROUND,
                                                 metadata=rule(instance(EventDeliveryPolicy)))
    end_user_id: str | None = field(default=None, metadata=rule(text(optional=True)))
    end_user_metadata: Mapping[str, Any] | None = field(default=None, metadata=rule(json_object(optional=True)))
    character_session_id: str | None = field(default=None, metadata=rule(text(optional=True)))
    tts_enabled: bool = field(default=True, metadata=rule(flag()))
    enable_emotion: bool = field(default=True, metadata=rule(flag()))
    max_session_duration: float | None = field(default=None, metadata=_seconds(MAX_DURATION, optional=True))
    session_duration_warnings: tuple[float, ...] = field(
        default=(60.0, 10.0), metadata=rule(seconds_tuple(MAX_DURATION, low_open=True, min_items=0)))
    reset_duration_on_reconnect: bool = field(default=False, metadata=rule(flag()))
    ack_timeout: float = field(default=10.0, metadata=_seconds(MAX_TIMEOUT))
    strict_handlers: bool = field(default=False, metadata=rule(flag()))
    auto_reset_idle: bool = field(default=False, metadata=rule(flag()))
    immediate_handler_budget: float = field(default=0.02, metadata=_seconds(60.0))
    event_queue_size: int = field(default=10_000, metadata=rule(count(1, 10_000_000)))
    close_timeout: float = field(default=1.0, metadata=_seconds(MAX_TIMEOUT))
    http_timeout: float = field(default=15.0, metadata=_seconds(MAX_TIMEOUT))
    disconnect_timeout: float = field(default=2.0, metadata=_seconds(MAX_TIMEOUT))
    keepalive_interval: float | None = field(default=20.0, metadata=_seconds(MAX_TIMEOUT, optional=True))
    keepalive_timeout: float = field(default=20.0, metadata=_seconds(MAX_TIMEOUT))
    max_message_bytes: int = field(default=MAX_MESSAGE_BYTES, metadata=rule(count(1024, MAX_MESSAGE_BYTES)))
    send_queue_bytes: int = field(default=1024 * 1024, metadata=rule(count(1024, 1 << 30)))
    close_grace: float = field(default=0.25, metadata=_seconds(10.0))
    ice_transport_policy: str = field(default="all", metadata=rule(one_of("all", "relay")))
    audio_routing: str = field(default="audio_only", metadata=rule(one_of("audio_only", "data_only", "both")))
    audio_sample_rate: int | None = field(default=None, metadata=rule(count(8000, 48000, optional=True)))
    receive_audio: bool = field(default=True, metadata=rule(flag()))
    audio_queue_frames: int = field(default=500, metadata=rule(count(1, 1_000_000)))
    action_config: ActionConfig | None = field(default=None, metadata=rule(instance(ActionConfig, optional=True)))
    scene_description: tuple[SceneObject, ...] = field(
        default=(), metadata=rule(sequence(instance(SceneObject), unique=lambda o: str(o.name))))
    narrative_template_keys: Mapping[str, str] = field(default_factory=dict, metadata=rule(str_mapping()))
    blendshape_config: BlendshapeConfig | None = field(default=None,
                                                       metadata=rule(instance(BlendshapeConfig, optional=True)))
    dynamic_info: DynamicInfo | None = field(default=None, metadata=rule(instance(DynamicInfo, optional=True)))
    debug: bool = field(default=False, metadata=rule(flag()))
    vad_params: VadParams | None = field(default=None, metadata=rule(instance(VadParams, optional=True)))
    turn_detection_config: TurnDetectionConfig | None = field(
        default=None, metadata=rule(instance(TurnDetectionConfig, optional=True)))
    stt_enabled: bool = field(default=True, metadata=rule(flag()))
    thinking_mode: bool = field(default=False, metadata=rule(flag()))
    pending_trigger_limit: int = field(default=64, metadata=rule(count(1, 10_000)))
    llm_provider: str = field(default="dynamic", metadata=rule(one_of(*LLM_PROVIDERS)))
    stt_provider: str | None = field(default=None, metadata=rule(text(optional=True)))
    debug_row_cap: int | None = field(default=None, metadata=rule(count(1, 1_000_000, optional=True)))
    invocation_metadata: Mapping[str, Any] | None = field(default=None, metadata=rule(json_object(optional=True)))

    def __post_init__(self) -> None:
        raw_key = self.api_key
        check_fields(self, redact=key_scrubber(raw_key) if isinstance(raw_key, str) else None)

    @classmethod
    def field_rules(cls) -> dict[str, str]:
        """What each field accepts, as text: ``{"slot_wait": "a SlotWaitPolicy or None", ...}``."""
        return {name: spec.describe() for name, spec in specs_of(cls).items()}

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "api_key":
                shown.append(f"api_key={'***' if value else ''!r}")
            else:
                shown.append(f"{f.name}={value!r}")
        # The key pasted into another field (character_id, end_user_id…) is hidden there too.
        return scrub(f"ConvaiConfig({', '.join(shown)})", self.api_key)

    __str__ = __repr__

    def replace(self, **changes: Any) -> ConvaiConfig:
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def validate_for_connect(self) -> None:
        """Raise ``ConfigurationError`` (``config.api_key_missing`` / ``config.character_id_missing``)."""
        if not self.api_key.strip():
            raise ConfigurationError(SessionError.of(
                ErrorCode.CONFIG_API_KEY_MISSING,
                "API key not configured: set ConvaiConfig.api_key or CONVAI_API_KEY"))
        if not self.character_id.strip():
            raise ConfigurationError(SessionError.of(
                ErrorCode.CONFIG_CHARACTER_ID_MISSING,
                "character id not configured: set ConvaiConfig.character_id or CONVAI_CHARACTER_ID"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ConvaiConfig:
        """Build a config from ``CONVAI_API_KEY``, ``CONVAI_CHARACTER_ID`` and ``CONVAI_URL``.

        Args:
            environ: Mapping to read (default ``os.environ``).
            **overrides: Any other field.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "api_key": env.get("CONVAI_API_KEY", ""),
            "character_id": env.get("CONVAI_CHARACTER_ID", ""),
        }
        if env.get("CONVAI_URL"):
            values["url"] = env["CONVAI_URL"]
        values.update(overrides)
        return cls(**values)
