"""Who may connect to the embedded broker, and which topics a tenant may read.

Internal parts (the API, watcher workers, operators' services) use static
credentials with full access. Applications connect as a tenant: STOMP CONNECT
with the tenant's API key as ``passcode`` (any login) or an access token in
``authorization: Bearer ...`` (or as the passcode). A tenant may SEND API
requests and read only its own cameras' topics and its own jobs' progress:
wildcard subscriptions and /topic/repo.events (which carries every tenant's
embeddings) are refused.
"""

from __future__ import annotations

import re
from functools import partial

from api.errors import NotFound
from api.stomp import API_QUEUE
from broker.auth import BrokerPrincipal, Credentials, StaticAuthenticator
from repo.auth import RepoAuth
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
        tenant = self._tenant(credentials)
        if tenant is None:
            return self.static.authenticate(credentials)
        # Exactly the API queue: a prefix would let a tenant make queues of any name that starts like it.
        return BrokerPrincipal(f"tenant:{tenant}", read_prefixes=(), write_prefixes=(), tenant=tenant,
                               read_check=partial(self.may_read, tenant), write_exact=frozenset({API_QUEUE}))

    def _tenant(self, credentials: Credentials) -> str | None:
        secret = credentials.passcode or ""
        scheme, _, token = (credentials.authorization or "").partition(" ")
        if scheme.lower() == "bearer" and token.startswith("fwt."):
            secret = token
        if secret.startswith("fwk_"):
            return self.auth.tenant_of_key(secret)
        if secret.startswith("fwt."):
            return self.auth.tenant_of_token(secret)
        return None

    def may_read(self, tenant: str, destination: str) -> bool:
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
