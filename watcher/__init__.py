"""The watcher: cameras in, face notifications out.

cameras.py     what a camera is (settings, record, allowed sources)
registry.py    cameras in the database
nodes.py       the watcher nodes there are (recorded at start, heartbeat, left)
leases.py      camera leases: which node runs a camera, until when, under which fencing epoch
placement.py   which live node should run a camera no node runs (pure)
failover.py    the lease keeper: heartbeat, renewals, hand-backs, takeovers (node_down)
service.py     register / update / start / stop / remove, transport-free
handlers.py    those operations as STOMP-only API routes
supervisor.py  one spawned worker process per running camera, restarts
worker.py      inside a worker: stream -> pipeline -> bus
stream.py      PyAV reading with timeouts, reconnect, newest frame only
pipeline.py    the data path: detect -> track -> best shot -> embed -> match -> events
tracker.py     IoU tracks with stable ids and best shots
evidence.py    a track's embedded shots, and the share of the FPIR each decision on it may spend
galleries.py   the camera's galleries, following /topic/repo.events (a repo GalleryMirror)
"""
