"""Food-group logic over parsed values, the registry and the store; no sockets here."""
