"""A small app on facewatch's Python client: enrol people, watch the tenant's cameras, print who is seen.

REST for the gallery and the faces, STOMP for the camera and the events, one API key for both:

    export FACEWATCH_API_KEY=fwk_...            # from `facewatch tenants create NAME`
    python examples/python_app.py --gallery hamilton --enrol ../shared/data/faces/enroll \
        --camera stage file://$PWD/../shared/data/video/short_hamilton_clip.mp4

``--enrol DIR`` adds each ``DIR/<subject>/<photo>`` (subjects made when new), ``--camera ID URL``
registers a camera matched against the gallery (a file camera needs its folder in the service's
``watcher.file_roots``). Then every recognition on any camera of the tenant is printed until Ctrl-C
(or ``--exit-after N`` recognitions). Needs the repository on ``sys.path`` (its virtualenv has it).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

from events import CameraStatus, Event, FaceRecognized, FaceUnknown
from facewatch.client import ApiCallError, BrokerAddress, Facewatch

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def enrol_folder(fw: Facewatch, gallery: str, folder: Path) -> int:
    """Each ``folder/<subject>/<photo>`` into ``gallery``; the number of faces enrolled."""
    known = {s.id for s in fw.subjects(gallery)}
    enrolled = 0
    for subject_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if subject_dir.name not in known:
            fw.create_subject(gallery, subject_dir.name, subject_dir.name.replace("_", " ").title())
        for photo in sorted(p for p in subject_dir.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES):
            try:
                enrolled += len(fw.add_face(gallery, subject_dir.name, photo.read_bytes()))
            except ApiCallError as exc:  # no face, too small, blurred ...: say so and go on
                print(f"not enrolled: {photo} ({exc.code}: {exc.reason})", flush=True)
    return enrolled


class Printer:
    """Prints each event of interest; counts recognitions so that the app can stop after some."""

    def __init__(self, exit_after: int | None) -> None:
        self.exit_after = exit_after
        self.recognitions = 0
        self.done = threading.Event()

    def __call__(self, event: Event) -> None:  # on the client's receiving thread
        match event:
            case FaceRecognized(subject=subject, camera=camera):
                print(f"recognised {subject.name} ({subject.id}, gallery {subject.gallery}) "
                      f"on {camera}, similarity {event.similarity}", flush=True)
                self.recognitions += 1
                if self.exit_after is not None and self.recognitions >= self.exit_after:
                    self.done.set()
            case FaceUnknown(camera=camera, track=track):
                print(f"someone not enrolled on {camera} (track {track})", flush=True)
            case CameraStatus(camera=camera, state=state, reason=reason):
                print(f"camera {camera} {state}{f': {reason}' if reason else ''}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", default="http://127.0.0.1:8080", help="the REST API's URL")
    parser.add_argument("--stomp", default="127.0.0.1:61623", help="the broker's host:port (STOMP over TCP)")
    parser.add_argument("--api-key", default=os.environ.get("FACEWATCH_API_KEY"),
                        help="the tenant's API key (default: $FACEWATCH_API_KEY)")
    parser.add_argument("--gallery", required=True, help="the gallery to enrol into and match against")
    parser.add_argument("--enrol", type=Path, metavar="DIR", help="a folder of <subject>/<photo> to enrol")
    parser.add_argument("--camera", nargs=2, metavar=("ID", "URL"), help="register this camera")
    parser.add_argument("--exit-after", type=int, metavar="N", help="exit after N recognitions")
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("give --api-key or set FACEWATCH_API_KEY")
    host, _, port = args.stomp.rpartition(":")
    broker = BrokerAddress(host, int(port), "python-app", args.api_key)  # any login: the key is the passcode

    with Facewatch.connect(api_url=args.api, broker=broker, api_key=args.api_key) as fw:
        if args.gallery not in {g.name for g in fw.galleries()}:
            fw.create_gallery(args.gallery)
        if args.enrol is not None:
            print(f"{enrol_folder(fw, args.gallery, args.enrol)} face(s) enrolled into {args.gallery}", flush=True)
        # The tenant's topic covers its cameras present and future: subscribed before any camera starts,
        # no event is missed.
        topic = f"/topic/tenant.{fw.me().tenant}.watcher.*"
        printer = Printer(args.exit_after)
        fw.subscribe(topic, printer)
        print(f"watching {topic}", flush=True)
        if args.camera is not None:
            camera_id, url = args.camera
            if camera_id not in {c.id for c in fw.cameras()}:
                fw.add_camera(camera_id, url, galleries=[args.gallery])
                print(f"camera {camera_id} registered", flush=True)
        try:
            printer.done.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
