"""Configuration: one pydantic model per section, strict, loaded from YAML + env.

``load_config(path)`` reads the file, overlays ``FACEWATCH_<SECTION>__<KEY>``
environment variables and validates. Any problem raises ``ConfigError`` with a
one-line message naming the key and what is allowed; the CLI exits 2 on it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from repo.index import SearchOptions
from repo.sync import SyncOptions
from vision.attribute_names import AttributeName
from watcher.cameras import CAMERA_ID, NODE_NAME, CameraSettings
from watcher.networks import DEFAULT_BLOCKED_NETWORKS, parse_networks

__all__ = (
    "ConfigError",
    "FacewatchConfig",
    "JobsConfig",
    "RuntimeConfig",
    "DetectorConfig",
    "LandmarksConfig",
    "EmbedderConfig",
    "ModelsConfig",
    "QualityConfig",
    "RecognitionConfig",
    "TlsConfig",
    "ApiConfig",
    "BrokerConfig",
    "StorageConfig",
    "AuthConfig",
    "SyncConfig",
    "RepoConfig",
    "BrokerUserConfig",
    "WatcherConfig",
    "GroupingConfig",
    "MetricsConfig",
    "SightingsConfig",
    "SightingsRetentionConfig",
    "MqttTlsConfig",
    "MqttConfig",
    "DeclaredCamera",
    "load_config",
    "parse_config",
    "ENV_PREFIX",
    "NOT_CONFIG_ENV",
    "PATH_KEYS",
)

ENV_PREFIX = "FACEWATCH_"
# FACEWATCH_ variables that are not config overrides: which config file to read (facewatch/config_file.py)
# and the API key of the CLI's client commands.
NOT_CONFIG_ENV = frozenset({"FACEWATCH_CONFIG", "FACEWATCH_API_KEY"})
# Keys holding file system paths. A relative one is relative to the folder of the config file that
# sets it (or that the default belongs to); one set by an environment variable, to the current directory.
PATH_KEYS: tuple[tuple[str, ...], ...] = (
    ("data_dir",), ("models", "dir"), ("watcher", "file_roots"), ("recognition", "calibration"),
    ("api", "tls", "cert_file"), ("api", "tls", "key_file"), ("broker", "tls", "cert_file"),
    ("broker", "tls", "key_file"), ("broker", "ca_file"),
    ("mqtt", "tls", "ca_file"), ("mqtt", "tls", "cert_file"), ("mqtt", "tls", "key_file"),
)


class ConfigError(Exception):
    """The configuration is unreadable or invalid; the message is one line."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuntimeConfig(Section):
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="ONNX Runtime device: auto uses CUDA when onnxruntime-gpu sees a GPU"
    )
    intra_op_threads: int = Field(1, ge=0, description="threads per model session (0 = ORT default)")
    inter_op_threads: int = Field(1, ge=0)
    allow_spinning: bool = Field(False, description="let idle ORT threads spin "
                                 "(faster alone, slower when sessions share cores)")
    analysis_processes: int = Field(2, ge=0, description="worker processes analysing API images (enrol, identify, "
                                                         "detect); 0 = threads of the server process")


class DetectorConfig(Section):
    backend: Literal["onnx", "mediapipe"] = "onnx"
    path: str = Field("fr_detect.onnx", description="relative to models.dir, or absolute")
    input_width: int = Field(320, gt=0)
    input_height: int = Field(240, gt=0)
    mean: float = 127.0
    std: float = Field(128.0, gt=0)
    rgb: bool = True
    score_threshold: float = Field(0.7, gt=0, lt=1)
    nms_iou: float = Field(0.3, gt=0, le=1)
    nms_containment: float = Field(0.7, gt=0, le=1,
                                   description="drop a box lying more than this much inside a better one")
    tile_min_side: int = Field(720, ge=0, description="also scan 2x2 tiles when the frame's shorter side is at least "
                               "this; 0 = never")
    tile_overlap: float = Field(0.2, ge=0, lt=1)
    min_face_px: float = Field(0.0, ge=0)


