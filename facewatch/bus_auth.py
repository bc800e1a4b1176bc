"""Who may connect to the embedded broker, and which topics a tenant may read.

Internal parts (the API, watcher workers, operators' services) use static
credentials with full access. Applications connect as a tenant: STOMP CONNECT
with the tenant's API key as ``passcode`` (any login) or an access token in
``authorization: Bearer ...`` (or as the passcode). A key of scope
``subscribe`` may read the topics of the cameras it names and nothing else
(no SEND at all). Any other tenant credential may SEND API
requests and read only its own cameras' topics, its own jobs' progress and its
own topics under /topic/tenant.<tenant id>. (its repo and grouping changes; a
wildcard there is fine: it cannot reach past the tenant's own prefix). Other
wildcard subscriptions and /topic/repo.events (which carries every tenant's
embeddings) are refused.
"""

from __future__ import annotations

import re
from functools import partial

from api.errors import NotFound
from api.stomp import API_QUEUE
from broker.auth import BrokerPrincipal, Credentials, StaticAuthenticator
from api.scopes import FULL
from repo.auth import KeyGrant, RepoAuth
from repo.events import TENANT_TOPIC_PREFIX
from repo.store import RepoStore
from watcher.cameras import CAMERA_ID
from watcher.registry import CameraRegistry

__all__ = ("TenantBusAuthenticator",)

_CAMERA_TOPIC = re.compile(r"^/topic/watcher(?:-msgpack)?\.(" + CAMERA_ID.pattern.strip("^$") + ")$")
_JOB_TOPIC = re.compile(r"^/topic/jobs\.([0-9a-f]{1,64})$")


class TenantBusAuthenticator:
    def __init__(self, static: StaticAuthenticator, auth: RepoAuth, store: RepoStore,
                 cameras: CameraRegistry) -> None:
        self.static = static
        self.auth = auth
        self.store = store
        self.cameras = cameras

    def authenticate(self, credentials: Credentials) -> BrokerPrincipal | None:
        found = self._grant(credentials)
        if found is None:
            return self.static.authenticate(credentials)
        grant, expires_at = found
        tenant, scope = grant.tenant_id, grant.scope
        if not scope.may_call_api:  # subscribe: its cameras' topics, nothing else, no SEND
            return BrokerPrincipal(f"tenant:{tenant}", read_prefixes=(), write_prefixes=(), tenant=tenant,
                                   read_check=partial(self.may_read_camera, tenant, frozenset(scope.cameras)),
                                   credential=grant.key_id or None, may_send=False)
        # Exactly the API queue: a prefix would let a tenant make queues of any name that starts like it.
        return BrokerPrincipal(f"tenant:{tenant}", read_prefixes=(), write_prefixes=(), tenant=tenant,
                               read_check=partial(self.may_read, tenant), write_exact=frozenset({API_QUEUE}),
                               credential=grant.key_id or None, expires_at=expires_at)

    def _grant(self, credentials: Credentials) -> tuple[KeyGrant, float | None] | None:
        """A tenant's grant and when it expires (an access token's expiry; None: an API key, revoked instead)."""
        secret = credentials.passcode or ""
        scheme, _, token = (credentials.authorization or "").partition(" ")
        if scheme.lower() == "bearer" and token.startswith("fwt."):
            secret = token
        if secret.startswith("fwk_"):
            grant = self.auth.key_grant(secret)
            return (grant, None) if grant is not None else None
        if secret.startswith("fwt."):
            valid = self.auth.tenant_of_token(secret)
            return (KeyGrant(valid[0], "", FULL), valid[1]) if valid is not None else None
        return None

    def may_read_camera(self, tenant: str, cameras: frozenset[str], destination: str) -> bool:
        camera = _CAMERA_TOPIC.match(destination)
        return camera is not None and camera.group(1) in cameras and self.cameras.owner(camera.group(1)) == tenant

    def may_read(self, tenant: str, destination: str) -> bool:
        if destination.startswith(f"{TENANT_TOPIC_PREFIX}{tenant}."):
            return True  # the session parsed it: a valid name or pattern, with the tenant's id as its 2nd word
        camera = _CAMERA_TOPIC.match(destination)
        if camera is not None:
            return self.cameras.owner(camera.group(1)) == tenant
        job = _JOB_TOPIC.match(destination)
        if job is not None:
            try:
                self.store.job(tenant, job.group(1))
            except NotFound:
                return False
            return True
        return False
