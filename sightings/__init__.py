"""Sightings: a memory of what the cameras saw, searchable by face, that forgets on schedule.

records.py    the records: a new sighting (from an event), a stored one, retention, filters
events.py     the one place a watcher event dict is read
schema.py     tables (component "sightings"): sightings, crops, sequence counters, retention, erasures
store.py      all SQL: batched writes with per-tenant sequence numbers, listings, retention, erasure
index.py      search by face in memory, per tenant, partitioned by time (repo/index.py's exact/prescan)
writer.py     the workers' queue -> batches -> one transaction each -> acks
service.py    listings, catch-up, search by face, retention settings; announces stored sightings
relabel.py    retroactive naming of unknown sightings when a subject gets faces
retention.py  the scheduled forgetting
erasure.py    erasing a subject everywhere, audited
handlers.py   the routes, over REST and STOMP
follow.py     a client's catch-up-then-live protocol (FeedState, SightingFollower)
"""
