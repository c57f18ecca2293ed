"""The intentgate configs and Cedar policies the suite runs: who may do what on which database,
and with which Spanner database role.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

from pki import TestPki
from processes import plugin

PROJECT_INSTANCE = "projects/p/instances/i"
UPSTREAM_TOKEN = "upstream-service-token-7f3a"  # what intentgate presents to Spanner
UPSTREAM_TOKEN_ENV = "SPANNER_UPSTREAM_TOKEN"


def database(name: str) -> str:
    """The full name of a database in the instance the connector serves."""
    return f"{PROJECT_INSTANCE}/databases/{name}"


ORDERS = database("orders")
SECRET = database("secret")  # no permit names it


@dataclass(frozen=True)
class Mapping:
    """One principal's permit: its subject, the actions it may take, its database role."""

    sub: str
    role: str
    actions: tuple[str, ...]
    database: str = ORDERS


READER = Mapping("reader-app", "orders_reader", ("read",))
WRITER = Mapping("writer-app", "orders_writer", ("read", "write"))
ANALYST = Mapping("analyst-app", "orders_analyst", ("read",))
MAPPINGS = (READER, WRITER, ANALYST)


def policies(issuer_url: str) -> str:
    """One permit per mapping; the role the session is created with is its @database_role."""
    out = []
    for m in MAPPINGS:
        actions = ", ".join(f'Spanner::Action::"{a}"' for a in m.actions)
        out.append(
            f'@id("{m.sub}-{m.role}")\n'
            f'@database_role("{m.role}")\n'
            f"permit (\n"
            f'  principal == Oidc::Subject::"{issuer_url}#{m.sub}",\n'
            f"  action in [{actions}],\n"
            f'  resource == Spanner::Database::"{m.database}"\n'
            f");\n"
        )
    return "\n".join(out)


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escaping is a subset TOML accepts)."""
    return json.dumps(value)


def write_config(folder: Path, *, issuer_url: str, upstream_url: str, port: int, admin_port: int,
                 policies_dir: Path, tls: TestPki | None,
                 ambient_file: Path | None = None) -> tuple[Path, Path]:
    """Writes `folder/intentgate.toml` for one gRPC listener; returns (config, audit file).

    With `tls`, the listener terminates TLS (the gateway shape the official clients need to send
    a bearer token); without, it speaks h2c (the sidecar shape). With `ambient_file`, callers
    that send no credential act as the workload whose token the file holds (sidecar identity).
    """
    folder.mkdir(parents=True, exist_ok=True)
    audit = folder / "audit.jsonl"
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    tls_line = (
        f"tls = {{ cert = {toml_string(str(tls.server_cert))}, "
        f"key = {toml_string(str(tls.server_key))} }}\n"
        if tls
        else ""
    )
    ambient = f", ambient_file = {toml_string(str(ambient_file))}" if ambient_file else ""
    text = f"""\
[audit]
output = {toml_string(str(audit))}

[admin]
bind = "127.0.0.1:{admin_port}"

[[identity]]
name = "oidc"
plugin = {toml_string(str(plugin("oidc")))}
outbound = [{{ origin = {toml_string(issuer_url)}, private = true }}]
config = {{ issuer = {toml_string(issuer_url)}, audiences = ["spanner-gateway"] }}

[[trust_anchor]]
id = {toml_string(issuer_url)}
provider = "oidc"
reviewed = "{today}"

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
identity = "oidc"
connector = "spanner"
credential = {{ header = "authorization", scheme = "Bearer"{ambient} }}
upstream = {toml_string(upstream_url)}
upstream_credential = {{ header = "authorization", prefix = "Bearer ", value_env = "{UPSTREAM_TOKEN_ENV}" }}
{tls_line}"""
    config = folder / "intentgate.toml"
    config.write_text(text)
    return config, audit
