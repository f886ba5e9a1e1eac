"""bookinfo ratings: ``GET /ratings/<id>`` answers each reviewer's stars as JSON.

Usage: PORT=9082 python examples/bookinfo/ratings.py
"""

from __future__ import annotations

from collections.abc import Mapping

from common import Response, json_response, not_found, serve, workload

RATINGS = {"Reviewer1": 5, "Reviewer2": 4}


def handle(path: str, headers: Mapping[str, str]) -> Response:
    prefix, _, book_id = path.rpartition("/")
    if prefix != "/ratings" or not book_id.isdigit():
        return not_found(path)
    return json_response({"id": int(book_id), "ratings": RATINGS, "workload": workload()})


if __name__ == "__main__":
    serve(handle)
