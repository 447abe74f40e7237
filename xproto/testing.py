"""A property and fuzz kit for codec authors.

In a test suite (needs ``hypothesis``; pytest recommended)::

    from xproto.testing import CodecProperties

    def test_my_codec_properties():
        CodecProperties("toy", samples=[FRAME_1, FRAME_2]).check_all()

``CodecProperties(codec, samples, role=Role.ANY, limits=...)`` takes a codec (object, class
or registered name) and whole sample frames (bytes; one direction; more than one frame per
sample is fine) and checks, with Hypothesis:

* ``check_samples`` - every sample decodes into whole frames, consuming every byte;
* ``check_round_trip`` - an unmodified frame re-encodes to its original bytes, and with a
  new request id (for codecs with ids) it decodes back with that id and the same length;
* ``check_split_invariance`` - any split of any concatenation of samples into chunks gives
  the same frames (or the same error) as the whole stream;
* ``check_mutations`` - mutated samples (flipped, inserted, deleted, truncated bytes) and
  arbitrary bytes make the decoder raise only ``ProtocolError``, and it never spins.

For atheris (``pip install atheris``)::

    python -m xproto.testing fuzz <codec-name | module:Class> [atheris/libFuzzer args ...]

fuzzes the codec with the same invariants (split invariance, round trip, only
ProtocolError). Corpus directories given as plain arguments are used as seeds, as usual.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from xproto.codec import Codec, Role
from xproto.errors import ProtocolError
from xproto.frame import Frame
from xproto.limits import DEFAULT_LIMITS, Limits

#: a decoder that returns more than this many "need more" answers per input byte spins
_MAX_CALLS_PER_BYTE = 4


@dataclass
class Outcome:
    """What decoding one stream gave: frames (as JSON + raw bytes), then an error or leftovers."""

    frames: list[tuple[dict[str, Any], bytes]] = field(default_factory=list)
    error: str | None = None        # "<ExceptionType>" of a ProtocolError, None when none
    leftover: int = 0               # bytes not consumed at the end (a truncated frame)

    def same_as(self, other: Outcome) -> bool:
        return (self.frames == other.frames and self.error == other.error
                and self.leftover == other.leftover)


def resolve_codec(codec: Codec | type | str) -> Codec:
    """A codec object from an object, a class, a registered name or ``"module:Class"``."""
    if isinstance(codec, str):
        if ":" in codec:                     # "package.module:Class", not registered
            from xproto.registry import _import_target
            return resolve_codec(_import_target(codec))
        from xproto.registry import default_registry
        return default_registry().get(codec)
    if isinstance(codec, type):
        made: Codec = codec()
        return made
    return codec


def decode_chunks(codec: Codec, chunks: Iterable[bytes], role: Role = Role.ANY,
                  limits: Limits = DEFAULT_LIMITS, context: Sequence[Frame] = (),
                  compact: bool = True) -> Outcome:
    """Feed ``chunks`` to one decoder the way a proxy does; only ProtocolError is caught.

    ``compact``: drop consumed bytes from the buffer after every frame (else keep a position).
    At the end of the stream ``Decoder.eof`` is asked for a close-delimited last frame.
    Raises AssertionError when the decoder breaks the interface (returns a non-positive
    need, an empty frame, a frame longer than the buffer, or loops without progress).
    """
    dec = codec.new_decoder(role, limits)
    for f in context:
        dec.request_sent(f)
    out = Outcome()
    buf = bytearray()
    pos = 0
    calls = 0
    total = 0
    try:
        for chunk in chunks:
            buf += chunk
            total += len(chunk)
            while pos < len(buf):
                calls += 1
                if calls > _MAX_CALLS_PER_BYTE * (total + 1) + 16:
                    raise AssertionError("decoder makes no progress")
                r = dec.decode(buf, pos)
                if isinstance(r, int):
                    if r <= 0:
                        raise AssertionError(f"decode returned need={r}")
                    break
                _take(out, r, len(buf) - pos)
                pos += len(r.raw)
                if compact:
                    del buf[:pos]
                    pos = 0
        if pos < len(buf):
            last = dec.eof(buf, pos)
            if last is not None:
                _take(out, last, len(buf) - pos)
                pos += len(last.raw)
    except ProtocolError as e:
        out.error = type(e).__name__
    out.leftover = len(buf) - pos if out.error is None else 0
    return out


def _take(out: Outcome, frame: Frame, avail: int) -> None:
    if not isinstance(frame, Frame) or not isinstance(frame.raw, bytes):
        raise TypeError(f"decode must return a Frame with bytes raw, got {frame!r}")
    if not 0 < len(frame.raw) <= avail:
        raise AssertionError(f"frame of {len(frame.raw)} bytes from {avail} available")
    out.frames.append((frame.to_json(), frame.raw))


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any ints; taken modulo len+1, sorted)."""
    n = len(data)
    pts = sorted({c % (n + 1) for c in cuts} | {0, n})
    return [data[a:b] for a, b in pairwise(pts)] or [b""]