class LandmarksConfig(Section):
    path: str = "fr_landmark.onnx"
    input_size: int = Field(64, gt=0)
    scale: float = Field(1.0, gt=0)


class EmbedderConfig(Section):
    path: str = "fr_feature.onnx"
    model_id: str | None = Field(None, description="stored beside embeddings; default: file name + sha256 prefix")
    input_size: int = Field(112, gt=0)
    mean: float = 127.5
    std: float = Field(128.0, gt=0)
    rgb: bool = True
    flip: bool = Field(False, description="average with the mirrored crop (2x embedding time)")
    max_batch: int = Field(32, gt=0)


def _default_attribute_models() -> dict[AttributeName, str]:
    return {
        "age": "fr_age.onnx",
        "gender": "fr_gender.onnx",
        "pose": "fr_pose.onnx",
        "liveness": "fr_liveness.onnx",
        "expression": "fr_expression.onnx",
        "eyes": "fr_eye.onnx",
    }


class ModelsConfig(Section):
    dir: str | None = Field(None, description="folder of the model files; default <data_dir>/models/<pack>")
    detector: DetectorConfig = DetectorConfig()
    landmarks: LandmarksConfig = LandmarksConfig()
    embedder: EmbedderConfig = EmbedderConfig()
    attributes: dict[AttributeName, str] = Field(default_factory=_default_attribute_models)


class QualityConfig(Section):
    min_size_px: float = Field(20.0, ge=0)
    good_size_px: float = Field(48.0, gt=0)
    blur_sharpness: float = Field(0.01, ge=0, description="native-resolution sharpness: blur factor 0 at or below")
    sharp_sharpness: float = Field(0.05, gt=0, description="... and 1 at or above")
    frontal_yaw_deg: float = Field(25.0, ge=0, le=90)
    profile_yaw_deg: float = Field(50.0, ge=0, le=90)
    yaw_source: Literal["pose_model", "landmarks"] = Field(
        "pose_model", description="pose_model: reliable on profiles, ~9 ms/face; landmarks: free, misses true profiles"
    )
    reference_norm: float = Field(3.57, gt=0, description="raw embedding norm of good faces (bench/calibrate.py)")
    low_norm_ratio: float = Field(0.55, ge=0, description="recognisable factor 0 at or below this norm ratio")
    high_norm_ratio: float = Field(0.8, gt=0, description="... and 1 at or above")
    occlusion_check: bool = Field(True, description="refuse covered faces (two more embeddings per face)")
    visible_consistency: float = Field(0.72, ge=0, le=1, description="visible factor 1 at or below this")
    covered_consistency: float = Field(0.82, ge=0, le=1, description="... and 0 at or above")
    min_score: float = Field(0.3, ge=0, le=1, description="the matching gate: faces under it are named as nobody "
                                                          "(enrolment has its own, repo.min_quality)")

    @model_validator(mode="after")
    def _ordered(self) -> "QualityConfig":
        if self.high_norm_ratio <= self.low_norm_ratio:
            raise ValueError("high_norm_ratio must be greater than low_norm_ratio")
        if self.covered_consistency <= self.visible_consistency:
            raise ValueError("covered_consistency must be greater than visible_consistency")
        if self.good_size_px <= self.min_size_px:
            raise ValueError("good_size_px must be greater than min_size_px")
        if self.profile_yaw_deg <= self.frontal_yaw_deg:
            raise ValueError("profile_yaw_deg must be greater than frontal_yaw_deg")
        return self


Preset = Literal["strict", "medium", "low"]


def _default_rates() -> dict[Preset, float]:
    return {"strict": 0.001, "medium": 0.01, "low": 0.1}


