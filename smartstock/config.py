"""One validated configuration model, loaded from `smartstock.toml`.

Every section is its own model so a component receives only the part it needs. Unknown keys are
refused (a typo must not silently fall back to a default). Secrets never live in the file: the
MQTT password comes from an environment variable or a credentials file.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from smartstock.errors import ConfigError, first_problem
from smartstock.forecasting import FORECASTERS
from smartstock.sku import sku_problem
from smartstock.runtime.backends import BACKEND_CHOICES
from smartstock.runtime.providers import PROVIDER_CHOICES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib

ENV_STATE_DIR = "SMARTSTOCK_STATE_DIR"
ENV_CONFIG = "SMARTSTOCK_CONFIG"
DEFAULT_STATE_DIR = Path("state")
#: one MQTT topic level a device id, site, line or group may be (checked here and by every MQTT tool)
TOPIC_LEVEL = r"^[A-Za-z0-9_-]{1,64}$"
LEVEL = re.compile(TOPIC_LEVEL)


class Section(BaseModel):
    """Base for every config section: unknown keys are an error, values are re-validated on change."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DeviceConfig(Section):
    device_id: str = Field("line1-cam1", pattern=TOPIC_LEVEL,
                           description="Unique id of this device; used in MQTT topics and payloads")
    site: str = Field("plant", pattern=TOPIC_LEVEL, description="Site (plant) name, MQTT topic level")
    line: str = Field("line1", pattern=TOPIC_LEVEL, description="Production line name, MQTT topic level")
    groups: list[str] = Field(default_factory=list, description="Groups this device belongs to (OTA targeting)")
    state_dir: Path | None = Field(None, description="Directory for the SQLite store, models and snapshots "
                                   "(overridden by --state-dir or SMARTSTOCK_STATE_DIR)")


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level")


class SourceConfig(Section):
    uri: str = Field("", description="Camera index (0), V4L2 device (/dev/video0), GStreamer pipeline "
                     "(`... ! appsink`), rtsp:// or http:// URL, video file or image folder")
    kind: Literal["auto", "camera", "gstreamer", "stream", "video", "folder"] = Field(
        "auto", description="Source type; `auto` infers it from `uri`")
    fps: float = Field(0.0, ge=0.0, le=1000.0, description="Replay rate for files and folders (0 = as fast as possible)")
    loop: bool = Field(False, description="Loop a file or folder source forever")
    width: int = Field(0, ge=0, le=8192, description="Requested capture width (0 = camera default)")
    height: int = Field(0, ge=0, le=8192, description="Requested capture height (0 = camera default)")
    stall_timeout_s: float = Field(5.0, gt=0.0, le=3600.0, description="No frame for this long -> reopen the source")
    backoff_max_s: float = Field(30.0, gt=0.0, le=3600.0, description="Longest wait between reopen attempts")


def _checked_sku(v: str) -> str:
    """A SKU field's validator (inspection.sku and each [[sources]] sku)."""
    problem = sku_problem(v)
    if problem:
        raise ValueError(problem)
    return v


CAMERA_ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"  # one MQTT topic level: no '/', '+', '#' or spaces
DEFAULT_CAMERA_ID = "cam1"


class CameraConfig(SourceConfig):
    """One of several cameras (`[[sources]]`): where frames come from plus what this camera inspects."""

    id: str = Field(pattern=CAMERA_ID_PATTERN, description="Camera id, unique on this device; an MQTT topic level "
                    "and a metrics label (letters, digits, '_' and '-', up to 32)")
    sku: str = Field(min_length=1, max_length=64, description="SKU booked for parts this camera sees")
    trigger: Literal["every", "nth", "motion"] = Field("every", description="Which frames are parts")
    every_n: int = Field(1, ge=1, le=10000, description="With trigger=nth: inspect every Nth frame")
    motion_threshold: float = Field(12.0, gt=0.0, le=255.0,
                                    description="With trigger=motion: mean absolute ROI change that means a new part")
    roi: tuple[int, int, int, int] | None = Field(None, description="Region of interest [x, y, width, height] in "
                                                  "pixels: the motion trigger watches it and the model sees only it "
                                                  "(vision.roi, if set, then applies within it)")
    snapshot_max_mb: float | None = Field(None, ge=0.0, le=1_000_000.0,
                                          description="This camera's snapshot quota (default: inspection.snapshot_max_mb)")

    _valid_sku = field_validator("sku")(classmethod(lambda cls, v: _checked_sku(v)))


