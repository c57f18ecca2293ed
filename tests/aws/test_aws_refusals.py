"""Tokens intentgate must refuse, each with its reason in the audit record, UNAUTHENTICATED for
the caller, nothing at Spanner, and (except where STS itself has to judge) nothing at STS.

"Nothing left" is read from two independent places: moto's own request recorder, and
intentgate's `intentgate_plugin_outbound_requests_total{plugin="aws"}` on the admin /metrics.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Callable

import grpc
import pytest

import awstoken
from awsharness import AwsGateway, create_session
from checks import method, record_of_error
from stsdouble import ACCOUNT, StsDouble

Mint = Callable[..., awstoken.Token]


@dataclass(frozen=True)
class Refusal:
    """One bad token: how to make it, the words its audit reason must contain, and how many
    requests may reach STS (1 only when STS itself must judge the signature)."""

    make: Callable[[Mint], str]
    words: tuple[str, ...]
    sts_calls: int = 0


def _oversized(mint: Mint) -> str:
    # A properly signed request with a User-Agent (which SDKs send unsigned, and the plugin
    # allows) long enough to take the JSON over 8 KiB.
    token = mint().add_header("User-Agent", "ecs-task/" + "x" * 8300).json()
    assert len(token) > 8192
    return token


def _duplicate_header(mint: Mint) -> str:
    token = mint()
    # The same header again under another spelling: names are case-insensitive.
    return token.add_header("x-amz-date", token.header("X-Amz-Date")).json()


def _stale(mint: Mint) -> str:
    signed_at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)
    return mint(at=signed_at).json()


ASSUME_ROLE_BODY = (
    "Action=AssumeRole&Version=2011-06-15"
    "&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fecs-tasks%2FTaskRoleA"
    "&RoleSessionName=stolen"
)

REFUSALS: dict[str, Refusal] = {
    "forged-signature": Refusal(
        lambda mint: mint().forged().json(),
        ("STS rejected the signature", "SignatureDoesNotMatch"), sts_calls=1,
    ),
    "audience-header-missing": Refusal(
        lambda mint: mint(audience=None).json(),
        ("audience header `x-intentgate-audience` is missing",),
    ),
    "audience-header-not-signed": Refusal(
        lambda mint: mint(audience=None).add_header(awstoken.AUDIENCE_HEADER,
                                                    awstoken.AUDIENCE).json(),
        ("`x-intentgate-audience` is not in SignedHeaders",),
    ),
    "wrong-audience": Refusal(
        lambda mint: mint(audience="intentgate-prod").json(),
        ("`intentgate-prod`", "not this deployment's audience", "`intentgate-test`"),
    ),
    "stale-x-amz-date": Refusal(
        _stale, ("signed at", "signatures older than 900 s are refused"),
    ),
    "sts-host-evil": Refusal(
        lambda mint: mint(host="sts.evil.example").json(),
        ("STS host `sts.evil.example` is not in `sts_hosts`",),
    ),
    "sts-host-metadata-ip": Refusal(
        lambda mint: mint(host="169.254.169.254").json(),
        ("STS host `169.254.169.254` is not in `sts_hosts`",),
    ),
    "sts-host-loopback": Refusal(
        lambda mint: mint(host="127.0.0.1").json(),
        ("STS host `127.0.0.1` is not in `sts_hosts`",),
    ),
    "oversized": Refusal(_oversized, ("bytes, over the 8192-byte limit",)),
    "duplicate-parameter": Refusal(
        lambda mint: mint(
            body="Action=GetCallerIdentity&Action=GetCallerIdentity&Version=2011-06-15").json(),
        ("parameter `Action` appears twice in the body",),
    ),
    "duplicate-header": Refusal(
        _duplicate_header, ("header `x-amz-date` appears more than once",),
    ),
    "assume-role-body": Refusal(
        lambda mint: mint(body=ASSUME_ROLE_BODY).json(),
        ("Action=`AssumeRole` in the body is not allowed", "only Action=GetCallerIdentity"),
    ),
}


def assert_refused(gateway: AwsGateway, sts: StsDouble, mock, credential: str,
                   words: tuple[str, ...], sts_calls: int = 0, outbound: int | None = None,
                   secrets: tuple[str, ...] = ()) -> dict:
    """Sends `credential` as a bearer token on a CreateSession; checks the denial, its audit
    record, that Spanner saw nothing, how many requests reached moto (`sts_calls`) and how many
    the plugin sent out according to /metrics (`outbound`, default `sts_calls`). Returns the
    record."""
    before = gateway.sts_counters()
    sts_mark, audit_mark = sts.mark(), gateway.audit.mark()

    result = create_session(gateway, credential)

    assert result.code == grpc.StatusCode.UNAUTHENTICATED, (result.code, result.details)
    # The caller is pointed at the audit record; the reason itself is for operators only.
    assert "audit record" in result.details, result.details
    record = record_of_error(gateway.audit, audit_mark, result.details)
    assert record["decision"] == "deny", record
    assert record["method"] == method("CreateSession"), record
    assert record["identity_provider"] == "aws", record
    assert "principal" not in record, record
    assert record["reason"].startswith("authentication failed: "), record
    for word in words:
        assert word in record["reason"], f"{word!r} not in the reason: {record['reason']}"
    text = json.dumps(record)
    for secret in (credential, *secrets):
        assert secret not in text, f"the audit record contains part of the credential: {record}"

    assert mock.requests == [] and mock.recorder.calls == [], "a refused call reached Spanner"
    reached = sts.since(sts_mark)
    assert len(reached) == sts_calls, f"STS received {reached}"
    after = gateway.sts_counters()
    expected_out = sts_calls if outbound is None else outbound
    assert after.outbound - before.outbound == expected_out, (before, after)
    return record


@pytest.mark.parametrize("case", list(REFUSALS), ids=list(REFUSALS))
def test_refused_with_reason(case, gateway, sts, mock, aws_credentials):
    refusal = REFUSALS[case]
    credentials = aws_credentials("TaskRoleA", "task-refusals")

    def mint(**kwargs) -> awstoken.Token:
        return awstoken.mint(credentials, **kwargs)

    credential = refusal.make(mint)
    assert_refused(gateway, sts, mock, credential, refusal.words, refusal.sts_calls,
                   secrets=(credentials.token,))


def test_stale_token_would_have_passed_moto(gateway, sts, mock, aws_credentials):
    """moto does not check X-Amz-Date: the 20-minute-old token's signature is valid, and only
    intentgate's own freshness check refuses it (without asking STS)."""
    credentials = aws_credentials("TaskRoleA", "task-refusals")
    signed_at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)
    token = awstoken.mint(credentials, at=signed_at)
    status, body = sts.post_raw(dict(token.headers), token.body.encode())
    assert status == 200 and b"assumed-role/TaskRoleA/task-refusals" in body, (status, body)

    assert_refused(gateway, sts, mock, token.json(), ("signatures older than 900 s",),
                   secrets=(credentials.token,))


