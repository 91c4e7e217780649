"""One place that hides credentials in anything shown or logged (camera URIs, broker URLs, errors).

`rtsp://user:secret@cam/stream?token=abc` -> `rtsp://***@cam/stream?token=***`: the userinfo of every
URL in the text and the value of query parameters that usually carry a secret. Used for capture
source names, /api/status, the MQTT snapshot reply and, through the log formatter, every log line.
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#]*@")
_SECRET_PARAM = re.compile(r"(?i)([?&;](?:password|passwd|pass|pwd|secret|token|access_token|auth|apikey|api_key|key"
                           r"|sig|signature|user|username)=)[^&#\s'\"]*")


def redact(text: str) -> str:
    """`text` with URL userinfo and secret-looking query values replaced by `***`."""
    if "://" not in text and "=" not in text:
        return text
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(r"\1***@", text))
