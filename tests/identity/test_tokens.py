"""Bootstrap tokens (sidemesh/identity/tokens.py), kept in a real directory."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sidemesh.identity.tokens import BootstrapTokens, InvalidToken, WorkloadRef

REVIEWS = WorkloadRef("reviews-v1", "default")
RATINGS = WorkloadRef("ratings-1", "default")


def test_ensure_writes_an_owner_only_random_token(tmp_path: Path) -> None:
    tokens = BootstrapTokens(tmp_path / "tokens")
    path = tokens.ensure(REVIEWS)
    assert path == tokens.path_for(REVIEWS)
    assert path.parent == tmp_path / "tokens"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text()
    assert len(token) >= 32  # secrets.token_urlsafe(32): 256 bits
    assert token.strip() == token
    assert tokens.check(token) == REVIEWS


def test_ensure_twice_keeps_the_token(tmp_path: Path) -> None:
    tokens = BootstrapTokens(tmp_path)
    first = tokens.ensure(REVIEWS).read_bytes()
    second = tokens.ensure(REVIEWS).read_bytes()
    assert first == second


def test_tokens_survive_a_restart(tmp_path: Path) -> None:
    before = BootstrapTokens(tmp_path)
    token = before.ensure(REVIEWS).read_text()
    dotted = WorkloadRef("reviews.v2", "default")
    dotted_token = before.ensure(dotted).read_text()

    after = BootstrapTokens(tmp_path)
    assert after.check(token) == REVIEWS
    assert after.check(dotted_token) == dotted
    assert after.ensure(REVIEWS).read_text() == token


def test_tokens_of_two_workloads_differ(tmp_path: Path) -> None:
    tokens = BootstrapTokens(tmp_path)
    reviews = tokens.ensure(REVIEWS).read_text()
    ratings = tokens.ensure(RATINGS).read_text()
    assert reviews != ratings
    assert tokens.check(reviews) == REVIEWS
    assert tokens.check(ratings) == RATINGS


def test_same_workload_in_two_namespaces_gets_two_tokens(tmp_path: Path) -> None:
    tokens = BootstrapTokens(tmp_path)
    other = WorkloadRef(REVIEWS.name, "other")
    assert tokens.ensure(REVIEWS) != tokens.ensure(other)
    assert tokens.check(tokens.ensure(other).read_text()) == other


def test_two_directories_make_different_tokens(tmp_path: Path) -> None:
    one = BootstrapTokens(tmp_path / "one").ensure(REVIEWS).read_text()
    two = BootstrapTokens(tmp_path / "two").ensure(REVIEWS).read_text()
    assert one != two


def test_empty_token_is_invalid(tmp_path: Path) -> None:
    tokens = BootstrapTokens(tmp_path)
    tokens.ensure(REVIEWS)
    with pytest.raises(InvalidToken, match="no bootstrap token"):
        tokens.check("")


@pytest.mark.parametrize("offered", ["nope", "x" * 43, "é"])
def test_unknown_token_is_invalid(tmp_path: Path, offered: str) -> None:
    tokens = BootstrapTokens(tmp_path)
    tokens.ensure(REVIEWS)
    with pytest.raises(InvalidToken, match="unknown bootstrap token"):
        tokens.check(offered)


def test_a_prefix_of_a_token_is_invalid(tmp_path: Path) -> None:
    tokens = BootstrapTokens(tmp_path)
    token = tokens.ensure(REVIEWS).read_text()
    with pytest.raises(InvalidToken):
        tokens.check(token[:-1])
    with pytest.raises(InvalidToken):
        tokens.check(token + "A")


def test_no_tokens_yet_means_every_token_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidToken):
        BootstrapTokens(tmp_path).check("anything")


def test_error_never_repeats_the_token(tmp_path: Path) -> None:
    tokens = BootstrapTokens(tmp_path)
    secret = "s3cr3t-offered-token-value"
    with pytest.raises(InvalidToken) as caught:
        tokens.check(secret)
    assert secret not in str(caught.value)


def test_the_token_directory_is_made_with_the_first_token_and_owner_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    tokens = BootstrapTokens(state / "tokens")
    assert not state.exists()  # nothing made before a workload needs a token
    tokens.ensure(WorkloadRef("reviews-v1", "default"))
    for directory in (state, state / "tokens"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_replicas_sharing_the_directory_agree_on_each_token(tmp_path: Path) -> None:
    """Two control planes over one state directory: whichever makes a workload's token
    first makes it for both, and each accepts a token the other made later."""
    first, second = BootstrapTokens(tmp_path), BootstrapTokens(tmp_path)
    path = first.ensure(REVIEWS)
    assert second.ensure(REVIEWS) == path
    token = path.read_text()
    assert first.check(token) == second.check(token) == REVIEWS
    later = second.ensure(RATINGS).read_text()
    assert first.check(later) == RATINGS