class VisionConfig(Section):
    model: Path | None = Field(None, description="Defect model file (.onnx or .tflite) with manifest.json beside it; "
                               "empty = the shipped default model")
    backend: Literal[BACKEND_CHOICES] = Field(  # type: ignore[valid-type]  # from the backend registry
        "auto", description="Inference runtime; `auto` picks by file type")
    providers: list[Literal[PROVIDER_CHOICES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["auto"], min_length=1,
        description="ONNX Runtime execution providers in priority order: auto (TensorRT, then CUDA, then CPU, as "
                    "the installed onnxruntime offers), tensorrt, cuda, cpu; a missing one is skipped with a warning")
    trt_fp16: bool = Field(False, description="Let TensorRT run the model in FP16 (golden samples then use the "
                           "FP16 tolerance)")
    io_binding: bool = Field(False, description="ONNX models: run through an IO binding with preallocated output "
                             "buffers (for GPU providers; no gain measured on CPU, so off by default)")
    threads: int = Field(2, ge=1, le=64, description="CPU threads for inference, shared by the workers")
    workers: int = Field(0, ge=0, le=16, description="Inference workers running batches in parallel; 0 = one per "
                         "thread, each with a single-threaded runtime (on a small CNN this beats one runtime "
                         "using all threads: see benchmarks/bench_edge.py)")
    batch_max: int = Field(8, ge=1, le=256, description="Largest batch a worker takes when it is behind")
    batch_wait_ms: float = Field(0.0, ge=0.0, le=100.0, description=(
        "Once a part is waiting, wait up to this long for the batch to fill (a GPU runs a full batch for "
        "about the cost of one; 0 on a CPU, where it only adds latency)"))
    preprocess_in_capture: bool = Field(False, description=(
        "Make the model's input (crop, colour, resize) in each camera's capture thread instead of the "
        "inference workers: meant for a GPU, where the workers should only feed the model; on a CPU it "
        "made one camera's capture thread the bottleneck (benchmarks/bench_edge.py), so off by default"))
    roi: tuple[int, int, int, int] | None = Field(None, description="Region of interest [x, y, width, height] in pixels")
    thresholds: dict[str, float] = Field(default_factory=dict,
                                         description="Per-class score thresholds overriding the manifest's")

    @property
    def worker_count(self) -> int:
        """Inference workers the loop runs (`workers`, or one per thread when 0)."""
        return self.workers or self.threads

    @property
    def threads_per_worker(self) -> int:
        """Intra-op threads of each worker's runtime: the threads shared out, at least one each."""
        return max(1, self.threads // self.worker_count)

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, v: dict[str, float]) -> dict[str, float]:
        for label, t in v.items():
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"threshold for {label!r} must be between 0 and 1, got {t}")
        return v


class InspectionConfig(Section):
    sku: str = Field("PART-001", min_length=1, max_length=64, description="SKU booked for parts this camera sees")
    good_labels: list[str] = Field(default_factory=lambda: ["ok"], description="Labels that count as good parts")
    trigger: Literal["every", "nth", "motion"] = Field("every", description="Which frames are parts")
    every_n: int = Field(1, ge=1, le=10000, description="With trigger=nth: inspect every Nth frame")

    _valid_sku = field_validator("sku")(classmethod(lambda cls, v: _checked_sku(v)))
    motion_threshold: float = Field(12.0, gt=0.0, le=255.0,
                                    description="With trigger=motion: mean absolute ROI change that means a new part")
    queue_size: int = Field(16, ge=1, le=4096, description="Frames buffered between capture and inference")
    snapshots: bool = Field(True, description="Save a JPEG of each defective part")
    snapshot_max_mb: float = Field(200.0, ge=0.0, le=1_000_000.0, description="Disk quota for snapshots (oldest deleted first)")
    uncertain_margin: float = Field(0.1, ge=0.0, le=1.0,
                                    description="Also snapshot parts whose score is within this of the decision "
                                                "threshold, as `uncertain` (for operator labels and `smartstock "
                                                "dataset export`); 0 = off. Shares the snapshot quota")


