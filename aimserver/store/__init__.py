"""User-level persistent data behind one interface (IUserStore)."""
