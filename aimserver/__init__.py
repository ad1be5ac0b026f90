"""aimserver: an AIM (OSCAR) server on Twisted with multisession support."""

__all__: list[str] = []
