"""The face repository: galleries, subjects and faces; detect, verify, identify.

Storage (SQLite or PostgreSQL), the in-memory search index (kept equal on every
node: sync.py, mirror.py), original images on disk, and the API handlers that
serve it over REST and STOMP.
"""
