//! The command line: `run`, `check`, `explain`, `policy test`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::audit::AuditRecord;
use crate::config::Config;
use crate::gate::{Attempt, Gate, Verdict};
use crate::identity_cache::IdentityCache;
use crate::model::{EntityRef, Identity};
use crate::plugin::CallInput;
use crate::policy::PolicyEngine;
use crate::server::Assembly;
use crate::{clock, policy, server};

/// intentgate: an identity-aware proxy with WebAssembly plugins and Cedar intent policies.
#[derive(Debug, Parser)]
#[command(name = "intentgate", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The worker threads `run` asks for in its config (`runtime.worker_threads`);
/// read before the runtime starts, so errors are left for `run` to report.
pub fn worker_threads(cli: &Cli) -> Option<usize> {
    match &cli.command {
        Command::Run { config } => Config::load(config).ok()?.runtime.worker_threads,
        _ => None,
    }
}

/// Log formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// JSON lines.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Run {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate the config, plugins, schema and policies; exit non-zero on any error.
    Check {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Decide one request (JSON) and print the decision, determining policies and binding.
    Explain {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
        /// The request as JSON (`-` for stdin); see docs/policies.md.
        #[arg(long)]
        request: PathBuf,
    },
    /// Mint a workload token for the caller's own identity, for apps and scripts.
    Token {
        /// Which kind of token.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Policy tooling.
    Policy {
        /// What to do with policies.
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

/// Token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// A signed `sts:GetCallerIdentity` request from the ambient AWS credentials (environment,
    /// profile, web identity, ECS task role, EC2 instance role), bound to one intentgate
    /// deployment's audience. Prints one line: send it as `authorization: Bearer <token>`.
    /// Valid for 15 minutes; holds no secret key.
    Aws {
        /// The deployment's audience (its aws-iam plugin `audience`).
        #[arg(long)]
        audience: String,
        /// STS region (default: from the AWS configuration, else us-east-1).
        #[arg(long)]
        region: Option<String>,
        /// STS host (default: sts.<region>.amazonaws.com).
        #[arg(long)]
        sts_host: Option<String>,
        /// The signed audience header.
        #[arg(long, default_value = crate::aws_token::DEFAULT_AUDIENCE_HEADER)]
        audience_header: String,
    },
}

/// Policy subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Run policy test files (TOML cases with expected decisions).
    Test {
        /// The config file (for the schema and the policy set).
        #[arg(long)]
        config: PathBuf,
        /// Test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run { config } => match load_config(&config) {
            Some(config) => exit(server::run(config).await),
            None => ExitCode::FAILURE,
        },
        Command::Check { config } => check(&config).await,
        Command::Explain { config, request } => explain(&config, &request).await,
        Command::Policy {
            command: PolicyCommand::Test { config, files },
        } => policy_test(&config, &files).await,
        Command::Token {
            command:
                TokenCommand::Aws {
                    audience,
                    region,
                    sts_host,
                    audience_header,
                },
        } => {
            let config = crate::aws_token::AwsTokenConfig {
                audience,
                audience_header,
                region,
                sts_host,
            };
            match crate::aws_token::AwsTokenMinter::from_environment(config).await {
                Ok(minter) => match minter.current().await {
                    Ok(token) => {
                        println!("{}", String::from_utf8_lossy(&token));
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(e),
                },
                Err(e) => fail(e),
            }
        }
    }
}

fn exit(result: Result<(), Vec<String>>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: &Path) -> Option<Config> {
    match Config::load(path) {
        Ok(c) => Some(c),
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            None
        }
    }
}

async fn load_all(path: &Path) -> Option<(Config, Assembly)> {
    let config = load_config(path)?;
    match Assembly::load(&config).await {
        Ok(a) => Some((config, a)),
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            None
        }
    }
}

/// Days ahead of expiry at which `check` warns about a trust anchor.
const ANCHOR_WARNING_DAYS: i64 = 7;

