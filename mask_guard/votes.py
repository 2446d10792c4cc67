"""Per-person mask decisions from per-frame verdicts: the street-camera write-up's thresholding + voting.

Only confident verdicts from faces allowed to vote (inside the area, big enough, frontal) count:
``mask`` is +1, ``no_mask`` is -1, ``mask_below_nose`` counts as configured, ``unsure`` does not vote.
The tally is clamped to +/- ``cap`` so a long-tracked person who takes the mask off (or puts it on) is
re-decided after at most ``cap + 1`` opposite votes instead of after as many as were ever cast.
A person is decided once ``decide_after`` votes have been cast (the number of votes, not the balance):
``mask`` while the tally is positive, ``no_mask`` while negative, ``undecided`` at exactly zero.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable, Optional

from .config import VotesConfig
from .detections import Verdict


class Decision(str, enum.Enum):
    UNDECIDED = "undecided"
    MASK = "mask"
    NO_MASK = "no_mask"


@dataclass(frozen=True)
class DecisionChange:
    """A person's decision moved from ``old`` to ``new`` with the vote just cast."""

    track_id: int
    old: Decision
    new: Decision


def vote_value(verdict: Verdict, cfg: VotesConfig) -> int:
    """+1 (mask), -1 (no mask) or 0 (no vote) for one per-frame verdict."""
    if verdict is Verdict.MASK:
        return 1
    if verdict is Verdict.NO_MASK:
        return -1
    if verdict is Verdict.MASK_BELOW_NOSE:
        return {"mask": 1, "no_mask": -1}.get(cfg.count_below_nose_as, 0)
    return 0  # UNSURE: a score between the thresholds is no evidence either way


@dataclass
class _Ballot:
    tally: int = 0
    count: int = 0
    decision: Decision = Decision.UNDECIDED


class VoteBook:
    """Votes per track id. Unknown ids read as undecided with no votes."""

    def __init__(self, cfg: VotesConfig):
        self.cfg = cfg
        self._ballots: dict[int, _Ballot] = {}

    def _decide(self, b: _Ballot) -> Decision:
        if b.count < self.cfg.decide_after or b.tally == 0:
            return Decision.UNDECIDED
        return Decision.MASK if b.tally > 0 else Decision.NO_MASK

    def vote(self, track_id: Optional[int], verdict: Verdict, eligible: bool = True) -> Optional[DecisionChange]:
        """Cast this frame's vote for a person; returns the change of decision it caused, if any.

        A face that is not ``eligible`` (outside the area, too small, not frontal), an ``unsure``
        verdict, or ``track_id`` None (a face not yet a person) casts no vote.
        """
        if track_id is None or not eligible:
            return None
        value = vote_value(Verdict(verdict), self.cfg)
        if value == 0:
            return None
        b = self._ballots.setdefault(track_id, _Ballot())
        b.count += 1
        b.tally = max(-self.cfg.cap, min(self.cfg.cap, b.tally + value))
        new = self._decide(b)
        if new is b.decision:
            return None
        change = DecisionChange(track_id, b.decision, new)
        b.decision = new
        return change

    def soften(self, track_id: int) -> None:
        """A re-identified person (tracker ReID): keep the decision, but let new evidence overturn it within
        ``decide_after`` votes, in case the face that came back is a stranger's."""
        b = self._ballots.get(track_id)
        if b is not None:
            k = self.cfg.decide_after
            b.tally = max(-k, min(k, b.tally))

    def decision(self, track_id: int) -> Decision:
        b = self._ballots.get(track_id)
        return b.decision if b else Decision.UNDECIDED

    def tally(self, track_id: int) -> int:
        """Mask votes minus no-mask votes, clamped to +/- cap."""
        b = self._ballots.get(track_id)
        return b.tally if b else 0

    def count(self, track_id: int) -> int:
        """Votes cast (either way, clamped or not)."""
        b = self._ballots.get(track_id)
        return b.count if b else 0

    def forget(self, track_ids: Iterable[int]) -> None:
        """Drop people who left (the tracker's ``removed_ids``)."""
        for tid in track_ids:
            self._ballots.pop(tid, None)

    def __contains__(self, track_id: object) -> bool:
        return track_id in self._ballots

    def __len__(self) -> int:
        return len(self._ballots)

    def ids(self) -> list[int]:
        return list(self._ballots)
