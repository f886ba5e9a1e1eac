"""How long the agent waits between failed certificate renewals: backing off while the
certificate has time left, every second or so once it is expired or about to be."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import random
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from sidemesh.agent import sidecar
from sidemesh.agent.certificates import CertificateRequestFailed, WorkloadCertificate
from sidemesh.agent.sidecar import (
    RENEW_REFUSED_RETRY_S,
    RENEW_RETRY_FIRST_S,
    RENEW_RETRY_MAX_S,
    Agent,
    IdentityParams,
    renewal_retry_delay,
)
from sidemesh.envoy import ProxyId
from sidemesh.envoy.bootstrap import BootstrapParams

HOUR = 3600.0
LOWEST, HIGHEST = 0.0, 0.999999  # the ends of the jitter's range [0, 1)


def delays(backoff: float, left: float, lifetime: float, retryable: bool) -> tuple[float, float]:
    """The shortest and longest delay the jitter can give."""
    return (
        renewal_retry_delay(backoff, left, lifetime, retryable, LOWEST),
        renewal_retry_delay(backoff, left, lifetime, retryable, HIGHEST),
    )


def test_with_plenty_of_time_left_the_backoff_is_used_with_20_percent_jitter() -> None:
    low, high = delays(8.0, left=HOUR / 2, lifetime=HOUR, retryable=True)
    assert low == pytest.approx(6.4)
    assert high == pytest.approx(9.6, abs=1e-4)


def test_an_unreachable_ca_is_retried_at_most_every_minute_while_time_is_left() -> None:
    assert delays(1000.0, left=HOUR / 2, lifetime=HOUR, retryable=True)[1] == pytest.approx(
        RENEW_RETRY_MAX_S * 1.2, abs=1e-3
    )


def test_a_refusal_backs_off_to_five_minutes_while_time_is_left() -> None:
    assert delays(1000.0, left=HOUR / 2, lifetime=HOUR, retryable=False)[1] == pytest.approx(
        RENEW_REFUSED_RETRY_S * 1.2, abs=1e-3
    )


def test_the_wait_is_capped_by_a_quarter_of_the_time_left() -> None:
    # 20 minutes left: at most 5 minutes, even for a refusal.
    assert delays(1000.0, left=1200.0, lifetime=HOUR, retryable=False) == pytest.approx(
        (240.0, 360.0), abs=1e-3
    )
    # 8 minutes left of an hour: a refusal waits 2 minutes, not 5.
    assert delays(1000.0, left=480.0, lifetime=HOUR, retryable=False) == pytest.approx(
        (96.0, 144.0), abs=1e-3
    )


def test_the_cap_never_goes_below_the_first_retry() -> None:
    low, _ = delays(RENEW_RETRY_FIRST_S, left=1.0, lifetime=4.0, retryable=True)
    assert low == pytest.approx(0.8)


def test_an_expired_certificate_is_retried_every_second_however_long_the_backoff() -> None:
    low, high = delays(RENEW_REFUSED_RETRY_S, left=-30.0, lifetime=HOUR, retryable=True)
    assert low == pytest.approx(0.8)
    assert high == pytest.approx(1.2, abs=1e-4)


def test_the_last_tenth_of_the_lifetime_counts_as_expired() -> None:
    assert delays(60.0, left=HOUR / 10, lifetime=HOUR, retryable=True)[1] <= 1.2
    assert delays(60.0, left=HOUR / 10 + 1, lifetime=HOUR, retryable=True)[1] > 2.0


def test_a_refusal_of_an_expired_certificate_is_retried_every_two_seconds_at_most() -> None:
    low, high = delays(RENEW_REFUSED_RETRY_S, left=-30.0, lifetime=HOUR, retryable=False)
    assert 1.0 < low < high <= 2.0


def test_a_certificate_without_lifetime_is_urgent_once_expired() -> None:
    assert delays(60.0, left=0.0, lifetime=0.0, retryable=True)[1] <= 1.2


# Every combination of these, at both ends of the jitter's range.
BACKOFFS = [RENEW_RETRY_FIRST_S, 7.0, RENEW_RETRY_MAX_S, RENEW_REFUSED_RETRY_S]
LIFETIMES = [1.0, 4.0, 60.0, HOUR, 24 * HOUR, 90 * 24 * HOUR]
GRID = list(itertools.product(BACKOFFS, LIFETIMES, [True, False], [LOWEST, 0.5, HIGHEST]))


@pytest.mark.parametrize("fraction_left", [-10.0, -1.0, -0.01, 0.0, 0.05, 0.1])
def test_once_expired_or_in_the_last_tenth_no_wait_is_longer_than_two_seconds(
    fraction_left: float,
) -> None:
    for backoff, lifetime, retryable, jitter in GRID:
        delay = renewal_retry_delay(backoff, fraction_left * lifetime, lifetime, retryable, jitter)
        assert 0.5 <= delay <= 2.0, (backoff, lifetime, retryable, jitter)


@pytest.mark.parametrize("fraction_left", [0.1001, 0.15, 0.3, 0.5, 0.8, 1.0])
def test_before_the_last_tenth_there_are_always_several_attempts_before_expiry(
    fraction_left: float,
) -> None:
    for backoff, lifetime, retryable, jitter in GRID:
        left = fraction_left * lifetime
        delay = renewal_retry_delay(backoff, left, lifetime, retryable, jitter)
        assert delay <= max(left / 4, RENEW_RETRY_FIRST_S) * 1.2, (backoff, lifetime, retryable)


def _certificate(received: dt.datetime, lifetime_s: float) -> WorkloadCertificate:
    return WorkloadCertificate(
        key_pem=b"",
        chain_pem=b"",
        trust_bundle_pem=b"",
        identity="spiffe://test.local/ns/default/sa/a",
        serial="1",
        not_before=received,
        not_after=received + dt.timedelta(seconds=lifetime_s),
        received_at=received,
    )


def test_an_hour_long_ca_outage_is_retried_every_second_once_expired_and_logged_sparingly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A one-hour certificate, renewal first tried at 60% of it, the CA away for an
    hour: no wait longer than 2 s once 6 minutes are left, and a line every half minute
    in the log rather than one per attempt."""
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    clock = [start + dt.timedelta(seconds=0.6 * HOUR)]
    ca_back = clock[0] + dt.timedelta(hours=1)
    sleeps: list[tuple[float, float]] = []  # (seconds left, delay)
    current = _certificate(start, HOUR)

    async def request_certificate(*args: object) -> WorkloadCertificate:
        if clock[0] < ca_back:
            raise CertificateRequestFailed("cannot reach the CA", retryable=True)
        return _certificate(clock[0], HOUR)

    async def sleep(seconds: float) -> None:
        sleeps.append(((current.not_after - clock[0]).total_seconds(), seconds))
        clock[0] += dt.timedelta(seconds=seconds)

    monkeypatch.setattr(sidecar, "request_from_any", request_certificate)
    monkeypatch.setattr(sidecar, "asyncio", SimpleNamespace(sleep=sleep))
    monkeypatch.setattr(sidecar, "_now", lambda: clock[0])
    monkeypatch.setattr(sidecar, "random", random.Random(8))
    agent = Agent(
        BootstrapParams(ProxyId("a-1", "default"), "a", "127.0.0.1", 1, 2, "/tmp/none"),
        IdentityParams("https://127.0.0.1:3", tmp_path / "token", tmp_path / "root.pem"),
        tmp_path,
    )
    with caplog.at_level(logging.WARNING, logger="sidemesh.agent.sidecar"):
        renewed = asyncio.run(agent._renew("token", current))

    assert renewed.received_at >= ca_back
    assert (renewed.received_at - ca_back).total_seconds() <= 2.0
    assert all(delay <= 2.0 for left, delay in sleeps if left <= 0.1 * HOUR)
    assert all(delay <= max(left / 4, 1.0) * 1.2 for left, delay in sleeps if left > 0)
    messages = [r.getMessage() for r in caplog.records]
    assert len(sleeps) > 2000
    assert 60 < len(messages) < 200, messages[:5]
    assert any(re.search(r"expires in \d+s: retrying every 1-2s from now on", m) for m in messages)
    assert any(re.search(r"EXPIRED (just now|1s ago): new mTLS connections", m) for m in messages)
    # The last reminder, less than 30 s before the CA came back 36 minutes after expiry.
    assert re.search(r"EXPIRED 21[3-6]\ds ago", messages[-2]), messages[-2]
    assert messages[-1].startswith("renewed the certificate of sidecar~a-1~default after ")
