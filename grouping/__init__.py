"""Face grouping: the faces of people nobody enrolled, put together per person.

clusters.py   average-linkage groups in memory (one matrix-vector product per face)
mirror.py     each tenant's groups in memory, following every node's changes in version order
store.py      groups and their faces in the repo's database
service.py    place, refine, merge, move, remove, ignore, promote; events
handlers.py   the routes, over REST and STOMP
reembed.py    grouped faces of another embedding model, embedded again from their crops
"""