class ForecastConfig(Section):
    model: Literal[FORECASTERS] = Field(  # type: ignore[valid-type]  # every registered forecaster
        "auto", description="Forecasting method; `auto` picks per SKU by backtest")
    freq: Literal["D", "W", "M", "Q"] = Field("W", description="Bucket size for demand history")
    horizon: int = Field(8, ge=1, le=365, description="Periods to forecast")
    season_length: int = Field(0, ge=0, le=366, description="Season length in periods (0 = from freq)")
    lstm_model: Path | None = Field(None, description="Exported LSTM (.tflite/.onnx) with its manifest")
    refresh_interval_s: float = Field(3600.0, ge=10.0, le=7 * 86400.0, description="How often the device re-forecasts")
    interval_level: float = Field(0.9, gt=0.5, lt=1.0, description="Prediction interval coverage")
    gap_periods: int = Field(8, ge=1, le=520,
                             description="A stretch of more than this many periods (of `freq`) in which no SKU "
                                         "sold anything is a data gap (missing export), not zero demand: plans "
                                         "use the history before it and are flagged stale")


class SkuPolicy(Section):
    """Inventory policy inputs of one SKU. Costs are per unit; demand and holding are per year."""

    order_cost: float = Field(50.0, ge=0.0, description="Cost per order or production set-up (S)")
    holding_cost: float = Field(2.0, gt=0.0, description="Holding cost per unit per year (H)")
    unit_cost: float = Field(10.0, ge=0.0, description="Purchase or production cost per unit")
    lead_time_days: float = Field(7.0, ge=0.0, le=3650.0, description="Replenishment lead time L in days")
    lead_time_std_days: float = Field(0.0, ge=0.0, le=3650.0, description="Standard deviation of the lead time")
    service_level: float = Field(0.95, gt=0.5, lt=1.0, description="Target: cycle service level or fill rate")
    service_type: Literal["cycle", "fill_rate"] = Field("cycle", description="What service_level means")
    review_period_days: float = Field(0.0, ge=0.0, le=365.0, description="Periodic review interval (0 = continuous review)")
    production_rate: float = Field(0.0, ge=0.0, description="Units per year the line can make (EPQ); 0 = bought in")
    backorder_cost: float = Field(0.0, ge=0.0, description="Backorder cost per unit per year (0 = no backorders)")
    annual_demand: float | None = Field(None, ge=0.0, description="Annual demand if there is no sales history yet")


class InventoryConfig(Section):
    defaults: SkuPolicy = Field(default_factory=SkuPolicy, description="Policy for SKUs not listed in `skus`")
    skus: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                            description="Per-SKU overrides of `defaults`, keyed by SKU")
    days_per_year: float = Field(365.0, ge=200.0, le=366.0, description="Working days in a year")

    @model_validator(mode="after")
    def _validate_skus(self) -> "InventoryConfig":
        for sku, over in self.skus.items():
            problem = sku_problem(sku)
            if problem:
                raise ValueError(f"inventory.skus: {problem}")
            try:
                SkuPolicy(**{**self.defaults.model_dump(), **over})
            except ValidationError as e:
                field, first = first_problem(e)
                raise ValueError(f"inventory.skus.{sku}.{field}: {first['msg']}") from None
        return self

    def policy_for(self, sku: str) -> SkuPolicy:
        """The SKU's policy: the defaults with the SKU's own overrides applied."""
        return SkuPolicy(**{**self.defaults.model_dump(), **self.skus.get(sku, {})})


class AlertsConfig(Section):
    defect_rate_threshold: float = Field(0.05, gt=0.0, le=1.0, description="Alert when the defect rate exceeds this")
    defect_window: int = Field(200, ge=10, le=1_000_000, description="Parts in the defect-rate window")
    low_stock: bool = Field(True, description="Alert when on-hand stock is at or below the reorder point")
    camera_down_after_s: float = Field(30.0, gt=0.0, le=86400.0, description="Alert when no frame for this long")


class RetentionConfig(Section):
    """How long per-part history is kept; pruned in short batches by the service's refresh loop."""

    inspections_days: float = Field(90.0, ge=0.0, le=36500.0,
                                    description="Delete inspections older than this many days (0 = keep forever)")
    movements_days: float = Field(90.0, ge=0.0, le=36500.0,
                                  description="Delete stock movements older than this many days (0 = keep forever); "
                                              "on-hand totals and movements booked for sales are kept")
    batch_rows: int = Field(5000, ge=100, le=1_000_000,
                            description="Rows deleted per table per transaction, every few seconds until caught up")


class TlsConfig(Section):
    ca_file: Path | None = Field(None, description="CA certificate (PEM) that signed the broker's certificate")
    cert_file: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS")
    key_file: Path | None = Field(None, description="Client private key (PEM) for mutual TLS")
    insecure: bool = Field(False, description="Skip host name verification (testing only)")


