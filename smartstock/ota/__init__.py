"""Signed over-the-air model updates (no threads here; edge/ota_agent.py drives them).

envelope  the signed message on {base}/model/desired        keys     Ed25519 keys and the device keyring
release   the signed release manifest                        verify   signature first, then parsing
policy    target, expiry, anti-rollback, idempotency, names  fetch    https / MQTT artifact into staging
slots     current/previous symlinks and trial.json           install  load, contract, goldens, swap, trial
trial     live-frame watch and the commit/rollback rule      report   model_history + retained model/state
updater   offer -> fetch -> install -> poll                  sign     the technician side
"""
