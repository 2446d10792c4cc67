"""Vote book specification: the street-camera write-up's thresholding + voting per person."""
from __future__ import annotations

import pytest

from mask_guard.config import VotesConfig, config_from_dict
from mask_guard.detections import Verdict
from mask_guard.votes import Decision, DecisionChange, VoteBook, vote_value

M, N, B, U = Verdict.MASK, Verdict.NO_MASK, Verdict.MASK_BELOW_NOSE, Verdict.UNSURE


def cast(book: VoteBook, tid: int, verdicts, eligible: bool = True) -> list[DecisionChange]:
    changes = [book.vote(tid, v, eligible) for v in verdicts]
    return [c for c in changes if c is not None]


def test_decision_values_are_plain_strings():
    assert [d.value for d in Decision] == ["undecided", "mask", "no_mask"]
    assert Decision.NO_MASK == "no_mask"


def test_a_person_is_undecided_until_three_votes_are_cast():
    book = VoteBook(VotesConfig())
    assert book.vote(1, N) is None and book.vote(1, N) is None
    assert book.decision(1) is Decision.UNDECIDED and book.tally(1) == -2
    assert book.vote(1, N) == DecisionChange(1, Decision.UNDECIDED, Decision.NO_MASK)
    assert book.decision(1) is Decision.NO_MASK and book.count(1) == 3


def test_decide_after_counts_votes_not_the_balance():
    book = VoteBook(VotesConfig())
    assert cast(book, 7, [M, N, M]) == [DecisionChange(7, Decision.UNDECIDED, Decision.MASK)]
    assert book.tally(7) == 1 and book.count(7) == 3


def test_unsure_verdicts_do_not_vote():
    book = VoteBook(VotesConfig())
    assert cast(book, 1, [U] * 10 + [M, M]) == []
    assert book.count(1) == 2 and book.decision(1) is Decision.UNDECIDED
    assert book.vote(1, M).new is Decision.MASK


def test_faces_not_eligible_do_not_vote():
    book = VoteBook(VotesConfig())
    assert cast(book, 1, [N] * 5, eligible=False) == []
    assert book.count(1) == 0 and book.decision(1) is Decision.UNDECIDED


def test_faces_not_yet_people_do_not_vote():
    book = VoteBook(VotesConfig())
    assert book.vote(None, N) is None and len(book) == 0


@pytest.mark.parametrize("as_, value, decision", [
    ("mask", 1, Decision.MASK), ("no_mask", -1, Decision.NO_MASK), ("abstain", 0, Decision.UNDECIDED)])
def test_mask_below_nose_counts_as_configured(as_, value, decision):
    cfg = VotesConfig(count_below_nose_as=as_)
    assert vote_value(B, cfg) == value
    book = VoteBook(cfg)
    cast(book, 1, [B] * 3)
    assert book.decision(1) is decision and book.count(1) == abs(value) * 3


def test_a_tie_reads_undecided():
    book = VoteBook(VotesConfig())
    cast(book, 1, [M, N, M, N])
    assert book.tally(1) == 0 and book.count(1) == 4 and book.decision(1) is Decision.UNDECIDED


def test_cap_100_means_101_opposite_votes_switch_a_decided_person():
    book = VoteBook(VotesConfig(cap=100))
    cast(book, 1, [M] * 100)
    assert book.tally(1) == 100 and book.decision(1) is Decision.MASK
    assert cast(book, 1, [N] * 99) == [] and book.decision(1) is Decision.MASK  # tally 1
    assert book.vote(1, N) == DecisionChange(1, Decision.MASK, Decision.UNDECIDED)  # tally 0
    assert book.vote(1, N) == DecisionChange(1, Decision.UNDECIDED, Decision.NO_MASK)  # tally -1
    assert book.tally(1) == -1 and book.count(1) == 201


def test_votes_beyond_the_cap_do_not_delay_a_change_of_mind():
    book = VoteBook(VotesConfig(cap=100))
    cast(book, 1, [M] * 500)
    assert book.tally(1) == 100 and book.count(1) == 500
    changes = cast(book, 1, [N] * 101)
    assert [c.new for c in changes] == [Decision.UNDECIDED, Decision.NO_MASK]
    cast(book, 1, [N] * 1000)
    assert book.tally(1) == -100


def test_each_person_has_their_own_votes():
    book = VoteBook(VotesConfig())
    cast(book, 1, [M] * 3)
    cast(book, 2, [N] * 3)
    assert book.decision(1) is Decision.MASK and book.decision(2) is Decision.NO_MASK


def test_forget_drops_people_who_left():
    book = VoteBook(VotesConfig())
    cast(book, 1, [N] * 3)
    cast(book, 2, [M] * 3)
    book.forget([1, 99])
    assert 1 not in book and 2 in book
    assert book.decision(1) is Decision.UNDECIDED and book.tally(1) == 0 and book.count(1) == 0
    assert book.vote(1, N) is None, "a forgotten person starts from scratch"


def test_unknown_people_are_undecided_with_no_votes():
    book = VoteBook(VotesConfig())
    assert (book.decision(42), book.tally(42), book.count(42)) == (Decision.UNDECIDED, 0, 0)


def test_vote_settings_come_from_the_config_tree():
    cfg = config_from_dict({"votes": {"decide_after": 1, "cap": 2, "count_below_nose_as": "no_mask"}})
    book = VoteBook(cfg.votes)
    assert book.vote(5, B).new is Decision.NO_MASK
    cast(book, 5, [B] * 10)
    assert book.tally(5) == -2
    assert [c.new for c in cast(book, 5, [M] * 3)] == [Decision.UNDECIDED, Decision.MASK]
