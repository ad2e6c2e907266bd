"""The API's guard on its own: who a request's headers name, what its key may do, and how fast
(the clock injected, so the rate limit is proven without waiting)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from stream_engine.api.problems import ApiProblem, ProblemKind
from stream_engine.api.security import ANONYMOUS, Guard, key_hash, new_key
from stream_engine.config.api_models import ApiConfig, ApiKeyConfig

DECIDER = new_key()
READER = new_key()
LIMITED = new_key()


def guard(anonymous: bool = False) -> Guard:
    return Guard(
        ApiConfig(
            keys=[
                ApiKeyConfig(id="decider", hash=key_hash(DECIDER), scopes=["decide", "read"]),
                ApiKeyConfig(id="reader", hash=key_hash(READER), scopes=["read"]),
                ApiKeyConfig(id="limited", hash=key_hash(LIMITED), rate_per_s=0.5, burst=2),
            ]
        ),
        anonymous,
    )


def refusal(call: object, *args: object) -> ApiProblem:
    with pytest.raises(ApiProblem) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


def test_a_request_without_a_key_is_401_and_says_how_to_authenticate():
    problem = refusal(guard().caller, CIMultiDict())

    assert (problem.kind, problem.status) == (ProblemKind.UNAUTHORIZED, 401)
    assert problem.headers == {"WWW-Authenticate": 'Bearer realm="stream-engine"'}


def test_a_key_that_is_not_listed_is_401_invalid_token_in_either_header():
    for headers in ({"X-API-Key": new_key()}, {"Authorization": f"Bearer {new_key()}"}):
        problem = refusal(guard().caller, CIMultiDict(headers))

        assert problem.status == 401
        assert problem.headers is not None
        assert 'error="invalid_token"' in problem.headers["WWW-Authenticate"]


def test_an_authorization_header_that_is_not_bearer_is_401():
    for value in (f"Basic {DECIDER}", DECIDER, "Bearer"):
        problem = refusal(guard().caller, CIMultiDict({"Authorization": value}))

        assert problem.status == 401
        assert "Bearer <key>" in problem.detail


def test_a_listed_key_names_its_caller_by_id_in_x_api_key_or_as_a_bearer_token():
    by_header = guard().caller(CIMultiDict({"x-api-key": DECIDER}))
    by_bearer = guard().caller(CIMultiDict({"Authorization": f"bearer {READER}"}))

    assert (by_header.key_id, by_header.scopes) == ("decider", frozenset({"decide", "read"}))
    assert (by_bearer.key_id, by_bearer.scopes) == ("reader", frozenset({"read"}))


def test_a_key_without_the_scope_is_403_naming_the_key_id_never_the_key():
    caller = guard().caller(CIMultiDict({"X-API-Key": READER}))

    problem = refusal(guard().allow, caller, "decide")

    assert (problem.kind, problem.status) == (ProblemKind.FORBIDDEN, 403)
    assert "'reader'" in problem.detail
    assert "'decide'" in problem.detail
    assert READER not in problem.detail


def test_over_its_rate_a_key_is_429_with_retry_after_and_is_served_again_after_that_wait():
    checks = guard()
    caller = checks.caller(CIMultiDict({"X-API-Key": LIMITED}))
    checks.allow(caller, "submit", now=100.0)
    checks.allow(caller, "submit", now=100.0)  # the burst of 2

    problem = refusal(checks.allow, caller, "submit", 100.0)

    assert (problem.kind, problem.status) == (ProblemKind.RATE_LIMITED, 429)
    assert problem.headers == {"Retry-After": "2"}  # one token every 2 s at 0.5/s
    assert problem.extra == {"retry_after_s": 2}
    assert refusal(checks.allow, caller, "submit", 101.0).headers == {"Retry-After": "1"}
    checks.allow(caller, "submit", now=102.0)
    assert refusal(checks.allow, caller, "submit", 102.0).status == 429


def test_a_refused_scope_spends_none_of_the_keys_rate():
    checks = guard()
    caller = checks.caller(CIMultiDict({"X-API-Key": READER}))
    for _ in range(5):
        refusal(checks.allow, caller, "submit", 0.0)

    checks.allow(caller, "read", now=0.0)  # no rate: unlimited


def test_without_a_key_an_anonymous_api_lets_anyone_do_everything_but_checks_a_given_key():
    checks = guard(anonymous=True)

    caller = checks.caller(CIMultiDict())
    checks.allow(caller, "decide")

    assert caller.key_id == ANONYMOUS
    assert refusal(checks.caller, CIMultiDict({"X-API-Key": "wrong"})).status == 401


def test_a_key_is_listed_by_its_sha256_and_a_new_key_is_long_and_different_each_time():
    key = new_key()

    assert key_hash("abc") == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert key.startswith("se_")
    assert len(key) >= 40
    assert key != new_key()
