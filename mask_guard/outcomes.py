"""What the daemon does with a frame's decisions: alerts and counts (the end of the one-way flow), and
telling the listeners beyond them (outputs.py: MQTT, a GPIO lamp, the alert command)."""
from __future__ import annotations

import logging
from typing import Optional

from .alerts import Alerter
from .counts import Counts
from .outputs import Outputs
from .pipeline import FrameResult
from .votes import Decision

log = logging.getLogger(__name__)


class Outcomes:
    def __init__(self, alerter: Optional[Alerter], counts: Counts, outputs: Optional[Outputs] = None):
        self.alerter = alerter
        self.counts = counts
        self.outputs = outputs
        self.last_alert: Optional[dict] = None
        self._in_view = 0

    def apply(self, result: FrameResult) -> list[int]:
        """Count new people and decisions; alert on each 'no mask' decision. Returns ids alerted."""
        alerted = self._count_and_alert(result)
        if self.outputs is not None:
            for ch in result.changes:
                self.outputs.decision(ch.track_id, ch.new.value, ch.old.value, result.frame.index)
            for tid in alerted:
                self.outputs.alert(tid, result.frame.index)
            if result.new_people or result.changes or alerted or result.people_in_view != self._in_view:
                self._in_view = result.people_in_view
                self.outputs.changed()
        return alerted

    def _count_and_alert(self, result: FrameResult) -> list[int]:
        alerted = []
        for _ in result.new_people:
            self.counts.person_seen()
        for ch in result.changes:
            self.counts.decided(ch.new.value, ch.old.value)
            log.info("person %d decided %s (was %s)", ch.track_id, ch.new.value, ch.old.value)
        if self.alerter is None:
            return alerted
        # Every frame, not only on a change: the policy decides (cooldown, quiet hours, re-alert interval),
        # so a person decided during a cooldown is still alerted once it ends.
        for tid, (_, _, decision) in result.tallies.items():
            if decision is Decision.NO_MASK and self.alerter.on_no_mask(tid):
                self.counts.alert_played()
                alerted.append(tid)
                self.last_alert = {"track_id": tid, "frame": result.frame.index, "timestamp": result.frame.timestamp}
                log.warning("ALERT: person %d without a mask (frame %d)", tid, result.frame.index)
        return alerted

    def status(self) -> dict:
        return self.outputs.status() if self.outputs is not None else {}

    def reconfigure(self, cfg) -> None:
        """After a reload: rebuild the listeners whose settings changed (alerter and counts: reload.py)."""
        if self.outputs is not None:
            self.outputs.reconfigure(cfg)

    def close(self) -> None:
        if self.alerter is not None:
            self.alerter.close()
        if self.outputs is not None:
            self.outputs.close()
