"""The Python client of facewatch's REST and STOMP API (what the CLI, the examples and the tests use).

    from facewatch.client import Facewatch, BrokerAddress
    fw = Facewatch.connect(api_url="http://127.0.0.1:8080",
                           broker=BrokerAddress("127.0.0.1", 61623, "app", api_key), api_key=api_key)
"""

from broker.client import BrokerAddress

from .api import EventLog, Facewatch, JobWaitTimeout
from .records import Camera, CameraStatus, Gallery, Group, Job, Me, Subject
from .transport import ApiCallError, HttpTransport, Response, StompTransport, Transport, Upload

__all__ = ("Facewatch", "EventLog", "JobWaitTimeout", "BrokerAddress", "ApiCallError", "Transport", "HttpTransport",
           "StompTransport", "Response", "Upload", "Camera", "CameraStatus", "Gallery", "Group", "Job", "Me", "Subject")
