"""The WebSocket gateway of PROTOCOL.md section 8 (polyproto core spec section 3.2)."""
