"""The front end's only way to the service: HTTP calls to the REST API (never model loads).

Deliberately free of Streamlit so it can be tested and reused; errors come back as
`ApiError` with the API's own message, which the pages show as they are."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx


class ApiError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass
class Api:
    url: str
    key: str = ""
    timeout: float = 300.0  # a first answer on a cold CPU can take a while

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def _check(self, r: httpx.Response) -> httpx.Response:
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            if isinstance(detail, list):  # 422: the schema's validation, one entry per field
                detail = "; ".join(f"{'.'.join(map(str, e.get('loc', [])[1:]))}: {e.get('msg')}"
                                   if isinstance(e, dict) else str(e) for e in detail)
            raise ApiError(r.status_code, detail if isinstance(detail, str) else json.dumps(detail))
        return r

    def get(self, path: str, **params) -> dict:
        with httpx.Client(timeout=self.timeout) as c:
            return self._check(c.get(self.url + path, params=params, headers=self._headers())).json()

    def get_bytes(self, path: str) -> bytes:
        with httpx.Client(timeout=self.timeout) as c:
            return self._check(c.get(self.url + path, headers=self._headers())).content

    def post(self, path: str, body: dict | None = None, files=None, data=None) -> dict:
        with httpx.Client(timeout=self.timeout) as c:
            r = c.post(self.url + path, json=body if files is None else None, files=files, data=data,
                       headers=self._headers())
            return self._check(r).json()

    def delete(self, path: str) -> dict:
        with httpx.Client(timeout=self.timeout) as c:
            return self._check(c.delete(self.url + path, headers=self._headers())).json()

    def ask_stream(self, question: str, collection: str) -> Iterator[tuple[str, dict]]:
        """(event, data) pairs from POST /v1/ask?stream=true: tokens, then the answer (or an error)."""
        with httpx.Client(timeout=self.timeout) as c:
            with c.stream("POST", self.url + "/v1/ask", params={"stream": "true"},
                          json={"question": question, "collection": collection}, headers=self._headers()) as r:
                if r.status_code >= 400:
                    r.read()
                    self._check(r)
                event = "message"
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        yield event, json.loads(line[5:].strip())
                        event = "message"


def highlight(passage: str, quote: str) -> str:
    """The passage as HTML with the quoted span in <mark>; escaped, so document text can't inject markup."""
    import html

    if not quote:
        return html.escape(passage).replace("\n", "<br>")
    at = passage.find(quote)
    if at < 0:
        at = passage.lower().find(quote.lower())
    if at < 0:  # the quote was normalised (whitespace): fall back to its first line
        first = quote.strip().splitlines()[0] if quote.strip() else ""
        at = passage.find(first) if first else -1
        quote = first
    if at < 0:
        return html.escape(passage).replace("\n", "<br>")
    parts = (passage[:at], passage[at:at + len(quote)], passage[at + len(quote):])
    a, b, c = (html.escape(p).replace("\n", "<br>") for p in parts)
    return f"{a}<mark>{b}</mark>{c}"
