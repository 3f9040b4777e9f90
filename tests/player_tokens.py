"""Test helpers for player tokens: key pairs, JWKS and PEM files, signed tokens."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

SECRET = "s" * 40  # an HS256 secret of the required length
AUDIENCE = "leaderboard-gateway"
ISSUER = "https://auth.example.test"


def rsa_key() -> rsa.RSAPrivateKey:
    """A fresh RSA private key (2048 bits)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def write_pem(private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, path: Path) -> Path:
    """Write the public half of ``private`` as a PEM file; returns the path."""
    path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def write_jwks(keys: dict[str, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey], path: Path) -> Path:
    """Write the public halves of ``keys`` (by kid) as a JWKS file; returns the path."""
    entries = []
    for kid, private in keys.items():
        if isinstance(private, rsa.RSAPrivateKey):
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
            jwk["alg"] = "RS256"
        else:
            jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
            jwk["alg"] = "ES256"
        entries.append({**jwk, "kid": kid, "use": "sig"})
    path.write_text(json.dumps({"keys": entries}))
    return path


def token(
    sub: str | None = "ann",
    key: Any = SECRET,
    algorithm: str = "HS256",
    # an hour: parametrized tokens are signed at collection, and a full suite on a loaded
    # machine reaches them more than 5 minutes later (they came back "token expired")
    expires_in: float = 3600,
    kid: str | None = None,
    **claims: Any,
) -> str:
    """A signed player token; ``sub=None`` leaves the subject out."""
    now = int(time.time())
    payload: dict[str, Any] = {"aud": AUDIENCE, "iss": ISSUER, "iat": now, **claims}
    payload["exp"] = now + expires_in
    if sub is not None:
        payload["sub"] = sub
    headers = {"kid": kid} if kid else None
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)