class RecognitionConfig(Section):
    """How sure a match must be (repo/decision.py): a preset names a rate, a number is a fixed cosine."""

    threshold: Annotated[float, Field(ge=-1, le=1)] | Preset = Field(
        "strict", description="default: a preset (rate, with the gallery size and the probe's quality) or a cosine")
    rates: dict[Preset, Annotated[float, Field(gt=0, lt=1)]] = Field(
        default_factory=_default_rates,
        description="1:N (identify, cameras): false-positive identification rate per probe; 1:1 (verify): FAR")
    margin: float = Field(0.03, ge=0, le=1, description="the subject named must lead the runner-up by this much")
    calibration: str | None = Field(
        None, description="calibration JSON of the embedding model (bench/calibrate.py); default: the shipped one")

    @model_validator(mode="after")
    def _presets_complete(self) -> "RecognitionConfig":
        if isinstance(self.threshold, str) and self.threshold not in self.rates:
            raise ValueError(f"recognition.threshold {self.threshold!r} is not in recognition.rates")
        return self


class TlsConfig(Section):
    """A listener's certificate and key (PEM files); both set = the listener speaks TLS."""

    cert_file: str | None = Field(None, description="PEM certificate, leaf first, then any intermediates")
    key_file: str | None = Field(None, description="PEM private key of cert_file, not encrypted")
    min_version: Literal["1.2", "1.3"] = Field("1.2", description="oldest TLS version accepted")

    @model_validator(mode="after")
    def _both_or_neither(self) -> "TlsConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set both cert_file and key_file, or neither")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


class ApiConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    tls: TlsConfig = Field(TlsConfig(), description="HTTPS for REST and WSS for the broker's websocket_path")
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(40_000_000, gt=0)
    stomp_prefetch: int = Field(8, gt=0, description="STOMP API requests this node holds unanswered at most "
                                                     "(the rest wait in the queue for any node)")
    drain_timeout_s: float = Field(30.0, ge=0, description="at shutdown, how long requests in hand may take "
                                                           "to finish before the pools close")
    idempotency_ttl_s: float = Field(86400.0, gt=0, description="how long an idempotency key's answer is kept")
    idempotency_wait_s: float = Field(30.0, ge=0, description="a repeated key waits this long for the first "
                                                              "request's answer (then 409)")


class SyncConfig(Section):
    """How every node's in-memory indexes follow the changes made through the others (docs/nodes.md)."""

    gap_grace_s: float = Field(0.5, gt=0, description="a change event missing this long (lost, or overtaken by a "
                                                      "later one) gets its gallery or tenant reloaded")
    reconcile_interval_s: float = Field(5.0, gt=0, description="how often each node compares its versions with "
                                                               "the database (finds changes whose events were lost)")

    def options(self) -> SyncOptions:
        return SyncOptions(self.gap_grace_s, self.reconcile_interval_s)


class BrokerUserConfig(Section):
    login: str = Field(min_length=1)
    passcode: str = Field(min_length=8)
    read: list[str] = Field(default_factory=lambda: ["/"], description="destination prefixes it may SUBSCRIBE to")
    write: list[str] = Field(default_factory=lambda: ["/"], description="destination prefixes it may SEND to")


