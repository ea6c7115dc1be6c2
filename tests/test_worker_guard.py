"""The worker's hard time limit, without a stack: Celery's solo pool has none of its own."""

import time

import pytest
from facerec_common.errors import StageTimeout
from facerec_common.worker import hard_time_limit


def test_a_task_past_its_limit_is_stopped() -> None:
    start = time.monotonic()
    with pytest.raises(StageTimeout, match=r"limit of 0\.2 s"), hard_time_limit(0.2):
        time.sleep(5)
    assert time.monotonic() - start < 2


def test_a_task_within_its_limit_is_left_alone_and_the_timer_is_cleared() -> None:
    with hard_time_limit(0.2):
        time.sleep(0.05)
    time.sleep(0.3)  # a timer left running would raise here
