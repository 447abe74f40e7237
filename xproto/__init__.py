"""xproto: a pluggable multi-protocol codec framework and RPC proxy."""
from __future__ import annotations

__version__ = "0.1.0"

from xproto.codec import MATCH, NO_MATCH, Codec, Decoder, IdGenerator, PoolMode, Reason, Role
from xproto.errors import ConfigError, FrameTooLarge, LimitExceeded, ProtocolError, XprotoError
from xproto.frame import Frame, Kind
from xproto.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "MATCH", "NO_MATCH", "Codec", "Decoder", "IdGenerator", "PoolMode", "Reason", "Role",
    "ConfigError", "FrameTooLarge", "LimitExceeded", "ProtocolError", "XprotoError",
    "Frame", "Kind", "DEFAULT_LIMITS", "Limits",
]