class MqttConfig(Section):
    enabled: bool = Field(False, description="Publish to an MQTT broker")
    host: str = Field("localhost", min_length=1, description="Broker host name")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 for TLS)")
    protocol: Literal["3.1.1", "5"] = Field("5", description="MQTT protocol version")
    tls: TlsConfig | None = Field(None, description="TLS settings; when set, plaintext is refused")
    username: str | None = Field(None, description="User name (password from password_env or password_file)")
    password_env: str = Field("SMARTSTOCK_MQTT_PASSWORD", description="Environment variable holding the password")
    password_file: Path | None = Field(None, description="File holding the password (first line)")
    prefix: str = Field("smartstock", pattern=r"^[A-Za-z0-9_/-]{1,64}$", description="Topic prefix")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive")
    inflight: int = Field(32, ge=1, le=1000, description="Unacknowledged QoS 1 messages in flight")
    batch_events: int = Field(1, ge=1, le=1000, description="Inspection events per message (1 = one per part)")
    stats_interval_s: float = Field(10.0, ge=1.0, le=3600.0, description="How often state/stats are published")
    outbox_max_rows: int = Field(1_000_000, ge=100, description="Outbox cap in rows")
    outbox_max_mb: float = Field(512.0, ge=1.0, description="Outbox cap in megabytes")
    outbox_max_age_days: float = Field(30.0, gt=0.0, description="Telemetry older than this is dropped")
    sales_topic: str | None = Field(None, description="Topic on which sales records arrive (None = {base}/sales/in)")
    max_payload_kb: int = Field(256, ge=1, le=65536, description="Inbound payloads larger than this are refused")
    max_packet_kb: int | None = Field(None, ge=1, le=262_143,
                                      description="MQTT 5 Maximum Packet Size sent on connect: the broker drops "
                                                  "anything larger before it reaches the device (None = the "
                                                  "largest of max_payload_kb, the OTA envelope cap and, with OTA "
                                                  "on, ota.max_artifact_mb)")
    reply_prefix: str | None = Field(None, pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_/-]{0,127}$",
                                     description="MQTT 5 response topics are honoured only under {base}/response/ or "
                                                 "under this prefix (e.g. \"replies/technicians\"); others get the "
                                                 "default {base}/response/<name>")
    ha_discovery: bool = Field(True, description="Publish Home Assistant discovery")
    ha_prefix: str = Field("homeassistant", description="Home Assistant discovery prefix")
    client_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                                  description="MQTT client id (None = smartstock-<device_id>)")
    historical_after_s: float = Field(60.0, ge=0.0, le=30 * 86400.0,
                                      description="Rows older than this when published carry \"historical\": true")
    reconnect_min_s: float = Field(1.0, gt=0.0, le=3600.0, description="First wait before reconnecting (doubles)")
    reconnect_max_s: float = Field(60.0, gt=0.0, le=3600.0, description="Longest wait between reconnect attempts")
    drain_on_stop_s: float = Field(3.0, ge=0.0, le=3600.0,
                                   description="On shutdown, wait up to this long for the outbox to empty "
                                               "(what is left is sent after the next start)")

    def password(self) -> str | None:
        """The broker password from the environment or the credentials file; never from the TOML file."""
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").splitlines()[0].strip()
            except (OSError, IndexError) as e:
                raise ConfigError(f"mqtt.password_file: cannot read {self.password_file}: {e}",
                                  hint="create the file with the password on its first line, readable by the service") from None
        return os.environ.get(self.password_env)


class OtaConfig(Section):
    enabled: bool = Field(True, description="Accept signed model updates over MQTT")
    keyring_dir: Path | None = Field(None, description="Directory of trusted Ed25519 public keys (<key_id>.pub)")
    allow_downgrade: bool = Field(False, description="Accept a lower release when its signed manifest allows it")
    max_artifact_mb: float = Field(200.0, gt=0.0, le=10_000.0, description="Largest model file accepted")
    trial_frames: int = Field(200, ge=1, le=1_000_000, description="Frames the new model must serve in its trial")
    trial_max_s: float = Field(600.0, gt=0.0, le=86400.0, description="Longest trial before a decision")
    trial_max_error_rate: float = Field(0.05, ge=0.0, le=1.0,
                                        description="Roll back when the new model fails on more than this share of frames")
    trial_max_defect_rate_jump: float = Field(0.25, gt=0.0, le=1.0,
                                              description="Roll back when the defect rate rises by more than this "
                                              "(absolute) over the previous model's")
    trial_max_slowdown: float = Field(3.0, gt=1.0, le=100.0,
                                      description="Roll back when inference takes more than this many times longer")
    allow_http: bool = Field(False, description="Allow plain-http artifact URLs to non-loopback hosts "
                             "(the sha256 is still enforced); https is always allowed")
    artifact_timeout_s: float = Field(600.0, gt=0.0, le=86400.0,
                                      description="How long to wait for a retained MQTT artifact after its envelope")


