"""AWS tokens for the aws-iam identity plugin, minted with botocore's SigV4 signer: an
independent implementation of the format in plugins/aws-iam/README.md.

A token is the JSON of a SigV4-signed `sts:GetCallerIdentity` POST (GCP's AWS subject-token
shape, not URL-encoded), on one line:

    {"url": "https://sts.us-east-1.amazonaws.com/", "method": "POST",
     "headers": [{"key": "host", "value": ...}, ..., {"key": "Authorization", "value": ...}],
     "body": "Action=GetCallerIdentity&Version=2011-06-15"}

The audience header is set before signing, so it is in SignedHeaders. botocore adds only
X-Amz-Date, X-Amz-Security-Token and Authorization to an sts request; nothing else.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field, replace

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from stsdouble import REGION, STS_HOST

AUDIENCE = "intentgate-test"
AUDIENCE_HEADER = "x-intentgate-audience"
BODY = "Action=GetCallerIdentity&Version=2011-06-15"
CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"


class ClockedSigV4Auth(SigV4Auth):
    """SigV4Auth signing at a given time instead of now (for stale X-Amz-Date tokens).

    The same steps as SigV4Auth.add_auth, with the timestamp taken from `at`.
    """

    def __init__(self, credentials: Credentials, service: str, region: str,
                 at: datetime.datetime) -> None:
        super().__init__(credentials, service, region)
        self._at = at.astimezone(datetime.timezone.utc).replace(tzinfo=None)

    def add_auth(self, request) -> None:
        request.context["timestamp"] = self._at.strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical_request = self.canonical_request(request)
        string_to_sign = self.string_to_sign(request, canonical_request)
        self._inject_signature_to_request(request, self.signature(string_to_sign, request))


@dataclass(frozen=True)
class Token:
    """A signed request, editable after signing (for the negative tests)."""

    url: str
    method: str
    headers: tuple[tuple[str, str], ...]
    body: str
    secrets: tuple[str, ...] = field(default=(), compare=False)

    def json(self) -> str:
        """The credential: one line of JSON."""
        return json.dumps(
            {"url": self.url, "method": self.method,
             "headers": [{"key": k, "value": v} for k, v in self.headers],
             "body": self.body},
            separators=(",", ":"),
        )

    def header(self, name: str) -> str:
        return next(v for k, v in self.headers if k.lower() == name.lower())

    @property
    def access_key_id(self) -> str:
        return self.header("authorization").split("Credential=", 1)[1].split("/", 1)[0]

    @property
    def signature(self) -> str:
        return self.header("authorization").rsplit("Signature=", 1)[1]

    def with_headers(self, headers) -> Token:
        return replace(self, headers=tuple(headers))

    def add_header(self, name: str, value: str) -> Token:
        """A header added after signing (so not covered by the signature)."""
        return self.with_headers([*self.headers, (name, value)])

    def with_signature(self, signature: str) -> Token:
        auth = self.header("authorization")
        forged = auth.rsplit("Signature=", 1)[0] + "Signature=" + signature
        return self.with_headers(
            (k, forged if k.lower() == "authorization" else v) for k, v in self.headers
        )

    def forged(self) -> Token:
        """The signature with its last hex digit changed: still well-formed, no longer valid."""
        sig = self.signature
        last = "0" if sig[-1] != "0" else "1"
        return self.with_signature(sig[:-1] + last)


def mint(credentials: Credentials, *, audience: str | None = AUDIENCE,
         audience_header: str = AUDIENCE_HEADER, host: str = STS_HOST, body: str = BODY,
         at: datetime.datetime | None = None, region: str = REGION,
         extra_headers: dict[str, str] | None = None) -> Token:
    """Signs a GetCallerIdentity POST with `credentials` and returns it as a Token.

    `audience=None` leaves the audience header out. `extra_headers` are signed too. `at` signs
    with that clock instead of now.
    """
    headers = {"Content-Type": CONTENT_TYPE}
    if audience is not None:
        headers[audience_header] = audience
    headers.update(extra_headers or {})
    url = f"https://{host}/"
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    signer = (SigV4Auth(credentials, "sts", region) if at is None
              else ClockedSigV4Auth(credentials, "sts", region, at))
    signer.add_auth(request)
    # botocore signs `host` from the URL without adding the header; the token carries it.
    signed = [("host", host)] + [(k, v) for k, v in request.headers.items()]
    secrets = tuple(s for s in (credentials.secret_key, credentials.token) if s)
    token = Token(url=url, method="POST", headers=tuple(signed), body=body, secrets=secrets)
    # The token names exactly the headers the signature covers, and no SDK extras.
    names = sorted(k.lower() for k, _ in token.headers if k.lower() != "authorization")
    signed_names = token.header("authorization").split("SignedHeaders=", 1)[1].split(",", 1)[0]
    assert signed_names.split(";") == names, (signed_names, names)
    return token


def sensitive_parts(token: Token) -> list[str]:
    """Strings that must never appear upstream or in the audit: the whole credential, the
    signature, the session token and the secret key that signed it."""
    return [token.json(), token.signature, *token.secrets]
