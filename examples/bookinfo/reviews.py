"""bookinfo reviews: ``GET /reviews/<id>`` answers the book's reviews as JSON.

$VERSION picks the behaviour: v1 shows no ratings; v2 asks the ratings service and shows
black stars; v3 asks it and shows red stars. If ratings cannot be reached, each review's
rating is ``{"error": "ratings unavailable"}``.

Usage: PORT=9083 VERSION=v3 python examples/bookinfo/reviews.py
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common import (
    Response,
    call_json,
    json_response,
    not_found,
    serve,
    trace_headers,
    version,
    workload,
)

RATINGS_URL = "http://ratings:9080/ratings/{id}"
STAR_COLORS = {"v2": "black", "v3": "red"}
REVIEWS = [
    (
        "Reviewer1",
        "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
    ),
    (
        "Reviewer2",
        "Absolutely fun and entertaining. The play lacks thematic depth when compared "
        "to other plays by Shakespeare.",
    ),
]


def reviews(book_id: int, headers: Mapping[str, str]) -> dict[str, Any]:
    color = STAR_COLORS.get(version())
    ratings: dict[str, Any] = {}
    if color is not None:
        answer, _error = call_json(RATINGS_URL.format(id=book_id), headers=trace_headers(headers))
        if answer is not None and isinstance(answer.get("ratings"), dict):
            ratings = answer["ratings"]
    listed = []
    for reviewer, text in REVIEWS:
        review: dict[str, Any] = {"reviewer": reviewer, "text": text}
        if color is not None:
            stars = ratings.get(reviewer)
            if isinstance(stars, int):
                review["rating"] = {"stars": stars, "color": color}
            else:
                review["rating"] = {"error": "ratings unavailable"}
        listed.append(review)
    return {"id": book_id, "version": version(), "workload": workload(), "reviews": listed}


def handle(path: str, headers: Mapping[str, str]) -> Response:
    prefix, _, book_id = path.rpartition("/")
    if prefix != "/reviews" or not book_id.isdigit():
        return not_found(path)
    return json_response(reviews(int(book_id), headers))


if __name__ == "__main__":
    serve(handle)
