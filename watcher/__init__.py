"""The watcher: cameras in, face notifications out (issue 5, being built).

Today: stream reading with reconnect (`stream.py`) and face tracking with best
shots (`tracker.py`). Camera registry, worker processes and notifications come next.
"""
