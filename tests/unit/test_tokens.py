"""Player-token verification: valid, expired, forged, wrong audience/issuer, no subject, keys."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

import jwt
import jwt.utils as ju
import pytest
from fastapi.security import HTTPAuthorizationCredentials

from processors.gateway.errors import ApiError
from processors.gateway.guards import KeyGuard
from processors.gateway.tokens import TokenConfigError, TokenRefused, TokenVerifier
from streams.settings import Settings
from tests.player_tokens import (
    AUDIENCE,
    ISSUER,
    SECRET,
    ec_key,
    rsa_key,
    token,
    write_jwks,
    write_pem,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from no LEADERBOARD_* variable."""
    for name in [n for n in os.environ if n.startswith("LEADERBOARD_")]:
        monkeypatch.delenv(name)


def verifier(**jwt: Any) -> TokenVerifier:
    """A verifier of the given ``jwt_*`` settings (audience and issuer set unless given)."""
    fields = {"jwt_audience": AUDIENCE, "jwt_issuer": ISSUER}
    fields.update({f"jwt_{k}": v for k, v in jwt.items()})
    built = TokenVerifier.from_settings(Settings(**fields))
    assert built is not None
    return built


def refused(v: TokenVerifier, tok: str) -> str:
    with pytest.raises(TokenRefused) as info:
        v.verify(tok)
    return str(info.value)


def test_no_key_configured_means_no_tokens() -> None:
    assert TokenVerifier.from_settings(Settings()) is None
    assert KeyGuard(Settings(api_keys="k"), 10, 10).tokens is None


def test_a_valid_hs256_token_yields_its_subject() -> None:
    assert verifier(secret=SECRET).verify(token("ann")) == "ann"


def test_expired_beyond_the_leeway_is_refused_within_it_accepted() -> None:
    v = verifier(secret=SECRET)  # default leeway 30 s
    assert refused(v, token(expires_in=-120)) == "token expired"
    assert v.verify(token(expires_in=-10)) == "ann"  # clock skew of 10 s
    assert refused(verifier(secret=SECRET, leeway_s=0), token(expires_in=-10)) == "token expired"


def test_a_token_signed_with_another_secret_is_forged() -> None:
    forged = token(key="x" * 40)
    assert refused(verifier(secret=SECRET), forged) == "token signature does not verify"


def test_audience_and_issuer_are_checked_when_set() -> None:
    v = verifier(secret=SECRET)
    assert "audience" in refused(v, token(aud="another-service"))
    assert "issuer" in refused(v, token(iss="https://evil.example"))
    loose = verifier(secret=SECRET, audience="", issuer="")
    assert loose.verify(token(aud="another-service", iss="anyone")) == "ann"


def test_sub_and_exp_are_required() -> None:
    v = verifier(secret=SECRET)
    assert refused(v, token(sub=None)) == "token has no 'sub' claim"
    assert refused(v, token(sub="")) == "token subject must be a non-empty string"
    no_exp = jwt.encode({"sub": "ann", "aud": AUDIENCE, "iss": ISSUER}, SECRET, algorithm="HS256")
    assert refused(v, no_exp) == "token has no 'exp' claim"


def test_unsigned_and_malformed_tokens_are_refused() -> None:
    v = verifier(secret=SECRET)
    unsigned = jwt.encode({"sub": "ann", "exp": 2**40, "aud": AUDIENCE}, None, algorithm="none")
    assert "alg 'none'" in refused(v, unsigned)
    assert refused(v, "not-a-token") == "malformed token"


@pytest.mark.parametrize("make, alg", [(rsa_key, "RS256"), (ec_key, "ES256")])
def test_a_pem_public_key_verifies_its_algorithm(make: Any, alg: str, tmp_path: Path) -> None:
    signer, other = make(), make()
    pem = write_pem(signer, tmp_path / "key.pem")
    v = verifier(public_key=pem)
    assert v.verify(token("bob", key=signer, algorithm=alg)) == "bob"
    assert refused(v, token(key=other, algorithm=alg)) == "token signature does not verify"
    pem.unlink()  # key material is read once, at start: no file read per token
    assert v.verify(token("bob", key=signer, algorithm=alg)) == "bob"


def test_a_public_key_is_never_used_as_an_hmac_secret(tmp_path: Path) -> None:
    """Algorithm confusion: an HS256 token "signed" with the public PEM finds no HS256 key."""
    pem = write_pem(rsa_key(), tmp_path / "key.pem")
    v = verifier(public_key=pem)
    header = ju.base64url_encode(b'{"alg":"HS256","typ":"JWT"}')
    body = ju.base64url_encode(b'{"sub":"ann","exp":99999999999}')
    sig = hmac.new(pem.read_bytes(), header + b"." + body, hashlib.sha256).digest()
    confused = (header + b"." + body + b"." + ju.base64url_encode(sig)).decode()
    assert "alg 'HS256'" in refused(v, confused)


def test_a_jwks_file_selects_the_key_by_kid(tmp_path: Path) -> None:
    one, two, stranger = rsa_key(), ec_key(), rsa_key()
    v = verifier(jwks_file=write_jwks({"one": one, "two": two}, tmp_path / "jwks.json"))
    assert v.verify(token("ann", key=one, algorithm="RS256", kid="one")) == "ann"
    assert v.verify(token("bob", key=two, algorithm="ES256", kid="two")) == "bob"
    assert "does not verify" in refused(v, token(key=stranger, algorithm="RS256", kid="one"))
    assert "no key" in refused(v, token(key=stranger, algorithm="RS256", kid="three"))


def test_bad_key_settings_fail_at_start_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(TokenConfigError, match="at least 32"):
        verifier(secret="short")
    with pytest.raises(TokenConfigError, match="LEADERBOARD_JWT_PUBLIC_KEY"):
        verifier(public_key=tmp_path / "missing.pem")
    (tmp_path / "bad.json").write_text('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}')
    with pytest.raises(TokenConfigError, match="kid"):
        verifier(jwks_file=tmp_path / "bad.json")
    with pytest.raises(TokenConfigError, match="LEADERBOARD_JWT_JWKS_FILE"):
        verifier(jwks_file=tmp_path / "missing.json")


def bearer(tok: str) -> HTTPAuthorizationCredentials:
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=tok)


def test_the_guard_tells_service_keys_from_player_tokens() -> None:
    guard = KeyGuard(Settings(api_keys="svc", jwt_secret=SECRET, jwt_audience=AUDIENCE), 1000, 1000)
    assert guard.writer("svc", None) is None  # a service key: any participant
    assert guard.writer("svc", bearer(token(expires_in=-999))) is None  # the key wins
    assert guard.writer(None, bearer(token("cid"))) == "cid"
    with pytest.raises(ApiError) as info:
        guard.writer(None, bearer(token(expires_in=-120)))
    assert info.value.status_code == 401 and info.value.detail == "token expired"
    assert info.value.headers == {
        "WWW-Authenticate": 'Bearer realm="leaderboard", error="invalid_token", '
        'error_description="token expired"'
    }
    with pytest.raises(ApiError) as info:
        guard.writer(None, None)
    assert info.value.status_code == 401
    assert info.value.headers == {"WWW-Authenticate": 'Bearer realm="leaderboard"'}
    with pytest.raises(ApiError) as info:  # a token has no admin powers
        guard.admin(None)
    assert info.value.status_code == 401
    assert guard.ws_player(None) is None
    assert guard.ws_player("Basic abc") is None
    assert guard.ws_player("Bearer " + token("dee")) == "dee"
