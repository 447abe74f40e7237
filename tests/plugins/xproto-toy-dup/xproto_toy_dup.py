"""Same protocol name as xproto-toy, from another distribution: a clash on purpose.

The registry refuses the pair from package metadata alone, before importing either module.
"""
from __future__ import annotations

from xproto.codec import Codec


class ToyCodec(Codec):
    name = "toy"
