"""JSON Web Tokens made by the test: an issuer with an RSA key, its key set (JWKS), and
tokens signed right or wrong, for sidecars to check."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass
class Issuer:
    name: str = "https://issuer.test"
    kid: str = "key-1"
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def jwks(self) -> str:
        numbers = self.key.public_key().public_numbers()
        return json.dumps(
            {
                "keys": [
                    {
                        "kty": "RSA",
                        "alg": "RS256",
                        "use": "sig",
                        "kid": self.kid,
                        "n": _int(numbers.n),
                        "e": _int(numbers.e),
                    }
                ]
            }
        )

    def token(
        self,
        subject: str = "alice",
        audience: str = "b",
        lifetime_s: float = 600,
        not_before_s: float = 0,
        issuer: str | None = None,
        kid: str | None = None,
        alg: str = "RS256",
        key: rsa.RSAPrivateKey | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        header = {"alg": alg, "typ": "JWT", "kid": kid or self.kid}
        payload = {
            "iss": issuer or self.name,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now + int(not_before_s),
            "exp": now + int(lifetime_s),
            **claims,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
        if alg == "none":
            return signing_input + "."
        signature = (key or self.key).sign(
            signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{_b64(signature)}"
