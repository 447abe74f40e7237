"""Framing helpers shared by the codecs (protocol-neutral, sans-I/O).

* :mod:`xproto.framing.fixed` - fixed-header, length-prefixed frames: limit checks before
  allocating, "need n more bytes", copying a frame out of the receive buffer, a u32 size
  prefix (framed Thrift, Kafka), and a fast :class:`~xproto.frame.Frame` constructor.
* :mod:`xproto.framing.kv_block` - length-prefixed key/value blocks with nulls (the SOFA
  Bolt header block), decoded and re-encoded byte-exactly.
"""