def test_redirect_from_sts_is_not_followed(redirecting_gateway, sts, mock, aws_credentials):
    """The STS endpoint answers 302/307 to moto (which the plugin is granted too): the token is
    refused, the redirect target never sees a request."""
    gateway, redirector = redirecting_gateway
    credentials = aws_credentials("TaskRoleA", "task-redirect")
    token = awstoken.mint(credentials)
    received = len(redirector.received)
    sts_mark = sts.mark()
    before = gateway.metric("intentgate_plugin_outbound_requests_total", plugin="aws",
                            origin=redirector.url)

    assert_refused(gateway, sts, mock, token.json(),
                   ("STS answered with a redirect", "redirects are never followed"),
                   sts_calls=0, outbound=1, secrets=(credentials.token,))

    assert len(redirector.received) - received == 1, redirector.received
    assert sts.since(sts_mark) == [], "the redirect was followed to moto"
    after = gateway.metric("intentgate_plugin_outbound_requests_total", plugin="aws",
                           origin=redirector.url)
    assert after - before == 1


def test_stale_trust_anchor_refuses_every_token(stale_anchor_gateway, sts, mock,
                                                aws_credentials):
    """The account's trust anchor was reviewed 31 days ago, max_age_days = 30: valid tokens of
    either role are refused as unauthenticated with the "past its maximum age" reason."""
    gateway = stale_anchor_gateway
    for role, session in (("TaskRoleA", "task-anchor-a"), ("TaskRoleB", "task-anchor-b")):
        credentials = aws_credentials(role, session)
        token = awstoken.mint(credentials)
        audit_mark = gateway.audit.mark()
        result = create_session(gateway, token.json())
        assert result.code == grpc.StatusCode.UNAUTHENTICATED, (result.code, result.details)
        record = record_of_error(gateway.audit, audit_mark, result.details)
        assert record["decision"] == "deny", record
        assert record["trust_anchor"] == ACCOUNT, record
        assert "past its maximum age of 30 days" in record["reason"], record
        assert f"trust anchor `{ACCOUNT}`" in record["reason"], record
        assert token.json() not in json.dumps(record)
        assert mock.requests == [], "a refused call reached Spanner"