class BrokerConfig(Section):
    url: str = Field(
        "embedded",
        description="'embedded' runs our broker in `facewatch serve`; or stomp://login:passcode@host:61613[/vhost] "
                    "(stomps:// or stomp+ssl:// for TLS, default port 61614)",
    )
    host: str = "127.0.0.1"
    port: int | None = Field(61623, ge=0, le=65535,
                             description="plain TCP STOMP; not 61613, so it can run beside a local RabbitMQ STOMP "
                                         "plugin; null = none on host (facewatch's own parts get a loopback-only one)")
    tls_port: int | None = Field(None, ge=0, le=65535, description="TCP STOMP over TLS (RabbitMQ's is 61614), "
                                                                   "with tls's certificate; null = none")
    tls: TlsConfig = Field(TlsConfig(), description="certificate and key of tls_port")
    ca_file: str | None = Field(None, description="PEM CA bundle that verifies a stomps:// url; "
                                                  "null = the system's CAs")
    websocket_path: str = Field("/stomp", pattern=r"^/[A-Za-z0-9_./-]*$")
    users: list[BrokerUserConfig] = Field(
        default_factory=list,
        description="static STOMP credentials; empty = generate one into <data_dir>/broker-credentials.json",
    )
    max_frame_bytes: int = Field(4 * 1024 * 1024, gt=0)
    max_headers: int = Field(64, gt=0)
    max_header_line_bytes: int = Field(8192, gt=0)
    max_subscriptions_per_connection: int = Field(256, gt=0)
    max_connections_per_login: int = Field(256, gt=0)
    max_pending_messages: int = Field(10_000, gt=0)
    max_queue_messages: int = Field(100_000, gt=0)
    max_queues: int = Field(10_000, gt=0)
    max_queues_per_login: int = Field(100, ge=0, description="named queues a tenant's login may make")
    max_temp_queues_per_connection: int = Field(64, gt=0)
    max_pending_bytes: int = Field(16 * 1024 * 1024, gt=0, description="per subscription and temp queue")
    max_queue_bytes: int = Field(256 * 1024 * 1024, gt=0, description="per named queue")
    max_held_bytes: int = Field(
        512 * 1024 * 1024, gt=0,
        description="memory alarm: above it, tenants' publishing connections are paused until the broker drains")
    max_held_bytes_per_login: int = Field(64 * 1024 * 1024, gt=0,
                                          description="a tenant's unconsumed messages; above it its SENDs wait")
    max_transaction_bytes: int = Field(16 * 1024 * 1024, gt=0)
    overflow_policy: Literal["drop_oldest", "disconnect"] = "drop_oldest"
    session_high_water_bytes: int = Field(1024 * 1024, gt=0)
    heartbeat_send_ms: int = Field(10_000, ge=0)
    heartbeat_receive_ms: int = Field(10_000, ge=0)
    connect_timeout_s: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _url(self) -> "BrokerConfig":
        if self.url != "embedded" and not self.url.startswith(("stomp://", "stomps://", "stomp+ssl://")):
            raise ValueError("url must be 'embedded' or stomp[s]://login:passcode@host:port[/vhost]")
        if self.tls_port is not None and not self.tls.enabled:
            raise ValueError("tls_port needs tls.cert_file and tls.key_file")
        return self


class StorageConfig(Section):
    url: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<data_dir>/facewatch.db; "
                                              "or postgresql://user:pass@host/db")
    save_images: bool = Field(True, description="keep enrolled originals under <data_dir>/images")


class AuthConfig(Section):
    access_token_ttl_s: int = Field(3600, gt=0)
    refresh_token_ttl_s: int = Field(30 * 86400, gt=0)
    rate_per_s: float = Field(50.0, ge=0, description="requests per second per tenant (0 = unlimited)")
    rate_burst: int = Field(100, gt=0)
    revocation_check_s: float = Field(5.0, gt=0, description="how often open STOMP connections' API keys are "
                                                             "checked against revocations made elsewhere, and "
                                                             "connections of expired access tokens closed")


class SearchConfig(Section):
    exact_max_faces: int = Field(100_000, ge=0, description="galleries up to this many faces are searched exactly")
    candidate_fraction: float = Field(0.01, gt=0, le=1, description="above it, this share of the faces (nearest by "
                                                                   "sign code) is scored exactly")
    min_candidates: int = Field(1024, gt=0)

    def options(self) -> SearchOptions:
        return SearchOptions(self.exact_max_faces, self.candidate_fraction, self.min_candidates)


class RepoConfig(Section):
    min_face_px: float = Field(40.0, ge=0, description="smaller faces are refused at enrolment unless force")
    min_quality: float = Field(0.5, ge=0, le=1, description="enrolment's own gate, stricter than matching's "
                                                              "(quality.min_score): a gallery face is compared "
                                                              "with every probe")
    search: SearchConfig = SearchConfig()


class DeclaredCamera(CameraSettings):
    """A camera kept in config.yaml: registered (or updated) when serve starts."""

    id: str = Field(pattern=CAMERA_ID.pattern)
    tenant: str = Field(min_length=1, description="tenant name (facewatch tenants create)")
    enabled: bool = True


