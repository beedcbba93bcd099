"""The webhook URL rule of the schema is what the webhooks actor parses: every URL the
pattern allows is an http(s) URL with a host and no credentials once yarl has read it, so a
schema-driven client is refused only for where the host resolves to (DNS, the address
rules), never for the URL's form."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from rayledger.schemas import WEBHOOK_URL_PATTERN

ALLOWED = re.compile(WEBHOOK_URL_PATTERN)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.from_regex(WEBHOOK_URL_PATTERN, fullmatch=True))
def test_every_url_the_pattern_allows_parses_as_the_actor_needs(url: str) -> None:
    parsed = URL(url)  # a ValueError here is a refusal the schema did not state
    assert parsed.scheme in ("http", "https") and parsed.host, url
    assert parsed.user is None and parsed.password is None, url


def test_the_pattern_takes_host_names_and_ip_addresses_but_not_credentials_or_other_schemes() -> None:
    for url in ("https://example.com/hooks", "http://127.0.0.1:9/x", "http://[fe80::1]/hook", "http://a:65535"):
        assert ALLOWED.search(url), url
    for url in ("ftp://example.com/", "http://user:pw@example.com/", "http://", "http://a:65536", "http://[1]/"):
        assert not ALLOWED.search(url), url
