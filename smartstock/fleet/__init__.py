"""Fleet status: every device of a plant from its retained MQTT topics (`smartstock fleet status|serve`).

`collect(broker, prefix, site, wait_s)` takes one look and returns a `FleetView`; `build_rows(messages)`
is the pure part (topics and payloads in, rows out); `FleetWatch` keeps the subscription live for
the plant page.
"""

from smartstock.fleet.rows import DeviceRow, FleetView, build_rows, topic_filters
from smartstock.fleet.watch import FleetWatch, collect, mqtt_client

__all__ = ["DeviceRow", "FleetView", "FleetWatch", "build_rows", "collect", "mqtt_client", "topic_filters"]
