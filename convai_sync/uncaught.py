"""Make an exception nobody handles visible, the way Python shows an uncaught thread exception.

The SDK contains exceptions raised by user event handlers (an SDK thread must never die of
one), logs them on the ``convai_sync`` logger and routes them to the application when it asked
for them. A library's logger only has a ``NullHandler`` (the ``logging`` HOWTO's advice for
libraries), so in an application that configured no logging those records go nowhere and a
typo in a handler would be silent. :func:`would_be_logged` tells whether a record would reach a
real handler; when not, :func:`report_uncaught` hands the exception to
:func:`threading.excepthook`, which prints ``Exception in thread <name>:`` and the traceback to
stderr by default and honours an application's own hook.
"""

from __future__ import annotations

import logging
import sys
import threading


def would_be_logged(logger: logging.Logger, level: int) -> bool:
    """True when a ``level`` record on ``logger`` would reach a handler that emits it.

    Mirrors ``logging.Logger.callHandlers``: walks ``logger`` and its ancestors while
    ``propagate`` holds, counting handlers whose level admits ``level``; ``NullHandler``s do not
    count. ``logging.lastResort`` counts when the walk finds no handler at all (as logging then
    uses it). Handler filters are not evaluated (they may have side effects).

    Args:
        logger: The logger the record is emitted on.
        level: The record's level, e.g. ``logging.ERROR``.
    """
    if logger.disabled or not logger.isEnabledFor(level):
        return False
    found = 0
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            found += 1
            if not isinstance(handler, logging.NullHandler) and level >= handler.level:
                return True
        current = current.parent if current.propagate else None
    last = logging.lastResort
    return found == 0 and last is not None and level >= last.level


def report_uncaught(exc: BaseException) -> None:
    """Pass ``exc`` to :func:`threading.excepthook` as an uncaught exception of this thread.

    Called on the thread where the exception was raised (the handler's thread). If the hook
    itself raises, its exception goes to :func:`sys.excepthook`, as ``threading`` does.
    """
    args = threading.ExceptHookArgs([type(exc), exc, exc.__traceback__, threading.current_thread()])
    try:
        threading.excepthook(args)
    except Exception as hook_error:  # noqa: BLE001 - an app's broken hook: fall back as threading does
        sys.excepthook(type(hook_error), hook_error, hook_error.__traceback__)
