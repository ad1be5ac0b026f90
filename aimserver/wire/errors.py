"""The one decoding error of the wire layer.

Every decoder checks its bounds before it reads, so a short or garbled input
surfaces as ``MalformedData`` and never as ``IndexError`` or ``struct.error``.
Protocols catch exactly this type to answer with a SNAC error or a clean
channel-4 close.
"""


class MalformedData(ValueError):  # noqa: N818 (the name is the API)
    """Input bytes do not form the structure being decoded; the message says which."""