class HttpConfig(Section):
    enabled: bool = Field(True, description="Serve /healthz, /api/status, /metrics and the status page")
    host: str = Field("127.0.0.1", description="Address to bind (0.0.0.0 to reach it from the plant network)")
    port: int = Field(8080, ge=0, le=65535, description="Port (0 = any free port)")
    read_timeout_s: float = Field(10.0, gt=0.0, le=300.0,
                                  description="A client that sends nothing for this long is disconnected")
    max_connections: int = Field(32, ge=1, le=1024,
                                 description="Connections served at once; more are closed at once")


class Config(Section):
    device: DeviceConfig = Field(default_factory=DeviceConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    source: SourceConfig = Field(default_factory=SourceConfig)
    sources: list[CameraConfig] = Field(default_factory=list, max_length=32,
                                        description="Several cameras on this device ([[sources]]); empty = the one "
                                        "camera of [source] and inspection.sku, with id \"cam1\"")
    vision: VisionConfig = Field(default_factory=VisionConfig)
    inspection: InspectionConfig = Field(default_factory=InspectionConfig)
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)
    inventory: InventoryConfig = Field(default_factory=InventoryConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    ota: OtaConfig = Field(default_factory=OtaConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)

    @model_validator(mode="after")
    def _unique_camera_ids(self) -> "Config":
        seen: set[str] = set()
        for cam in self.sources:
            if cam.id in seen:
                raise ValueError(f"sources: camera id {cam.id!r} is used twice; give every [[sources]] its own id")
            seen.add(cam.id)
        if self.sources and self.source.uri.strip():
            raise ValueError("both [source] and [[sources]] are set: list the first camera as a [[sources]] entry too")
        return self

    def cameras(self) -> list[CameraConfig]:
        """Every camera this device inspects: `[[sources]]`, or the one-camera shortcut ([source] with
        inspection.sku, trigger and vision.roi) as camera "cam1"."""
        if self.sources:
            return list(self.sources)
        ins = self.inspection
        return [CameraConfig(**self.source.model_dump(), id=DEFAULT_CAMERA_ID, sku=ins.sku, trigger=ins.trigger,
                             every_n=ins.every_n, motion_threshold=ins.motion_threshold, roi=self.vision.roi)]

    def camera_skus(self) -> list[str]:
        """The SKUs booked by the cameras, in camera order, each once."""
        return list(dict.fromkeys(c.sku for c in self.cameras()))


def _hint_for(loc: tuple[Any, ...]) -> str:
    """The field's description, found by walking the models along the error location."""
    model: Any = Config
    field = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            break
        field = fields[part]
        ann = field.annotation
        model = next((a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            break
    return field.description if field is not None and field.description else ""


def format_validation_error(err: ValidationError, source: str) -> list[str]:
    """One line per problem: `file: key: message (hint: ...)`."""
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see smartstock.example.toml)"
        hint = _hint_for(tuple(e["loc"]))
        lines.append(f"{source}: {key}: {msg}" + (f" (expected: {hint})" if hint and e["type"] != "extra_forbidden" else ""))
    return lines


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        problems = format_validation_error(e, source)
        raise ConfigError(f"{source}: {len(problems)} problem(s) in the configuration", problems=problems,
                          hint="fix the keys named above; `smartstock config check FILE` lists them all") from None


def load_config(path: Path | str | None = None) -> Config:
    """Load and validate a TOML config; no path (and no SMARTSTOCK_CONFIG) means the embedded defaults."""
    if path is None and os.environ.get(ENV_CONFIG):
        path = os.environ[ENV_CONFIG]
    if path is None:
        return Config()
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found",
                          hint="pass an existing file, or copy smartstock.example.toml") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file", hint="save the config as UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: TOML syntax error: {e}", hint="check quoting and brackets on that line") from None
    return parse_config(data, str(path))


def resolve_state_dir(cli_value: Path | str | None, config: Config) -> Path:
    """--state-dir, then SMARTSTOCK_STATE_DIR, then systemd's STATE_DIRECTORY, then the config, then ./state."""
    systemd_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    for candidate in (cli_value, os.environ.get(ENV_STATE_DIR), systemd_dir, config.device.state_dir):
        if candidate:
            return Path(candidate)
    return DEFAULT_STATE_DIR
