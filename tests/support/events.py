"""The ledger's structured log events, captured in-process (name and fields of each)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def captured_events(logger_name: str = "rayledger") -> Iterator[list[dict[str, object]]]:
    events: list[dict[str, object]] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            events.append({"event": record.getMessage(), "level": record.levelname, **getattr(record, "fields", {})})

    logger, handler = logging.getLogger(logger_name), Capture()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield events
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