def mutate(data: bytes, ops: Iterable[tuple[int, int, int]]) -> bytes:
    """Apply (kind, where, value) edits: 0 flip bits, 1 insert, 2 delete, 3 truncate."""
    b = bytearray(data)
    for kind, where, value in ops:
        if not b and kind != 1:
            continue
        i = where % (len(b) + (1 if kind == 1 else 0))
        if kind == 0:
            b[i] ^= (value & 0xFF) or 1
        elif kind == 1:
            b.insert(i, value & 0xFF)
        elif kind == 2:
            del b[i]
        else:
            del b[i:]
    return bytes(b)


class CodecProperties:
    """Hypothesis property checks of one codec over sample frames (see the module doc)."""

    def __init__(self, codec: Codec | type | str, samples: Sequence[bytes], role: Role = Role.ANY,
                 limits: Limits = DEFAULT_LIMITS, context: Sequence[Frame] = (),
                 max_examples: int | None = None) -> None:
        if not samples:
            raise ValueError("give at least one sample frame")
        self.codec = resolve_codec(codec)
        self.samples = [bytes(s) for s in samples]
        self.role = role
        self.limits = limits
        self.context = list(context)
        self.max_examples = max_examples

    def _settings(self) -> Any:
        from hypothesis import HealthCheck, settings
        kw: dict[str, Any] = {"deadline": None, "suppress_health_check": list(HealthCheck),
                              "report_multiple_bugs": False}
        if self.max_examples is not None:
            kw["max_examples"] = self.max_examples
        return settings(**kw)

    def decode(self, chunks: Iterable[bytes]) -> Outcome:
        return decode_chunks(self.codec, chunks, self.role, self.limits, self.context)

    # --- the checks ---------------------------------------------------------------------
    def check_samples(self) -> None:
        for s in self.samples:
            out = self.decode([s])
            assert out.error is None, f"sample {s[:32].hex()}... fails: {out.error}"
            assert out.leftover == 0, f"sample {s[:32].hex()}... leaves {out.leftover} bytes"
            assert out.frames, "a sample gives no frame"

    def check_round_trip(self) -> None:
        codec = self.codec
        for s in self.samples:
            dec = codec.new_decoder(self.role, self.limits)
            for f in self.context:
                dec.request_sent(f)
            frames, _ = dec.decode_all(s)
            for fr in frames:
                assert codec.encode(fr) == fr.raw, f"unmodified {fr!r} re-encodes differently"
                bits = codec.request_id_bits
                if not bits:
                    continue
                new_id = (fr.request_id + 12345) & ((1 << bits) - 1)
                fr.request_id = new_id
                patched = codec.encode(fr)
                assert len(patched) == len(fr.raw)
                again = codec.new_decoder(self.role, self.limits)
                for f in self.context:
                    again.request_sent(f)
                r = again.decode(patched, 0)
                if isinstance(r, Frame):  # context-dependent frames may need their request
                    assert r.request_id == new_id, f"patched id {new_id} decodes as {r.request_id}"
                fr.request_id = fr.orig_request_id

    def check_split_invariance(self) -> None:
        from hypothesis import given
        from hypothesis import strategies as st

        idx = st.integers(0, len(self.samples) - 1)

        @self._settings()  # type: ignore[untyped-decorator]
        @given(st.lists(idx, min_size=1, max_size=4), st.lists(st.integers(0, 1 << 20), max_size=12))
        def prop(which: list[int], cuts: list[int]) -> None:
            data = b"".join(self.samples[i] for i in which)
            whole = self.decode([data])
            parts = self.decode(split(data, cuts))
            assert whole.same_as(parts), (whole, parts)
            bytewise = self.decode([data[i:i + 1] for i in range(len(data))]) if len(data) < 2048 else whole
            assert whole.same_as(bytewise)

        prop()

    def check_mutations(self) -> None:
        from hypothesis import given
        from hypothesis import strategies as st

        op = st.tuples(st.integers(0, 3), st.integers(0, 1 << 20), st.integers(0, 255))

        @self._settings()  # type: ignore[untyped-decorator]
        @given(st.integers(0, len(self.samples) - 1), st.lists(op, min_size=1, max_size=6),
               st.lists(st.integers(0, 1 << 20), max_size=6))
        def mutated(i: int, ops: list[tuple[int, int, int]], cuts: list[int]) -> None:
            data = mutate(self.samples[i], ops)
            whole = self.decode([data])          # raises anything but ProtocolError -> failure
            parts = self.decode(split(data, cuts))
            assert whole.same_as(parts), (whole, parts)

        @self._settings()  # type: ignore[untyped-decorator]
        @given(st.binary(max_size=512))
        def arbitrary(data: bytes) -> None:
            self.decode([data])

        mutated()
        arbitrary()

    def check_all(self) -> None:
        self.check_samples()
        self.check_round_trip()
        self.check_split_invariance()
        self.check_mutations()


