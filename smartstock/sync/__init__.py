"""MQTT sync: topic tree (`topics`), payloads (`payloads`), the SQLite outbox (`outbox`) and its
drainer (`drain`), the paho connection (`client`), Home Assistant discovery (`discovery`) and
inbound sales/commands (`inbound`). The worker thread that runs them lives in edge/sync_worker.py."""
