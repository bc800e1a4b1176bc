"""One API, two transports: handlers registered once, served over REST and STOMP.

Knows requests, responses, errors and routing; nothing about faces or storage.
"""
