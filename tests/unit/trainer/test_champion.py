"""Champion/challenger rule (champion.py): promote only past fold noise on the most recent window."""

from __future__ import annotations

import math

import pytest

from forecast_trainer.champion import FIRST, KEPT, PROMOTED, decide, fold_noise


def test_first_model_is_champion() -> None:
    d = decide([10.0, 11.0, 12.0], None, None, 0.02)
    assert d.outcome == FIRST and d.promotes and d.champion_model_id is None


@pytest.mark.parametrize(
    ("challenger", "champion", "outcome"),
    [
        # consistently better by 2 on every window: noise 0, gain 2 > 2 % of 12 -> promoted
        ([10.0, 10.0, 10.0], [12.0, 12.0, 12.0], PROMOTED),
        # better on the recent window, but the gap swings by more than that across windows -> kept
        ([10.0, 15.0, 8.0], [11.0, 9.0, 14.0], KEPT),
        # worse on the recent window, better on the older ones -> kept
        ([13.0, 8.0, 8.0], [12.0, 12.0, 12.0], KEPT),
        # equal (the same recipe re-trained on the same data) -> kept
        ([10.0, 11.0, 12.0], [10.0, 11.0, 12.0], KEPT),
        # a gain within the relative margin (1 % < 2 %) -> kept
        ([9.9, 9.9, 9.9], [10.0, 10.0, 10.0], KEPT),
    ],
)
def test_promotion_needs_more_than_fold_noise(challenger: list[float], champion: list[float], outcome: str) -> None:
    d = decide(challenger, champion, 7, 0.02)
    assert d.outcome == outcome, d.reason
    assert d.champion_model_id == 7
    assert d.challenger_error == challenger[0] and d.champion_error == champion[0]
    differences = [a - b for a, b in zip(champion, challenger, strict=True)]
    assert d.noise == pytest.approx(fold_noise(differences))
    assert d.threshold == pytest.approx(max(fold_noise(differences), 0.02 * champion[0]))


def test_fold_noise_is_the_sample_deviation_of_the_gaps() -> None:
    assert fold_noise([1.0]) == 0.0
    assert fold_noise([1.0, 3.0]) == pytest.approx(math.sqrt(2.0))
    assert fold_noise([1.0, math.nan, 3.0]) == pytest.approx(math.sqrt(2.0))


def test_pinned_champion_is_never_replaced() -> None:
    d = decide([1.0, 1.0], [50.0, 50.0], 3, 0.02, pinned=True, pinned_by="an annotation")
    assert d.outcome == KEPT and d.pinned and "an annotation" in d.reason


def test_champion_that_cannot_be_rescored_is_replaced() -> None:
    d = decide([10.0, 10.0], [], 3, 0.02)
    assert d.outcome == PROMOTED and "could not be re-scored" in d.reason


def test_decision_document_is_json_ready() -> None:
    doc = decide([10.0, 10.0], [12.0, 12.0], 5, 0.02).as_dict()
    assert doc["outcome"] == PROMOTED and doc["champion_model_id"] == 5 and doc["noise"] == 0.0
