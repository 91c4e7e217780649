"""The device's state: one SQLite file in WAL mode, numbered migrations, small typed helpers."""

from smartstock.store.db import STORE_FILENAME, Store, open_store, utcnow

__all__ = ["STORE_FILENAME", "Store", "open_store", "utcnow"]
