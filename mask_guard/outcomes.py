"""What the daemon does with a frame's decisions: alerts and counts (the end of the one-way flow)."""
from __future__ import annotations

import logging
from typing import Optional

from .alerts import Alerter
from .counts import Counts
from .pipeline import FrameResult
from .votes import Decision

log = logging.getLogger(__name__)


class Outcomes:
    def __init__(self, alerter: Optional[Alerter], counts: Counts):
        self.alerter = alerter
        self.counts = counts
        self.last_alert: Optional[dict] = None

    def apply(self, result: FrameResult) -> list[int]:
        """Count new people and decisions; alert on each 'no mask' decision. Returns ids alerted."""
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
