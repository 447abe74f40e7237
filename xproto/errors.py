"""One error hierarchy for all of xproto.

Decoding hostile bytes may raise only :class:`ProtocolError` (and its subclasses).
Anything else escaping a codec is a bug; the fuzzers check exactly this.
"""
from __future__ import annotations


class XprotoError(Exception):
    """Base of every error xproto raises on purpose."""


class ProtocolError(XprotoError):
    """Bytes that do not follow the protocol.

    ``protocol`` names the codec, ``offset`` the byte offset (within the frame or the
    stream, where known) and ``reply_hint`` which local reply fits (a ``Reason`` value,
    or None when the connection should simply be closed).
    """

    def __init__(
        self,
        message: str,
        *,
        protocol: str | None = None,
        offset: int | None = None,
        reply_hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.protocol = protocol
        self.offset = offset
        self.reply_hint = reply_hint

    def __str__(self) -> str:
        parts = []
        if self.protocol:
            parts.append(self.protocol)
        if self.offset is not None:
            parts.append(f"at byte {self.offset}")
        prefix = " ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


class LimitExceeded(ProtocolError):
    """A length, count or depth read from the wire is above a configured limit."""

    def __init__(self, limit: str, value: int, maximum: int, **kw: object) -> None:
        super().__init__(f"{limit} {value} exceeds limit {maximum}", **kw)  # type: ignore[arg-type]
        self.limit = limit
        self.value = value
        self.maximum = maximum


class FrameTooLarge(LimitExceeded):
    """A frame's declared size is above the protocol's frame limit."""


class ConfigError(XprotoError):
    """Invalid configuration; ``problems`` holds (key path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))


class PluginError(XprotoError):
    """A codec plugin could not be loaded or clashes with another one."""
