"""The TokenReview validator, against the small API server written for the tests
(``tests/helpers/kube_apiserver.py``: no real kube-apiserver runs on these machines),
which verifies real RS256 service-account JWTs as the real API server does, reached
through the real client library over HTTPS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sidemesh.identity.kube_tokens import TokenReviewValidator
from sidemesh.identity.tokens import InvalidToken
from sidemesh.model.refs import WorkloadRef
from sidemesh.sources.kube import KubeApi
from tests.helpers.kube_apiserver import KubeTestServer

REVIEWS_POD = WorkloadRef("reviews-v1-a", "shop")
RUNS_AS = {REVIEWS_POD: "reviews"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KubeTestServer]:
    server = KubeTestServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
async def validator(server: KubeTestServer) -> AsyncIterator[TokenReviewValidator]:
    api = await KubeApi.connect(kubeconfig=server.kubeconfig())

    async def review(body: object) -> dict[str, object]:
        return await api.post("/apis/authentication.k8s.io/v1/tokenreviews", body)  # type: ignore[arg-type]

    yield TokenReviewValidator(review, RUNS_AS.get)
    await api.close()


async def test_a_pods_projected_token_proves_the_pod(
    validator: TokenReviewValidator, server: KubeTestServer
) -> None:
    token = server.token("shop", "reviews", pod="reviews-v1-a")
    assert await validator.validate(token) == REVIEWS_POD


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"lifetime_s": -60}, "refused the token: invalid bearer token: Signature has expired"),
        ({"audience": "https://kubernetes.default.svc"}, "refused the token"),
        (
            {"service_account": "ratings"},
            "is service account shop/ratings's, but pod reviews-v1-a.shop runs as shop/reviews",
        ),
        ({"pod": None}, "is not bound to a pod: mount a projected token with audience 'sidemesh'"),
    ],
    ids=["expired", "wrong-audience", "another-service-account", "not-bound-to-a-pod"],
)
async def test_tokens_that_do_not_prove_the_pod_are_refused(
    validator: TokenReviewValidator, server: KubeTestServer, kwargs: dict[str, object], reason: str
) -> None:
    args: dict[str, object] = {
        "namespace": "shop",
        "service_account": "reviews",
        "pod": "reviews-v1-a",
    }
    args.update(kwargs)
    token = server.token(**args)  # type: ignore[arg-type]
    with pytest.raises(
        InvalidToken, match=reason.replace("(", r"\(").replace(".", r"\.")
    ) as caught:
        await validator.validate(token)
    assert token not in str(caught.value)


async def test_a_token_signed_by_someone_else_or_none_is_refused(
    validator: TokenReviewValidator, server: KubeTestServer, tmp_path: Path
) -> None:
    stranger = KubeTestServer(tmp_path / "other")
    forged = stranger.token("shop", "reviews", pod="reviews-v1-a")
    with pytest.raises(InvalidToken, match="Signature verification failed"):
        await validator.validate(forged)
    with pytest.raises(InvalidToken, match="no service-account token"):
        await validator.validate("")


async def test_an_unreachable_api_server_refuses_rather_than_trusts(
    validator: TokenReviewValidator, server: KubeTestServer
) -> None:
    token = server.token("shop", "reviews", pod="reviews-v1-a")
    server.stop()
    with pytest.raises(InvalidToken, match="could not review the token"):
        await validator.validate(token)
