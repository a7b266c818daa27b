from chalicelib.ratelimit import Bucket, decide


def test_a_new_user_starts_with_a_full_burst():
    decision = decide(None, now_ms=1000, rate_per_s=1, burst=3)
    assert decision.allowed and decision.bucket == Bucket(2.0, 1000)


def test_an_empty_bucket_says_when_to_retry():
    decision = decide(Bucket(0.25, 1000), now_ms=1000, rate_per_s=0.5, burst=3)
    assert not decision.allowed
    assert decision.retry_after_ms == 1500  # 0.75 tokens at 0.5 per second


def test_tokens_refill_with_time_up_to_the_burst():
    assert decide(Bucket(0.0, 0), now_ms=2000, rate_per_s=1, burst=3).bucket == Bucket(1.0, 2000)
    assert decide(Bucket(0.0, 0), now_ms=60_000, rate_per_s=1, burst=3).bucket == Bucket(2.0, 60_000)


def test_a_clock_going_backwards_adds_nothing():
    decision = decide(Bucket(0.5, 5000), now_ms=4000, rate_per_s=1, burst=3)
    assert not decision.allowed and decision.retry_after_ms == 500


def test_burst_then_steady_rate():
    bucket, allowed = None, []
    for second in range(10):
        decision = decide(bucket, second * 1000, rate_per_s=0.5, burst=2)
        allowed.append(decision.allowed)
        bucket = decision.bucket if decision.allowed else bucket
    assert allowed[:2] == [True, True]
    assert sum(allowed) == 2 + 4  # then one every two seconds
