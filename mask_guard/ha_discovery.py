"""Home Assistant MQTT discovery: one device per appliance, one sensor per figure of the ``state`` topic.

Each sensor is a retained config message at ``<prefix>/sensor/<node>/<key>/config`` (Home Assistant's
documented discovery topic) that reads its value from the retained JSON on ``<base>/state`` with a
``value_template`` and its availability from ``<base>/availability`` (``offline`` is the last will).
"""
from __future__ import annotations

import json
import re

from . import __version__

# key, name, value_template, extra options (Home Assistant's MQTT sensor options)
SENSORS: tuple[tuple[str, str, str, dict], ...] = (
    ("people", "People today", "{{ value_json.today.people }}",
     {"state_class": "total_increasing", "unit_of_measurement": "people", "icon": "mdi:account-group"}),
    ("masked", "Masked today", "{{ value_json.today.masked }}",
     {"state_class": "total_increasing", "unit_of_measurement": "people", "icon": "mdi:face-mask"}),
    ("unmasked", "Unmasked today", "{{ value_json.today.unmasked }}",
     {"state_class": "total_increasing", "unit_of_measurement": "people", "icon": "mdi:face-mask-outline"}),
    ("alerts", "Alerts today", "{{ value_json.today.alerts }}",
     {"state_class": "total_increasing", "unit_of_measurement": "alerts", "icon": "mdi:bullhorn"}),
    ("masked_share", "Masked share today", "{{ value_json.masked_share }}",
     {"state_class": "measurement", "unit_of_measurement": "%", "icon": "mdi:percent"}),
    ("in_view", "People in view", "{{ value_json.in_view }}",
     {"state_class": "measurement", "unit_of_measurement": "people", "icon": "mdi:eye"}),
    ("camera", "Camera", "{{ value_json.camera }}", {"icon": "mdi:cctv", "entity_category": "diagnostic"}),
    # "None" is Home Assistant's "no value" (unknown) for a sensor
    ("last_alert", "Last alert", "{{ value_json.last_alert.time if value_json.last_alert else None }}",
     {"device_class": "timestamp", "icon": "mdi:alarm-light"}),
    ("fps", "Frame rate", "{{ value_json.fps }}",
     {"state_class": "measurement", "unit_of_measurement": "fps", "entity_category": "diagnostic"}),
)


def node_id(client_id: str) -> str:
    """The discovery node id: Home Assistant allows only [a-zA-Z0-9_-] there."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", client_id)


def discovery_messages(prefix: str, base: str, client_id: str, hostname: str) -> list[tuple[str, str]]:
    """(topic, JSON payload) of every sensor's retained config message; [] when ``prefix`` is empty."""
    if not prefix:
        return []
    node = node_id(client_id)
    device = {"identifiers": [node], "name": f"mask-guard {hostname}", "manufacturer": "mask-guard",
              "model": "face-mask alert appliance", "sw_version": __version__}
    out = []
    for key, name, template, extra in SENSORS:
        payload = {"name": name, "unique_id": f"{node}_{key}", "state_topic": f"{base}/state",
                   "value_template": template, "availability_topic": f"{base}/availability",
                   "payload_available": "online", "payload_not_available": "offline", "device": device, **extra}
        out.append((f"{prefix}/sensor/{node}/{key}/config", json.dumps(payload, sort_keys=True)))
    return out
