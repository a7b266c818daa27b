"""Retry arithmetic: pure, no clock."""
from chalicelib.retry import redelivery_delay_s


def test_a_failed_record_comes_back_in_seconds_doubling_per_receive_up_to_the_cap():
    assert [redelivery_delay_s(receives, 2, 120) for receives in range(1, 9)] == [2, 4, 8, 16, 32, 64, 120, 120]


def test_the_delay_stays_within_what_sqs_accepts():
    assert redelivery_delay_s(0, 2, 120) == 2  # a missing count reads as the first receive
    assert redelivery_delay_s(10_000, 5, 10**9) == 43_200  # 12 hours, ChangeMessageVisibility's maximum
