"""Administration: the command-line tool (and later the console and JSON API)."""
