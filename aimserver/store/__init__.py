"""User-level persistent data: one interface per role and IUserStore, all of them
(``interfaces``); a module per role with its memory and SQLite mixins; the stores
they make (``memory``, ``sqlite``); the account cache (``cache``)."""