async fn check(path: &Path) -> ExitCode {
    let Some((config, assembly)) = load_all(path).await else {
        return ExitCode::FAILURE;
    };
    for w in assembly.policies.warnings() {
        eprintln!("warning: {w}");
    }
    let mut stale = false;
    for (anchor, left) in config
        .trust
        .expiring(clock::now_unix(), ANCHOR_WARNING_DAYS)
    {
        if left < 0 {
            stale = true;
            eprintln!(
                "error: {}: trust anchor `{}` (provider `{}`) is past its maximum age and authenticates no one; review it and update `reviewed`",
                config.path.display(),
                anchor.id,
                anchor.provider
            );
        } else {
            eprintln!(
                "warning: {}: trust anchor `{}` (provider `{}`) stops authenticating in {left} days; review it and update `reviewed`",
                config.path.display(),
                anchor.id,
                anchor.provider
            );
        }
    }
    for l in &config.listeners {
        if let Err(e) = server::static_upstream_credential(l) {
            eprintln!("warning: {e} (it must be set when intentgate runs)");
        }
    }
    if stale {
        return ExitCode::FAILURE;
    }
    println!(
        "ok: {} ({} identity providers, {} connectors, {} policies, {} listeners)",
        config.path.display(),
        assembly.identities.len(),
        assembly.connectors.len(),
        assembly.policies.policy_count(),
        config.listeners.len()
    );
    ExitCode::SUCCESS
}

/// The `explain` input.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainRequest {
    /// Listener whose identity provider, connector and policies to use.
    listener: Option<String>,
    /// A credential to verify with the listener's identity provider…
    credential: Option<String>,
    /// …or an identity given directly.
    identity: Option<ExplainIdentity>,
    /// The call.
    call: ExplainCall,
    #[serde(default = "default_peer")]
    peer: std::net::SocketAddr,
    /// What capabilities the call may present are bound to (e.g. a Spanner
    /// session name → its creator role); `explain` never asks upstream.
    #[serde(default)]
    capabilities: std::collections::BTreeMap<String, String>,
}

/// `explain` has no upstream to ask about capabilities.
struct NoUpstream;

impl crate::gate::CapabilityLookup for NoUpstream {
    fn lookup<'a>(
        &'a self,
        _call: &'a CallInput,
        _request_id: &'a str,
    ) -> crate::gate::LookupFuture<'a> {
        Box::pin(async {
            Err("explain does not contact upstream; say what the capability is bound to in the request's `capabilities` map".to_string())
        })
    }
}