def assert_codec_properties(codec: Codec | type | str, samples: Sequence[bytes], **kw: Any) -> None:
    """One call for a test: every property of :class:`CodecProperties`."""
    CodecProperties(codec, samples, **kw).check_all()


# --- atheris ----------------------------------------------------------------------------
def fuzz_one_input(codec: Codec, data: bytes) -> None:
    """The fuzz body: the first byte picks the role and a split; the rest is the stream."""
    if not data:
        return
    ctl, data = data[0], data[1:]
    role = (Role.ANY, Role.REQUESTS, Role.RESPONSES)[ctl % 3]
    whole = decode_chunks(codec, [data], role)
    cut = (ctl * 7919) % (len(data) + 1)
    parts = decode_chunks(codec, [data[:cut], data[cut:]], role)
    if not whole.same_as(parts):
        raise AssertionError(f"split at {cut} changes the outcome: {whole} vs {parts}")
    dec = codec.new_decoder(role)
    try:
        frames, _ = dec.decode_all(data)
    except ProtocolError:
        return
    for fr in frames:
        if codec.encode(fr) != fr.raw:
            raise AssertionError(f"unmodified frame re-encodes differently: {fr!r}")


def _fuzz_main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m xproto.testing fuzz <codec-name> [atheris args]", file=sys.stderr)
        return 64
    name, rest = argv[0], argv[1:]
    import atheris  # type: ignore[import-untyped]

    with atheris.instrument_imports():   # the codec's module is imported here, instrumented
        codec = resolve_codec(name)
    atheris.Setup([sys.argv[0]] + rest, lambda data: fuzz_one_input(codec, data))
    atheris.Fuzz()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["fuzz"]:
        return _fuzz_main(args[1:])
    print(__doc__)
    return 64 if args else 0


if __name__ == "__main__":
    sys.exit(main())
