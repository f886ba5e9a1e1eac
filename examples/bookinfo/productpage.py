"""bookinfo productpage: ``GET /productpage`` renders "The Comedy of Errors" as HTML from
the details and reviews services; ``GET /api/v1/products/<id>`` answers the same data as
JSON ``{details, reviews}`` for scripts. A service that cannot be reached is shown as
"currently unavailable" (``{"error": ...}`` in JSON); the page itself still answers 200.
The request's x-request-id, traceparent and tracestate go along on both calls.

Usage: PORT=9080 python examples/bookinfo/productpage.py
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
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

TITLE = "The Comedy of Errors"
SUMMARY = (
    "Wikipedia Summary: The Comedy of Errors is one of William Shakespeare's early plays. "
    "It is his shortest and one of his most farcical comedies, with a major part of the "
    "humour coming from slapstick and mistaken identity, in addition to puns and word play."
)
DETAILS_URL = "http://details:9080/details/{id}"
REVIEWS_URL = "http://reviews:9080/reviews/{id}"
DETAIL_FIELDS = ("author", "year", "type", "pages", "publisher", "language", "ISBN-10", "ISBN-13")


def product(book_id: int, headers: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Details and reviews of a book; a failed call gives ``{"error": reason}``."""
    forward = trace_headers(headers)
    found: dict[str, dict[str, Any]] = {}
    for name, url in (("details", DETAILS_URL), ("reviews", REVIEWS_URL)):
        answer, error = call_json(url.format(id=book_id), headers=forward)
        found[name] = answer if answer is not None else {"error": error or "unavailable"}
    return found


def render_details(details: dict[str, Any]) -> str:
    if "error" in details:
        return '<p class="error">Sorry, product details are currently unavailable.</p>'
    rows = "".join(
        f"<dt>{escape(field)}</dt><dd>{escape(str(details.get(field, '')))}</dd>"
        for field in DETAIL_FIELDS
    )
    served_by = escape(str(details.get("workload", "?")))
    return f'<dl>{rows}</dl>\n<p class="served-by">details served by {served_by}</p>'


def render_rating(rating: Any) -> str:
    if not isinstance(rating, dict):
        return ""
    stars = rating.get("stars")
    if not isinstance(stars, int):
        return '<p class="error">Ratings service is currently unavailable</p>'
    color = escape(str(rating.get("color", "black")))
    return f'<p class="stars" style="color: {color}">{"★" * stars}</p>'


def render_reviews(reviews: dict[str, Any]) -> str:
    if "error" in reviews or not isinstance(reviews.get("reviews"), list):
        return '<p class="error">Sorry, product reviews are currently unavailable.</p>'
    parts = [
        f"<blockquote><p>{escape(str(review.get('text', '')))}</p>"
        f"<small>{escape(str(review.get('reviewer', '')))}</small>"
        f"{render_rating(review.get('rating'))}</blockquote>"
        for review in reviews["reviews"]
        if isinstance(review, dict)
    ]
    served_by = escape(f"{reviews.get('workload', '?')} ({reviews.get('version', '?')})")
    parts.append(f'<p class="served-by">reviews served by {served_by}</p>')
    return "\n".join(parts)


def render_page(found: dict[str, dict[str, Any]]) -> str:
    served_by = escape(f"{workload()} ({version()})")
    return f"""<!doctype html>
<html>
<head><meta charset="utf-8"><title>{TITLE}</title></head>
<body>
<h1>{TITLE}</h1>
<p>{escape(SUMMARY)}</p>
<section id="details">
<h2>Book Details</h2>
{render_details(found["details"])}
</section>
<section id="reviews">
<h2>Book Reviews</h2>
{render_reviews(found["reviews"])}
</section>
<p class="served-by">productpage served by {served_by}</p>
</body>
</html>
"""


INDEX = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>bookinfo</title></head>
<body><h1>bookinfo</h1><p><a href="/productpage">{TITLE}</a></p></body></html>
"""


def handle(path: str, headers: Mapping[str, str]) -> Response:
    if path == "/":
        return 200, "text/html; charset=utf-8", INDEX.encode()
    if path == "/productpage":
        page = render_page(product(0, headers))
        return 200, "text/html; charset=utf-8", page.encode()
    prefix, _, book_id = path.rpartition("/")
    if prefix == "/api/v1/products" and book_id.isdigit():
        return json_response(product(int(book_id), headers))
    return not_found(path)


if __name__ == "__main__":
    serve(handle)
