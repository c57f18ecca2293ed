"""The intentgate configs and Cedar policies of the AWS suite: the aws-iam identity plugin in
front of Google's mock Spanner, with moto as STS.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

from deployment import PROJECT_INSTANCE, UPSTREAM_TOKEN_ENV, database
from pki import TestPki
from processes import plugin
from stsdouble import ACCOUNT, canonical_role_arn

IDENTITY = "aws"  # the [[identity]] name: audit `identity_provider`, metrics `plugin`/`provider`
ORDERS = database("orders")
READER_ROLE = "orders_reader"
PERMIT_ID = "task-role-a-reads-orders"
FORBID_ID = "no-debug-sessions"


def principal(role: str) -> str:
    """The Cedar principal (as the audit writes it) of a role's sessions."""
    return f'Aws::Role::"{canonical_role_arn(role)}"'


def policies() -> str:
    """TaskRoleA may read `orders` as `orders_reader`; TaskRoleB has no permit at all.

    The permit's conditions use the identity's parent (the account) and attributes, and the
    forbid uses the session name (the ECS task id), so a decision shows they reached Cedar.
    """
    return f"""\
@id("{PERMIT_ID}")
@database_role("{READER_ROLE}")
permit (
  principal == {principal("TaskRoleA")},
  action in [Spanner::Action::"read"],
  resource == Spanner::Database::"{ORDERS}"
) when {{
  principal in Aws::Account::"{ACCOUNT}" &&
  principal.account == "{ACCOUNT}" &&
  principal.role_name == "TaskRoleA" &&
  principal.role_unique_id like "AROA*"
}};

@id("{FORBID_ID}")
forbid (principal is Aws::Role, action, resource)
when {{ principal.session_name like "debug-*" }};
"""


def toml_string(value: str) -> str:
    return json.dumps(value)


@dataclass(frozen=True)
class AwsSettings:
    """What varies between the suite's intentgate processes."""

    sts_endpoint: str
    # Origins the plugin is granted (private = true: they are on 127.0.0.1).
    grants: tuple[str, ...]
    reviewed: datetime.date | None = None  # default: today
    max_age_days: int | None = None


def write_config(folder: Path, settings: AwsSettings, *, upstream_url: str, port: int,
                 admin_port: int, policies_dir: Path, tls: TestPki) -> tuple[Path, Path]:
    """Writes `folder/intentgate.toml` (TLS gRPC listener, aws-iam identity); returns
    (config, audit file)."""
    folder.mkdir(parents=True, exist_ok=True)
    audit = folder / "audit.jsonl"
    reviewed = settings.reviewed or datetime.datetime.now(datetime.timezone.utc).date()
    grants = ", ".join(f"{{ origin = {toml_string(o)}, private = true }}" for o in settings.grants)
    max_age = f"max_age_days = {settings.max_age_days}\n" if settings.max_age_days else ""
    plugin_config = (
        f'{{ audience = "intentgate-test", sts_endpoint = {toml_string(settings.sts_endpoint)}, '
        f'trusted_accounts = ["{ACCOUNT}"] }}'
    )
    text = f"""\
[audit]
output = {toml_string(str(audit))}

[admin]
bind = "127.0.0.1:{admin_port}"

[[identity]]
name = "{IDENTITY}"
plugin = {toml_string(str(plugin("aws_iam")))}
outbound = [{grants}]
config = {plugin_config}

[[trust_anchor]]
id = "{ACCOUNT}"
provider = "{IDENTITY}"
reviewed = "{reviewed.isoformat()}"
{max_age}
[[connector]]
name = "spanner"
plugin = {toml_string(str(plugin("spanner")))}
config = {{ instances = [{toml_string(PROJECT_INSTANCE)}] }}

[policy]
policies = [{toml_string(str(policies_dir))}]

[[listener]]
name = "spanner"
protocol = "grpc"
bind = "127.0.0.1:{port}"
identity = "{IDENTITY}"
connector = "spanner"
credential = {{ header = "authorization", scheme = "Bearer" }}
upstream = {toml_string(upstream_url)}
upstream_credential = {{ header = "authorization", prefix = "Bearer ", value_env = "{UPSTREAM_TOKEN_ENV}" }}
tls = {{ cert = {toml_string(str(tls.server_cert))}, key = {toml_string(str(tls.server_key))} }}
"""
    config = folder / "intentgate.toml"
    config.write_text(text)
    return config, audit
