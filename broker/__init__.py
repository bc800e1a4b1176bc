"""facewatch's STOMP broker (embedded, TCP + WebSocket) and its client layer.

Knows destinations and bytes, never faces. Depends on no other facewatch package.
"""
