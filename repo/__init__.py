"""The face repository: galleries, subjects and faces; detect, verify, identify.

Storage (SQLite or PostgreSQL), the in-memory search index, original images on
disk, and the API handlers that serve it over REST and STOMP.
"""
