"""Every OTA step goes to the store's model_history and to the retained `{base}/model/state`.

Both are written in one transaction (the outbox row with the history row), so what a dashboard
sees is what the device recorded. The payload carries Home Assistant `update` entity keys
(installed_version, latest_version, in_progress, title, release_summary, and `kind`) of the defect
model whenever the device has one; status/progress/error/detail describe the step just taken, of
`step_kind`; a `models` map holds every kind's state.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from smartstock.store.db import Store, utcnow
from smartstock.sync.outbox import PRIORITY_STATE, enqueue
from smartstock.sync.payloads import message

logger = logging.getLogger(__name__)

KV_KEY = "ota.state"
TITLES = {"defect-classifier": "SmartStock defect model", "demand-forecaster": "SmartStock demand model"}
IN_PROGRESS = {"verifying", "downloading", "installing", "trial"}
FAILED = {"refused", "rolled_back", "disabled"}  # `ota status` / `ota push --wait` exit 7 on these
DONE = {"committed", "up_to_date"} | FAILED     # where `ota push --wait` stops following


class StateReporter:
    """Keeps each kind's latest OTA state; `report()` records and publishes one step."""

    def __init__(self, store: Store | None, topic: str | None, device_id: str) -> None:
        self.store, self.topic, self.device_id = store, topic, device_id
        self.models: dict[str, dict[str, Any]] = {}
        if store is not None:
            try:
                self.models = json.loads(store.get_kv(KV_KEY) or "{}")
            except ValueError:
                self.models = {}

    def report(self, kind: str, status: str, *, release: int | None = None, sha256: str | None = None,
               model_id: str | None = None, installed: dict[str, Any] | None = None, error: str | None = None,
               detail: str = "", progress: int | None = None, summary: str | None = None,
               serving: str | None = None) -> dict[str, Any]:
        """Record one step. `release/sha256/model_id` describe the release acted on; `installed` what now serves."""
        st = self.models.setdefault(kind, {"installed_version": None, "latest_version": None, "serving": None})
        if installed is not None:
            st["installed_version"] = str(installed["release"]) if installed.get("release") is not None else None
            st["installed_sha256"] = installed.get("sha256")
            st["installed_model_id"] = installed.get("model_id")
        if serving is not None:
            st["serving"] = serving
        if release is not None and status not in ("refused",):
            st["latest_version"] = str(release)
        if summary is not None:
            st["release_summary"] = summary
        # step_sha256: the artifact this step was about (None for junk refused before its signature was read),
        # so `ota rollout` tells a refusal of its release from a stale one or from someone else's junk
        st.update(status=status, error=error, detail=detail, progress=progress, in_progress=status in IN_PROGRESS,
                  updated_at=utcnow(), step_sha256=sha256)
        if st.get("latest_version") is None or status == "up_to_date":  # the offered artifact already serves
            st["latest_version"] = st.get("installed_version")
        # The HA `update` entity ("Defect model") reads the top-level keys: they always describe the defect
        # model when there is one; status/error/detail describe the step just taken (of `kind`).
        ha_kind = "defect-classifier" if "defect-classifier" in self.models else kind
        ha = self.models[ha_kind]
        payload = message(self.device_id, kind=ha_kind, step_kind=kind, title=TITLES.get(ha_kind, ha_kind),
                          installed_version=ha.get("installed_version"), latest_version=ha.get("latest_version"),
                          in_progress=bool(ha.get("in_progress")), release_summary=ha.get("release_summary", ""),
                          update_percentage=ha.get("progress") if ha.get("in_progress") else None,
                          status=status, progress=progress, error=error, detail=detail,
                          serving=ha.get("serving"), models=self.models)
        log = logger.warning if status in FAILED | {"fallback"} else logger.info
        log("OTA %s: %s%s%s", kind, status, f" release {release}" if release is not None else "",
            f" ({error}: {detail})" if error else f" ({detail})" if detail else "")
        if self.store is not None:
            with self.store.transaction() as conn:
                conn.execute("INSERT INTO model_history(ts, kind, model_id, release, sha256, status, detail) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (utcnow(), kind, model_id, release, sha256, status,
                              f"{error}: {detail}" if error else detail))
                conn.execute("INSERT INTO kv(key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE "
                             "SET value = excluded.value, updated_at = excluded.updated_at",
                             (KV_KEY, json.dumps(self.models), utcnow()))
                if self.topic:
                    enqueue(conn, self.topic, payload, retain=True, priority=PRIORITY_STATE)
        return payload
