"""The release manifest: what a technician signs. It wraps the model's own manifest.json.

The model manifest (written at export, read by the runtime) says what the model is; the release
manifest adds what only an update needs: who it is for, until when, which release number it is,
whether it may replace a newer one, and the one artifact file with its size and sha256 (and
optionally an https URL). The model manifest travels as base64 of its exact bytes, so the device
installs byte-for-byte what was signed.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from smartstock.errors import first_problem
from smartstock.ota.refusal import MALFORMED, UpdateRefused

FORMAT_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArtifactRef(_Strict):
    name: str = Field(description="File name of the model inside its release folder; a plain name, checked by policy")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Lower-case hex sha256 of the file")
    size: int = Field(gt=0, description="Exact file size in bytes")
    url: str | None = Field(None, description="https URL to fetch it from; None = the retained MQTT artifact topic")


class TargetSpec(_Strict):
    devices: list[str] = Field(default_factory=list, description="Device ids this release is for")
    groups: list[str] = Field(default_factory=list, description="Device groups this release is for")
    any_device: bool = Field(False, description="Explicitly for every device that trusts the key")


class ReleaseManifest(_Strict):
    format: Literal[1] = FORMAT_VERSION
    kind: Literal["defect-classifier", "demand-forecaster"]
    model_id: str = Field(min_length=1, max_length=128)
    release: int = Field(ge=1, description="Monotonic release number (anti-rollback)")
    issued_at: dt.datetime
    expires: dt.datetime | None = Field(None, description="Not valid after this UTC time")
    allow_downgrade: bool = Field(False, description="May replace a higher release (needs the device's consent too)")
    summary: str = Field("", max_length=2000, description="Release notes (Home Assistant release_summary)")
    live_trial: bool = Field(False, description="Book the candidate's verdicts during its trial; by default it runs "
                                                "in shadow and the trusted model's verdicts are booked")
    target: TargetSpec
    artifact: ArtifactRef
    model_manifest: str = Field(description="base64 of the exact manifest.json bytes of the model")

    def model_manifest_bytes(self) -> bytes:
        return base64.b64decode(self.model_manifest.encode("ascii"), validate=True)

    def to_bytes(self) -> bytes:
        data = self.model_dump(mode="json")
        if not self.live_trial:  # left out when off: devices that predate the field still accept the release
            del data["live_trial"]
        return json.dumps(data, indent=2, sort_keys=True).encode("utf-8") + b"\n"


def parse_release(data: bytes) -> ReleaseManifest:
    """Parse the (already signature-checked) manifest bytes; any shape problem is MALFORMED."""
    try:
        obj = json.loads(data.decode("utf-8"))
        manifest = ReleaseManifest.model_validate(obj)
        manifest.model_manifest_bytes()
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UpdateRefused(MALFORMED, f"release manifest is not UTF-8 JSON: {e}") from None
    except ValidationError as e:
        where, first = first_problem(e)
        raise UpdateRefused(MALFORMED, f"release manifest field {where}: {first['msg']}",
                            hint="sign with the same SmartStock version as the device runs") from None
    except (binascii.Error, ValueError):
        raise UpdateRefused(MALFORMED, "release manifest field model_manifest is not valid base64") from None
    for field in ("issued_at", "expires"):
        value = getattr(manifest, field)
        if value is not None and value.tzinfo is None:
            raise UpdateRefused(MALFORMED, f"release manifest field {field} has no time zone (use UTC, ...Z)")
    return manifest
