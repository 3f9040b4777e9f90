"""Player tokens: signed JWTs whose subject is the one participant they may write for.

The key material (an HS256 secret, a PEM public key, a local JWKS file) is read and parsed once,
when the gateway starts; verifying a token is then one signature check and the claim checks,
with no file read and no network call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from streams.errors import LeaderboardError
from streams.settings import Settings

__all__ = ["ALGORITHMS", "TokenConfigError", "TokenRefused", "TokenVerifier"]

#: The signature algorithms a player token may use (never ``none``).
ALGORITHMS = ("HS256", "RS256", "ES256")

#: HS256 secrets shorter than this are refused at start (RFC 7518 §3.2: at least the hash size).
MIN_SECRET_BYTES = 32


class TokenConfigError(LeaderboardError):
    """The player-token settings cannot be used (unreadable key file, weak secret…)."""


class TokenRefused(LeaderboardError):
    """A player token that does not verify; the message is the one-line reason."""


@dataclasses.dataclass(frozen=True)
class _Key:
    """One verification key and the only algorithm it verifies."""

    key: Any
    algorithm: str


def _pem_key(path: Path) -> _Key:
    """The RS256 or ES256 (P-256) public key of a PEM file."""
    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise TokenConfigError(f"LEADERBOARD_JWT_PUBLIC_KEY {path}: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        return _Key(key, "RS256")
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return _Key(key, "ES256")
    raise TokenConfigError(
        f"LEADERBOARD_JWT_PUBLIC_KEY {path}: not an RSA or P-256 public key (use RS256 or ES256)"
    )


def _jwks_keys(path: Path) -> dict[str, _Key]:
    """The keys of a local JWKS file by ``kid`` (each key needs a ``kid``)."""
    try:
        keyset = jwt.PyJWKSet.from_json(path.read_text())
    except (OSError, ValueError, jwt.PyJWTError) as exc:
        raise TokenConfigError(f"LEADERBOARD_JWT_JWKS_FILE {path}: {exc}") from None
    keys: dict[str, _Key] = {}
    for jwk in keyset.keys:
        if not jwk.key_id:
            raise TokenConfigError(f"LEADERBOARD_JWT_JWKS_FILE {path}: every key needs a kid")
        if jwk.algorithm_name not in ALGORITHMS:
            raise TokenConfigError(
                f"LEADERBOARD_JWT_JWKS_FILE {path}: key {jwk.key_id!r} is "
                f"{jwk.algorithm_name}, not one of {', '.join(ALGORITHMS)}"
            )
        keys[jwk.key_id] = _Key(jwk.key, jwk.algorithm_name)
    return keys


class TokenVerifier:
    """Verifies player tokens against keys loaded once; ``verify`` returns the subject."""

    def __init__(
        self,
        keys: Sequence[_Key] = (),
        by_kid: Mapping[str, _Key] | None = None,
        audience: str = "",
        issuer: str = "",
        leeway_s: float = 30.0,
    ) -> None:
        self.by_alg = {k.algorithm: k for k in keys}
        self.by_kid = dict(by_kid or {})
        self.audience = audience or None
        self.issuer = issuer or None
        self.leeway_s = leeway_s
        self.options: dict[str, Any] = {
            "require": ["sub", "exp"],
            "verify_aud": self.audience is not None,
            "verify_iss": self.issuer is not None,
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier | None:
        """The verifier of ``settings``' ``jwt_*`` keys, or None if no key is configured."""
        keys: list[_Key] = []
        secret = settings.jwt_secret.get_secret_value().encode()
        if secret:
            if len(secret) < MIN_SECRET_BYTES:
                raise TokenConfigError(
                    f"LEADERBOARD_JWT_SECRET has {len(secret)} bytes: an HS256 secret needs at "
                    f"least {MIN_SECRET_BYTES}"
                )
            keys.append(_Key(secret, "HS256"))
        if settings.jwt_public_key is not None:
            keys.append(_pem_key(settings.jwt_public_key))
        by_kid = _jwks_keys(settings.jwt_jwks_file) if settings.jwt_jwks_file else {}
        if not keys and not by_kid:
            return None
        return cls(keys, by_kid, settings.jwt_audience, settings.jwt_issuer, settings.jwt_leeway_s)

    def _key(self, token: str) -> _Key:
        """The configured key that may verify ``token``: by its ``kid``, else by its ``alg``."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRefused("malformed token") from None
        kid, alg = header.get("kid"), header.get("alg")
        key = self.by_kid.get(kid) if isinstance(kid, str) else None
        if key is None:
            key = self.by_alg.get(alg) if isinstance(alg, str) else None
        if key is None:
            raise TokenRefused(f"no key of this gateway verifies a token with alg {alg!r}")
        return key

    def verify(self, token: str) -> str:
        """The subject of a valid ``token``, or :class:`TokenRefused` with the reason."""
        key = self._key(token)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options=self.options,  # type: ignore[arg-type]
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused("token expired") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("token signature does not verify") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused(f"token audience is not {self.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise TokenRefused(f"token issuer is not {self.issuer!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRefused(f"token has no {exc.claim!r} claim") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused("token not valid yet") from None
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"invalid token: {exc}") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise TokenRefused("token subject must be a non-empty string")
        return subject
