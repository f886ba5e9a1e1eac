"""bookinfo details: ``GET /details/<id>`` answers the book's details as JSON.

Usage: PORT=9081 python examples/bookinfo/details.py
"""

from __future__ import annotations

from collections.abc import Mapping

from common import Response, json_response, not_found, serve, workload


def details(book_id: int) -> dict[str, object]:
    return {
        "id": book_id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
        "workload": workload(),
    }


def handle(path: str, headers: Mapping[str, str]) -> Response:
    prefix, _, book_id = path.rpartition("/")
    if prefix != "/details" or not book_id.isdigit():
        return not_found(path)
    return json_response(details(int(book_id)))


if __name__ == "__main__":
    serve(handle)