fn default_peer() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainIdentity {
    principal: String,
    #[serde(default)]
    parents: Vec<String>,
    #[serde(default)]
    attributes: serde_json::Map<String, serde_json::Value>,
    trust_anchor: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainCall {
    #[serde(default = "default_protocol")]
    protocol: String,
    method: String,
    path: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    /// The first message (gRPC: without its 5-byte frame header), base64.
    #[serde(default)]
    body_base64: String,
}

fn default_protocol() -> String {
    "http".into()
}

/// Parses `Type::"id"`.
fn parse_entity(text: &str) -> Result<EntityRef, String> {
    let bad = || format!("`{text}` is not an entity reference like Type::\"id\"");
    let (type_name, quoted) = text.split_once("::\"").ok_or_else(bad)?;
    let id = quoted.strip_suffix('"').ok_or_else(bad)?;
    // The id may itself hold `::"`; split at the first only, so take the
    // type as everything before it.
    Ok(EntityRef::new(type_name, id.replace("\\\"", "\"")))
}

async fn explain(path: &Path, request: &Path) -> ExitCode {
    let text = if request == Path::new("-") {
        let mut s = String::new();
        match std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
            Ok(_) => s,
            Err(e) => return fail(format!("cannot read the request from stdin: {e}")),
        }
    } else {
        match std::fs::read_to_string(request) {
            Ok(s) => s,
            Err(e) => return fail(format!("cannot read `{}`: {e}", request.display())),
        }
    };
    let input: ExplainRequest = match serde_json::from_str(&text) {
        Ok(i) => i,
        Err(e) => {
            return fail(format!(
                "{}:{}:{}: {e}",
                request.display(),
                e.line(),
                e.column()
            ));
        }
    };
    let Some((config, assembly)) = load_all(path).await else {
        return ExitCode::FAILURE;
    };
    let listener = match (&input.listener, config.listeners.as_slice()) {
        (Some(name), all) => all.iter().find(|l| &l.name == name),
        (None, [only]) => Some(only),
        (None, _) => None,
    };
    let Some(listener) = listener else {
        return fail("name the listener with `\"listener\": \"…\"` (the config has several, or none by that name)".into());
    };
    let gate = Gate::new(
        &listener.name,
        &listener.credential.scheme,
        assembly.identities[&listener.identity].clone(),
        assembly.connectors[&listener.connector].clone(),
        std::sync::Arc::new(PolicyEngine::new(assembly.policies)),
        std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(config.trust.clone())),
        std::sync::Arc::new(IdentityCache::new(16)),
    );
    let capabilities = crate::capability::CapabilityCache::new(16 * (input.capabilities.len() + 1));
    for (capability, value) in &input.capabilities {
        capabilities.insert(capability, value, clock::now_unix());
    }
    let gate = gate.with_capabilities(crate::gate::Capabilities {
        cache: std::sync::Arc::new(capabilities),
        upstream: std::sync::Arc::new(NoUpstream),
    });
    let body = match base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        input.call.body_base64.trim(),
    ) {
        Ok(b) => b,
        Err(e) => return fail(format!("`call.body_base64` is not base64: {e}")),
    };
    let call = CallInput {
        protocol: input.call.protocol,
        method: input.call.method,
        path: input.call.path,
        headers: input
            .call
            .headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        body,
    };
    let request_id = uuid::Uuid::now_v7().to_string();
    let mut record = AuditRecord {
        kind: "audit",
        request_id: request_id.clone(),
        listener: listener.name.clone(),
        ..Default::default()
    };
    let attempt = Attempt {
        request_id: &request_id,
        peer: input.peer,
        tls: false,
        credential: input.credential.as_deref().map(str::as_bytes),
        call: &call,
    };
    let verdict = match input.identity {
        Some(given) => {
            let identity = match build_identity(given, &listener.identity) {
                Ok(i) => i,
                Err(e) => return fail(e),
            };
            gate.decide_for(&identity, &attempt, clock::now_unix(), &mut record)
                .await
        }
        None => gate.decide(&attempt, &mut record).await,
    };
    let out = serde_json::json!({
        "decision": record.decision,
        "reason": record.reason,
        "principal": record.principal,
        "action": record.action,
        "resource": record.resource,
        "determining_policies": record.policies,
        "errors": record.errors,
        "binding": record.binding,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    if matches!(verdict, Verdict::Allow { .. }) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

fn build_identity(given: ExplainIdentity, provider: &str) -> Result<Identity, String> {
    Ok(Identity {
        principal: parse_entity(&given.principal)?,
        attributes: serde_json::Value::Object(given.attributes),
        parents: given
            .parents
            .iter()
            .map(|p| parse_entity(p))
            .collect::<Result<_, _>>()?,
        expires_at: clock::now_unix() + 60,
        trust_anchor: given.trust_anchor,
        provider: provider.to_string(),
    })
}

fn fail(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

async fn policy_test(path: &Path, files: &[PathBuf]) -> ExitCode {
    let Some((_, assembly)) = load_all(path).await else {
        return ExitCode::FAILURE;
    };
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in files {
        match policy::run_policy_tests(&assembly.policies, file) {
            Ok(report) => {
                for case in &report.cases {
                    if case.passed() {
                        passed += 1;
                        println!("ok    {}:{}: {}", file.display(), case.line, case.name);
                    } else {
                        failed += 1;
                        println!("FAIL  {}:{}: {}", file.display(), case.line, case.name);
                        for why in &case.failures {
                            println!("        {why}");
                        }
                    }
                }
            }
            Err(diagnostics) => {
                failed += 1;
                for d in diagnostics {
                    eprintln!("error: {d}");
                }
            }
        }
    }
    println!("policy tests: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_references_parse() {
        assert_eq!(
            parse_entity(r#"Oidc::Subject::"https://i#alice""#),
            Ok(EntityRef::new("Oidc::Subject", "https://i#alice"))
        );
        assert!(parse_entity("Oidc::Subject").is_err());
    }
}
