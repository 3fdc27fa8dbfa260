from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from dialler.agents.errors import InvalidToken
from dialler.agents.tokens import decode_access_token, encode_access_token
from dialler.config import Settings

SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]


def test_round_trip_carries_agent_role_and_family() -> None:
    now = datetime.now(UTC)
    token, expires_at = encode_access_token(settings=SETTINGS, agent_id=7, role="agent", family_id="fam", now=now)

    claims = decode_access_token(settings=SETTINGS, token=token)

    assert (claims.agent_id, claims.role, claims.family_id) == (7, "agent", "fam")
    assert expires_at - now == timedelta(seconds=SETTINGS.access_token_ttl_s)
    assert timedelta(0) < claims.expires_at - claims.issued_at <= timedelta(minutes=15)


def test_expired_token_is_invalid() -> None:
    past = datetime.now(UTC) - timedelta(seconds=SETTINGS.access_token_ttl_s + 5)
    token, _ = encode_access_token(settings=SETTINGS, agent_id=7, role="agent", family_id="f", now=past)

    with pytest.raises(InvalidToken):
        decode_access_token(settings=SETTINGS, token=token)


@pytest.mark.parametrize("drop", ["exp", "iat", "sub", "jti", "sid", "role", "aud", "iss"])
def test_every_claim_is_required(drop: str) -> None:
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": SETTINGS.jwt_issuer,
        "aud": SETTINGS.jwt_audience,
        "iat": now,
        "exp": now + 60,
        "sub": "7",
        "role": "agent",
        "jti": "j",
        "sid": "s",
        "typ": "access",
    }
    del claims[drop]
    token = jwt.encode(claims, SETTINGS.jwt_secret.get_secret_value(), algorithm="HS256")

    with pytest.raises(InvalidToken):
        decode_access_token(settings=SETTINGS, token=token)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_other_algorithms_and_token_types_are_refused() -> None:
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": SETTINGS.jwt_issuer,
        "aud": SETTINGS.jwt_audience,
        "iat": now,
        "exp": now + 60,
        "sub": "7",
        "role": "agent",
        "jti": "j",
        "sid": "s",
        "typ": "access",
    }
    secret = SETTINGS.jwt_secret.get_secret_value()

    for token in (
        jwt.encode(claims, secret, algorithm="HS512"),
        jwt.encode({**claims, "typ": "refresh"}, secret, algorithm="HS256"),
        jwt.encode(claims, None, algorithm="none"),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidToken):
            decode_access_token(settings=SETTINGS, token=token)