class WatcherConfig(Section):
    enabled: bool = Field(True, description="serve runs the camera supervisor and its worker processes")
    node: str | None = Field(None, pattern=NODE_NAME.pattern,
                             description="this watcher node's name (cameras run on the node they name); "
                                         "default: the host name")
    file_roots: list[str] = Field(default_factory=list, description="folders cameras may read video files from "
                                                                    "(empty: no local files)")
    allow_devices: bool = Field(False, description="allow /dev/videoN capture devices")
    blocked_networks: list[str] = Field(
        default_factory=lambda: list(DEFAULT_BLOCKED_NETWORKS),
        description="IP networks rtsp/http cameras may not reach (by the address written or resolved): the "
                    "server's own services on loopback, cloud metadata on link-local; [] allows every host")
    allow_playlists: bool = Field(False, description="let network cameras be HLS/DASH playlists (FFmpeg opens "
                                                     "the segment URLs they name, unchecked by blocked_networks)")
    max_cameras_per_tenant: int = Field(16, gt=0)
    open_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(10.0, gt=0)
    max_initial_attempts: int = Field(5, ge=0, description="failures before a never-opened source is 'failed' "
                                                           "(0 = retry forever); a source that ran is retried forever")
    rematch_interval_s: float = Field(0.5, ge=0, description="an unmatched track is embedded again at most this often")
    track_shots: int = Field(3, ge=1, le=16, description=(
        "a track is named from its best this-many shots combined; its decisions together spend the preset's "
        "rate once (watcher/evidence.py)"))
    tiles_per_frame: int = Field(1, ge=0, le=4, description="2x2 tiles scanned per frame on >= 720p frames, in turn "
                                                            "(4 = all every frame)")
    restart_initial_s: float = Field(1.0, gt=0, description="first delay before restarting a crashed worker")
    restart_max_s: float = Field(60.0, gt=0)
    watchdog_s: float = Field(30.0, gt=0, description="a worker silent this long is killed and restarted")
    lease_ttl_s: float = Field(6.0, ge=1, description="a camera whose node has not renewed its lease for this long "
                                                      "is taken over by a live node (renewed every third of it)")
    cameras: list[DeclaredCamera] = Field(default_factory=list)

    @field_validator("blocked_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        parse_networks(value)  # a ValueError names the one that is not a network
        return value


class JobsConfig(Section):
    lease_ttl_s: float = Field(10.0, ge=1, description="a job whose node has not renewed its lease for this long "
                                                       "is resumed by another node (renewed every third of it)")


class GroupingConfig(Section):
    enabled: bool = Field(True, description="group the watchers' face.unknown faces (and serve the /groups routes)")
    # Chosen with bench/grouping.py on LFW View 1 (see docs/grouping.md).
    threshold: float = Field(0.52, ge=-1, le=1, description="average-linkage similarity for a face to join a group")
    merge_threshold: float = Field(0.52, ge=-1, le=1, description="refinement merges groups at least this similar")
    refine_interval_s: float = Field(60.0, gt=0)
    promote_faces: int = Field(5, gt=0, description="best faces a promoted group is enrolled with")


class MetricsConfig(Section):
    """GET <path> on the API port, in Prometheus' text format, for a bearer token of its own: not a
    tenant's credential (the figures span every tenant)."""

    enabled: bool = True
    path: str = Field("/metrics", pattern=r"^/[A-Za-z0-9_./-]*$")
    token: str | None = Field(None, min_length=16, description="the bearer token scrapers send; null = a random "
                                                               "one generated into <data_dir>/metrics-token (0600)")


_DAY_S = 86400.0


class SightingsRetentionConfig(Section):
    """What tenants that set none keep, by the time a sighting was seen (seconds; null: for ever)."""

    recognized_s: float | None = Field(365 * _DAY_S, gt=0, description="recognised sightings are deleted after")
    unknown_s: float | None = Field(90 * _DAY_S, gt=0, description="unknown (and erased) sightings are deleted after")
    crop_s: float | None = Field(30 * _DAY_S, gt=0, description="crops are dropped after (the sighting stays)")
    embedding_s: float | None = Field(90 * _DAY_S, gt=0, description="embeddings are dropped after (no longer "
                                                                     "found by face; the sighting stays)")


class SightingsConfig(Section):
    enabled: bool = Field(True, description="store every face.recognized and face.unknown as a sighting (and serve "
                                            "the /sightings routes)")
    batch_size: int = Field(200, gt=0, le=10_000, description="sightings written per transaction at most")
    batch_wait_s: float = Field(0.2, ge=0, description="a batch waits this long after its first sighting for more")
    prefetch: int = Field(1000, gt=0, description="queued events in flight to this node, unacknowledged")
    retention: SightingsRetentionConfig = SightingsRetentionConfig()
    retention_interval_s: float = Field(3600.0, gt=0, description="how often retention runs")
    partition_s: float = Field(_DAY_S, gt=0, description="time span of one partition of the search index")
    search: SearchConfig = SearchConfig()
    relabel_delay_s: float = Field(2.0, ge=0, description="retroactive naming waits this long after a subject's "
                                                          "last new face (a burst makes one pass)")
    relabel_max_candidates: int = Field(10_000, gt=0, description="nearest sightings weighed per face of the subject")

    @model_validator(mode="after")
    def _prefetch_holds_a_batch(self) -> "SightingsConfig":
        if self.prefetch < self.batch_size:
            raise ValueError("prefetch must be at least batch_size")
        return self


class ConsoleConfig(Section):
    """The web console at / on the API port: a client of the public REST and STOMP APIs."""

    enabled: bool = Field(True, description="serve the console's pages at / and its files under /assets/")


class MqttTlsConfig(Section):
    enabled: bool = Field(False, description="connect over TLS (brokers listen on 8883 for it)")
    ca_file: str | None = Field(None, description="PEM CA bundle the broker's certificate is checked against; "
                                                  "null = the system's CAs")
    cert_file: str | None = Field(None, description="client certificate (PEM), for brokers that ask for one")
    key_file: str | None = Field(None, description="its unencrypted private key (PEM)")
    verify_hostname: bool = Field(True, description="check the certificate names the host")

    @model_validator(mode="after")
    def _pair(self) -> "MqttTlsConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class MqttConfig(Section):
    """The MQTT bridge: camera events published to an MQTT broker (Mosquitto, RabbitMQ's MQTT plugin ...)
    for Home Assistant, Node-RED and the like."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(1883, gt=0, lt=65536)
    username: str | None = None
    password: str | None = Field(None, description="with username; FACEWATCH_MQTT__PASSWORD keeps it out of the file")
    client_id: str | None = Field(None, max_length=128, description="null = facewatch-<watcher node>")
    tls: MqttTlsConfig = MqttTlsConfig()
    topic_prefix: str = Field("facewatch", pattern=r"^[^#+/\x00]+(/[^#+/\x00]+)*$",
                              description="topics are <prefix>/<camera>/<event type>")
    cameras: list[Annotated[str, Field(pattern=CAMERA_ID.pattern)]] = Field(
        default_factory=list, description="the cameras whose events are published; empty = every camera")
    events: list[str] = Field(default_factory=list, description="event types published; empty = every type")
    strip: list[str] = Field(default_factory=lambda: ["crop", "embedding"],
                             description="event fields left out of the MQTT payloads")
    qos: Literal[0, 1, 2] = 0
    keepalive_s: int = Field(60, ge=5)
    max_queue: int = Field(1000, gt=0, description="events waiting for the broker; beyond, the oldest is dropped")
    reconnect_initial_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> "MqttConfig":
        if self.password is not None and self.username is None:
            raise ValueError("password needs a username")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s is less than reconnect_initial_s")
        return self


class FacewatchConfig(Section):
    data_dir: str = Field("./data", description="SQLite, images and models live here")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object a line")
    runtime: RuntimeConfig = RuntimeConfig()
    models: ModelsConfig = ModelsConfig()
    quality: QualityConfig = QualityConfig()
    recognition: RecognitionConfig = RecognitionConfig()
    api: ApiConfig = ApiConfig()
    broker: BrokerConfig = BrokerConfig()
    storage: StorageConfig = StorageConfig()
    auth: AuthConfig = AuthConfig()
    sync: SyncConfig = SyncConfig()
    repo: RepoConfig = RepoConfig()
    watcher: WatcherConfig = WatcherConfig()
    jobs: JobsConfig = JobsConfig()
    grouping: GroupingConfig = GroupingConfig()
    metrics: MetricsConfig = MetricsConfig()
    sightings: SightingsConfig = SightingsConfig()
    console: ConsoleConfig = ConsoleConfig()
    mqtt: MqttConfig = MqttConfig()

    def storage_url(self) -> str:
        return self.storage.url or f"sqlite:///{Path(self.data_dir).resolve() / 'facewatch.db'}"

    def models_dir(self, pack_name: str) -> Path:
        if self.models.dir:
            return Path(self.models.dir)
        return Path(self.data_dir) / "models" / pack_name


def _absolute(value: Any, base: Path) -> Any:
    """``value`` (a path, or a list of them) made absolute against ``base``; anything else as it is."""
    if isinstance(value, str) and value:
        return os.path.normpath(base / Path(value).expanduser())
    if isinstance(value, list):
        return [_absolute(v, base) for v in value]
    return value


def _absolute_paths(data: dict[str, Any], base: Path) -> None:
    """The PATH_KEYS present in ``data`` (a config mapping), made absolute against ``base`` in place."""
    for key in PATH_KEYS:
        node: Any = data
        for part in key[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and key[-1] in node:
            node[key[-1]] = _absolute(node[key[-1]], base)


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[list[str], Any]]:
    overrides = []
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or len(name) == len(ENV_PREFIX) or name in NOT_CONFIG_ENV:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX):].split("__")]
        if any(not part for part in path):
            raise ConfigError(f"{name}: empty key part; use FACEWATCH_<SECTION>__<KEY>")
        try:
            # YAML scalars, so FACEWATCH_API__PORT=9000 is a number and [a, b] a list.
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        overrides.append((path, value))
    return overrides


def _apply(data: dict[str, Any], path: list[str], value: Any, source: str) -> None:
    node = data
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {'.'.join(path)} goes inside {part!r}, which is not a section")
        node = child
    node[path[-1]] = value


def _format_error(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(root)"
    if first["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    allowed = first.get("ctx", {}).get("expected")
    msg = first["msg"]
    if allowed and str(allowed) not in msg:
        msg = f"{msg} (allowed: {allowed})"
    more = len(error.errors()) - 1
    return f"{key}: {msg}" + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def parse_config(data: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None,
                 base_dir: Path | None = None) -> FacewatchConfig:
    """Validate ``data`` under the environment's overrides. ``base_dir``: what relative paths (PATH_KEYS)
    in ``data`` and the defaults are relative to, and they are made absolute (those of the environment
    against the current directory); None leaves every path as written."""
    merged: dict[str, Any] = dict(data or {})
    if base_dir is not None:
        _absolute_paths(merged, base_dir)
    for path, value in _env_overrides(os.environ if environ is None else environ):
        name = ENV_PREFIX + "__".join(p.upper() for p in path)
        if base_dir is not None and tuple(path) in PATH_KEYS:
            value = _absolute(value, Path.cwd())
        _apply(merged, path, value, name)
    try:
        cfg = FacewatchConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None
    if base_dir is not None and not os.path.isabs(cfg.data_dir):  # the default, ./data
        cfg = cfg.model_copy(update={"data_dir": _absolute(cfg.data_dir, base_dir)})
    return cfg


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> FacewatchConfig:
    """The config of the file at ``path`` (None: the built-in defaults), its relative paths made absolute
    against the file's folder (without a file, the current directory)."""
    data: Any = {}
    base_dir = Path.cwd()
    if path is not None:
        file = Path(path).absolute()
        base_dir = file.parent
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {file} not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {file}: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {file} must hold a mapping of sections")
    return parse_config(data, environ, base_dir)
