"""The browser client: its static page, its WebSocket protocol
(docs/web-protocol.md) and the sessions it holds."""
