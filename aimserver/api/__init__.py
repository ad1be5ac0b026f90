"""The JSON management API (``twisted.web``) on ``--api-port``."""
