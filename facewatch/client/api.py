"""``Facewatch``: typed methods for the REST and STOMP API, so nobody writes request/reply plumbing.

Repo, grouping and job calls go over REST when an API URL is given (else over
STOMP); camera calls go over STOMP, the only transport that serves them; events
are STOMP subscriptions. Errors raise ``ApiCallError`` with the API's code.

    with Facewatch.connect(api_url="http://127.0.0.1:8080", broker=BrokerAddress(...), api_key=key) as fw:
        fw.add_camera("door", "rtsp://cam/stream", galleries=["staff"])
        fw.camera_events("door", print)
"""

from __future__ import annotations

import base64
import logging
import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import quote

from broker.client import BrokerAddress, BusClient, BusMessage
from events import JSON, Event, EventError, JobProgress, decode, decode_as, job_topic

from .records import Camera, CameraStatus, Gallery, Group, Job, Me, Subject
from .transport import HttpTransport, StompTransport, Transport, Upload, auth_headers

log = logging.getLogger(__name__)

__all__ = ("Facewatch", "JobWaitTimeout", "EventLog")


class JobWaitTimeout(TimeoutError):
    """A job made no progress (no event, no change when asked) for the time allowed."""


def _seg(value: str) -> str:
    return quote(value, safe="")


class Facewatch:
    def __init__(self, rest: Transport | None = None, bus: BusClient | None = None,
                 headers: dict[str, str] | None = None) -> None:
        """``rest``: REST transport (None: everything over STOMP); ``bus``: a connected bus client for camera
        calls and events; ``headers``: the credential sent with each STOMP request."""
        self.rest = rest
        self.bus = bus
        self.stomp = StompTransport(bus, dict(headers or {})) if bus is not None else None
        self._owns_bus = False

    @classmethod
    def connect(cls, *, api_url: str | None = None, broker: BrokerAddress | None = None, api_key: str | None = None,
                token: str | None = None, client_name: str = "facewatch-client",
                connect_timeout_s: float = 10.0) -> "Facewatch":
        """A client for ``api_url`` (REST) and/or ``broker`` (STOMP; connected now), with one credential."""
        headers = auth_headers(api_key, token)
        rest = HttpTransport(api_url, dict(headers)) if api_url else None
        bus = None
        if broker is not None:
            bus = BusClient(broker, client_name=client_name)
            bus.connect(connect_timeout_s)
        client = cls(rest, bus, headers)
        client._owns_bus = bus is not None
        return client

    def close(self) -> None:
        if self.bus is not None and self._owns_bus:
            self.bus.close()

    def __enter__(self) -> "Facewatch":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------
    def _any(self) -> Transport:
        transport: Transport | None = self.rest or self.stomp
        if transport is None:
            raise RuntimeError("this client has neither an API URL nor a broker connection")
        return transport

    def _over_stomp(self) -> StompTransport:
        if self.stomp is None:
            raise RuntimeError("camera operations and events need a broker connection (STOMP)")
        return self.stomp

    def call(self, method: str, path: str, body: Any = None, *, query: dict[str, str] | None = None,
             timeout_s: float = 60.0) -> Any:
        """Any API call (REST when there, else STOMP); the JSON answer."""
        return self._any().call(method, path, body=body, query=query, timeout_s=timeout_s).json()

    def _cameras(self, method: str, path: str = "", body: Any = None) -> Any:
        return self._over_stomp().call(method, "/api/v1/cameras" + path, body=body).json()

    # -- who, what ----------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.call("GET", "/api/v1/health")
        return answer

    def me(self) -> Me:
        return Me.from_json(self.call("GET", "/api/v1/me"))

    # -- galleries, subjects, faces -----------------------------------------------------------
    def galleries(self) -> list[Gallery]:
        return [Gallery.from_json(g) for g in self.call("GET", "/api/v1/galleries")["galleries"]]

    def create_gallery(self, name: str) -> Gallery:
        return Gallery.from_json(self.call("POST", "/api/v1/galleries", {"name": name}))

    def delete_gallery(self, name: str) -> None:
        self.call("DELETE", f"/api/v1/galleries/{_seg(name)}")

    def subjects(self, gallery: str, *, offset: int = 0, limit: int = 1000) -> list[Subject]:
        answer = self.call("GET", f"/api/v1/galleries/{_seg(gallery)}/subjects",
                           query={"offset": str(offset), "limit": str(limit)})
        return [Subject.from_json(s) for s in answer["subjects"]]

    def create_subject(self, gallery: str, subject_id: str, name: str | None = None,
                       meta: dict[str, Any] | None = None) -> Subject:
        body = {"id": subject_id, "name": name or subject_id, "meta": meta or {}}
        return Subject.from_json(self.call("POST", f"/api/v1/galleries/{_seg(gallery)}/subjects", body))

    def add_face(self, gallery: str, subject: str, image: bytes, *, force: bool = False) -> list[dict[str, Any]]:
        """Enrol the face of ``image`` (bytes of a JPEG, PNG, ...); the faces added."""
        body = {"image": base64.b64encode(image).decode(), "force": force}
        faces: list[dict[str, Any]] = self.call(
            "POST", f"/api/v1/galleries/{_seg(gallery)}/subjects/{_seg(subject)}/faces", body)["faces"]
        return faces

    def identify(self, image: bytes, galleries: list[str], **params: Any) -> dict[str, Any]:
        answer: dict[str, Any] = self.call("POST", "/api/v1/identify",
                                           {"image": base64.b64encode(image).decode(), "galleries": galleries,
                                            **params})
        return answer

    def detect(self, image: bytes, **params: Any) -> dict[str, Any]:
        answer: dict[str, Any] = self.call("POST", "/api/v1/detect",
                                           {"image": base64.b64encode(image).decode(), **params})
        return answer

    # -- jobs -------------------------------------------------------------------------------
    def enrol_zip(self, gallery: str, data: bytes, filename: str = "enrol.zip") -> Job:
        """Bulk enrolment of a zip of ``<subject>/<image>`` (202: the job, running)."""
        path = f"/api/v1/galleries/{_seg(gallery)}/enrol"
        if self.rest is not None:
            answer = self.rest.call("POST", path, files={"file": Upload(filename, data, "application/zip")}).json()
        else:
            raise RuntimeError("uploading a zip needs the REST API (api_url)")
        return Job.from_json(answer)

    def job(self, job_id: str) -> Job:
        return Job.from_json(self.call("GET", f"/api/v1/jobs/{_seg(job_id)}"))

    def cancel_job(self, job_id: str) -> Job:
        return Job.from_json(self.call("POST", f"/api/v1/jobs/{_seg(job_id)}/cancel"))

    def wait_job(self, job_id: str, on_progress: Callable[[Job], None] | None = None, *,
                 idle_timeout_s: float = 120.0) -> Job:
        """Follow a job on its topic (/topic/jobs.<id>) until it has finished; ``on_progress`` gets each
        state. Subscribed before the first look, so no step is missed; if the topic is silent for a while
        the job is asked once (a reconnect may have lost an event)."""
        if self.bus is None:
            raise RuntimeError("following a job needs a broker connection (STOMP)")
        states: queue.Queue[Job] = queue.Queue()

        def progress(message: BusMessage) -> None:
            try:
                event = decode_as(message.body, JobProgress)
            except EventError:
                return
            if event is not None:
                states.put(Job.of_progress(event))

        sub_id = self.bus.subscribe(job_topic(job_id), progress, receipt=True)
        try:
            job = self.job(job_id)
            while True:
                if on_progress is not None:
                    on_progress(job)
                if job.finished:
                    return job
                try:
                    job = states.get(timeout=idle_timeout_s)
                except queue.Empty:
                    asked = self.job(job_id)
                    if asked == job:
                        raise JobWaitTimeout(f"job {job_id} made no progress in {idle_timeout_s:g}s") from None
                    job = asked
        finally:
            self.bus.unsubscribe(sub_id)

    # -- grouping -------------------------------------------------------------------------------
    def groups(self, *, camera: str | None = None, status: str | None = None, offset: int = 0,
               limit: int = 50) -> list[Group]:
        query = {"offset": str(offset), "limit": str(limit)}
        query |= {k: v for k, v in (("camera", camera), ("status", status)) if v is not None}
        return [Group.from_json(g) for g in self.call("GET", "/api/v1/groups", query=query)["groups"]]

    def group(self, group_id: str) -> Group:
        return Group.from_json(self.call("GET", f"/api/v1/groups/{_seg(group_id)}"))

    # -- cameras (STOMP only) ------------------------------------------------------------------------
    def cameras(self) -> list[Camera]:
        return [Camera.from_json(c) for c in self._cameras("GET")["cameras"]]

    def add_camera(self, camera_id: str, url: str, *, galleries: list[str] | None = None, enabled: bool = True,
                   **settings: Any) -> Camera:
        body = {"id": camera_id, "url": url, "galleries": galleries or [], "enabled": enabled, **settings}
        return Camera.from_json(self._cameras("POST", "", body))

    def camera(self, camera_id: str) -> Camera:
        return Camera.from_json(self._cameras("GET", f"/{_seg(camera_id)}"))

    def edit_camera(self, camera_id: str, **settings: Any) -> Camera:
        return Camera.from_json(self._cameras("PATCH", f"/{_seg(camera_id)}", settings))

    def start_camera(self, camera_id: str) -> Camera:
        return Camera.from_json(self._cameras("POST", f"/{_seg(camera_id)}/start"))

    def stop_camera(self, camera_id: str) -> Camera:
        return Camera.from_json(self._cameras("POST", f"/{_seg(camera_id)}/stop"))

    def remove_camera(self, camera_id: str) -> None:
        self._cameras("DELETE", f"/{_seg(camera_id)}")

    def camera_status(self, camera_id: str) -> CameraStatus:
        return CameraStatus.from_json(self._cameras("GET", f"/{_seg(camera_id)}/status"))

    # -- events -------------------------------------------------------------------------------------
    def subscribe(self, destination: str, callback: Callable[[Event], None]) -> str:
        """The events of ``destination`` (typed: events/, ``FaceRecognized``, ``CameraStatus``...) to
        ``callback`` (on the bus thread), from the moment this returns (the broker confirmed the
        subscription); the subscription id, for ``unsubscribe``. What is not an event is skipped."""
        if self.bus is None:
            raise RuntimeError("events need a broker connection (STOMP)")

        def deliver(message: BusMessage) -> None:
            try:
                event = decode(message.body, message.headers.get("content-type", JSON))
            except EventError as exc:
                log.debug("not an event on %s: %s", destination, exc)
                return
            callback(event)

        return self.bus.subscribe(destination, deliver, receipt=True)

    def camera_events(self, camera_id: str, callback: Callable[[Event], None]) -> str:
        """A camera's events (face.recognized, face.unknown, camera.status). A tenant's credential may read
        the topic of its own cameras only, so subscribe once the camera is registered."""
        return self.subscribe(f"/topic/watcher.{camera_id}", callback)

    def unsubscribe(self, subscription: str) -> None:
        if self.bus is not None:
            self.bus.unsubscribe(subscription)


class EventLog:
    """A callback for ``subscribe`` that keeps the events, and waits (on a condition, no polling) for one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[Event], bool], timeout_s: float) -> Event:
        """The first event that matches ``predicate``; TimeoutError when none came within ``timeout_s``."""
        match: Event | None = None

        def found() -> bool:
            nonlocal match
            match = next((e for e in self.events if predicate(e)), None)
            return match is not None

        with self._changed:
            if not self._changed.wait_for(found, timeout_s) or match is None:
                raise TimeoutError(f"no matching event in {timeout_s:g}s; saw {len(self.events)}")
            return match
