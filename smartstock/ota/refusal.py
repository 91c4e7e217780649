"""Why an update was refused: one exception with a short machine-readable reason code.

The reason code goes into `{base}/model/state` (`error`), the store's model history and the
technician tool's output, so a dashboard can count refusals by cause without parsing prose.
"""

from __future__ import annotations

from smartstock.errors import OtaRejected

# Reason codes (stable: dashboards and tests match on them).
MALFORMED = "malformed"                  # envelope or manifest is not what the format says
TOO_LARGE = "too_large"                  # envelope over the size cap
UNKNOWN_KEY = "unknown_key"              # key id not in the device's keyring
UNSAFE_KEY = "unsafe_key"                # key file is a symlink, not a regular file, or group/world-writable
BAD_SIGNATURE = "bad_signature"          # signature does not match the manifest bytes (tampered or wrong key)
KIND_MISMATCH = "kind_mismatch"          # envelope kind differs from the signed manifest's kind
UNSUPPORTED_KIND = "unsupported_kind"    # this device cannot run that kind of model
BAD_NAME = "bad_name"                    # artifact file name is not a plain file name (path traversal)
WRONG_TARGET = "wrong_target"            # neither this device id nor one of its groups is targeted
EXPIRED = "expired"                      # manifest past its expiry time
NOT_YET_VALID = "not_yet_valid"          # issued in the future (clock skew beyond tolerance)
CLOCK_UNSET = "clock_unset"              # the device's clock is obviously not set (before 2024): no time check holds
DOWNGRADE = "downgrade"                  # release not greater than installed (replay), downgrade not allowed
PREVIOUSLY_FAILED = "previously_failed"  # this exact artifact already failed here (no retry loop)
INSECURE_URL = "insecure_url"            # plain http to a non-loopback host without the config flag
FETCH_FAILED = "fetch_failed"            # transfer error (network, HTTP status)
OVERSIZED = "oversized"                  # more bytes than the manifest (or the config cap) allows
TRUNCATED = "truncated"                  # fewer bytes than the manifest says
HASH_MISMATCH = "hash_mismatch"          # sha256 of the received bytes differs from the signed one
LOAD_FAILED = "load_failed"              # the runtime cannot load the model file
WRONG_INPUT = "wrong_input"              # input name/shape/dtype differs from the running model's
WRONG_OUTPUT = "wrong_output"            # labels / output meaning differ from the running model's
UNFIT_MODEL = "unfit_model"              # its training judged it unfit for use (manifest metrics.fit_for_use false)
GOLDEN_FAILED = "golden_failed"          # the model does not reproduce its own golden samples
TRIAL_FAILED = "trial_failed"            # rolled back: error rate, speed or outputs went wrong in the trial
INSTALL_FAILED = "install_failed"        # disk problem while installing


class UpdateRefused(OtaRejected):
    """An update refused for `reason` (one of the codes above); the running model keeps serving."""

    def __init__(self, reason: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{reason}: {message}", hint=hint)
        self.reason = reason
        self.detail = message
