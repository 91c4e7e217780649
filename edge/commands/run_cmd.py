"""`smartstock run`: the device service in the foreground (systemd, Docker or a terminal)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from smartstock.commands._common import add_config_option, load
from smartstock.config import Config, resolve_state_dir
from smartstock.errors import ConfigError
from smartstock.logs import setup_logging

if TYPE_CHECKING:
    from edge.app import App  # imported in run(): OpenCV and ONNX Runtime are heavy

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the inspection service in the foreground",
                       description="Capture, inspect, book stock, forecast, alert and sync until SIGTERM/SIGINT "
                                   "(or --max-frames parts). Options override the config file.")
    add_config_option(p)
    p.add_argument("--source", help="camera index, /dev/videoN, GStreamer pipeline, rtsp/http URL, video file or folder")
    p.add_argument("--model", type=Path, help="defect model (.onnx/.tflite with manifest.json beside it)")
    p.add_argument("--state-dir", type=Path, help="store, snapshots and http.port go here")
    p.add_argument("--sku", help="SKU booked for the parts this camera sees")
    p.add_argument("--device-id", help="device id used in MQTT topics and payloads")
    p.add_argument("--mqtt", metavar="URL", help="mqtt://[user:pass@]host:port or mqtts://... (enables MQTT)")
    p.add_argument("--http-host", help="address the status server binds (0.0.0.0 in a container)")
    p.add_argument("--http-port", type=int, help="status/metrics port (0 = any free port, written to STATE/http.port)")
    p.add_argument("--max-frames", type=int, metavar="N", help="exit 0 after N inspected parts (replays, tests)")
    p.add_argument("--loop", action="store_true", default=None,
                   help="loop a file or folder source (with [[sources]]: each one that does not set `loop`)")
    p.add_argument("--fps", type=float, help="replay rate for a file or folder, 0 = as fast as possible "
                   "(with [[sources]]: each one that does not set `fps`)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default=argparse.SUPPRESS,
                   help="log level (default: the config's)")
    p.set_defaults(func=run)


def apply_overrides(config: Config, args: argparse.Namespace) -> Config:
    """Command-line values win over the file; each is validated like the file's."""
    cfg = config.model_copy(deep=True)
    try:
        if args.source is not None:  # the one-camera shortcut: it replaces any [[sources]] of the file
            cfg.sources = []
            cfg.source.uri = args.source
        if args.loop:
            cfg.source.loop = True
        if args.fps is not None:
            cfg.source.fps = args.fps
        for cam in cfg.sources:  # several cameras: the default of each one whose entry does not set its own
            if args.loop and "loop" not in cam.model_fields_set:
                cam.loop = True
            if args.fps is not None and "fps" not in cam.model_fields_set:
                cam.fps = args.fps
        if args.model is not None:
            cfg.vision.model = args.model
        if args.sku is not None:
            cfg.inspection.sku = args.sku
        if args.device_id is not None:
            cfg.device.device_id = args.device_id
        if args.http_host is not None:
            cfg.http.host = args.http_host
        if args.http_port is not None:
            cfg.http.port = args.http_port
            cfg.http.enabled = True
        if args.mqtt is not None:
            _apply_mqtt_url(cfg, args.mqtt)
    except ValueError as e:  # pydantic ValidationError is a ValueError
        first = e.errors()[0] if hasattr(e, "errors") else {"loc": ("?",), "msg": str(e)}
        raise ConfigError(f"command-line option: {'.'.join(map(str, first['loc']))}: {first['msg']}",
                          hint="see `smartstock run --help`") from None
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be >= 1, got {args.max_frames}")
    return cfg


def _apply_mqtt_url(cfg: Config, url: str) -> None:
    from smartstock.sync.client import config_from_url  # the one parser (refuses mqtt:// when TLS is configured)

    cfg.mqtt, password = config_from_url(cfg.mqtt, url, option="--mqtt")
    cfg.mqtt.enabled = True
    if password:
        # the password only lives in this process' environment, never in a file we write
        os.environ[cfg.mqtt.password_env] = password
        logger.warning("--mqtt carries a password: other users can see it in `ps`; prefer %s or mqtt.password_file",
                       cfg.mqtt.password_env)


def run(args: argparse.Namespace) -> int:
    config = apply_overrides(load(args), args)
    setup_logging(getattr(args, "log_level", None) or config.logging.level)
    state_dir = resolve_state_dir(args.state_dir, config)

    from edge.app import App  # heavy: OpenCV, ONNX Runtime

    app = App(config, state_dir, max_parts=args.max_frames)
    _install_signal_handlers(app)
    logger.info("smartstock run: device %s, state %s", config.device.device_id, state_dir)
    return app.run()


def _install_signal_handlers(app: App) -> None:
    def handler(signum: int, _frame: object) -> None:
        if app.stop_event.is_set():
            logger.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(130)
        app.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
