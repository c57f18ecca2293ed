//! `intentgate-spanner-rust-client`: runs SQL through intentgate's gRPC listener with the
//! official Rust Spanner client (`google-cloud-spanner`), so tests see what a real Rust
//! application sends. See README.md for the CLI and what was verified.

use anyhow::Result;
use clap::{ArgGroup, Parser};
use google_cloud_auth::credentials::{
    CacheableResource, Credentials, CredentialsProvider, EntityTag, anonymous,
};
use google_cloud_auth::errors::CredentialsError;
use google_cloud_gax::options::RequestOptions;
use google_cloud_gax::retry_policy::RetryPolicyExt as _;
use google_cloud_spanner::client::{DatabaseClient, Spanner, SpannerBuilderExt as _};
use google_cloud_spanner::omni::{InstanceType, TlsConfig};
use google_cloud_spanner::retry_policy::SpannerRetryPolicy;
use google_cloud_spanner::statement::Statement;
use google_cloud_spanner::types::{Type, TypeCode};
use google_cloud_spanner::value::{Kind, Value};
use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use std::fmt;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Exit status for every failure (usage, client or server error, timeout).
const FAILURE: u8 = 2;

/// Run statements against Spanner (or intentgate's Spanner listener) with the official Rust
/// client.
#[derive(Parser, Debug)]
#[command(version, group(ArgGroup::new("statements").required(true).multiple(true).args(["sql", "dml"])))]
struct Args {
    /// gRPC endpoint: `https://HOST:PORT` (TLS) or `http://HOST:PORT` (cleartext h2c).
    #[arg(long)]
    endpoint: String,
    /// PEM file with the CA certificate(s) to trust for an `https://` endpoint.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// File holding a bearer token; sent as `authorization: Bearer <token>` on every RPC.
    /// Without it the client uses anonymous credentials (no `authorization` header).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Full database name, `projects/P/instances/I/databases/D`.
    #[arg(long)]
    database: String,
    /// Database role requested for the session (`Session.creator_role`).
    #[arg(long)]
    role: Option<String>,
    /// Query run in a single-use read-only transaction; prints each row as a JSON array.
    #[arg(long)]
    sql: Option<String>,
    /// DML run in a read-write transaction (transaction runner); prints `{"rows_modified": N}`.
    #[arg(long)]
    dml: Option<String>,
    /// Deadline for the whole run, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// A failure with the gRPC code to report on the `ERROR <CODE> <message>` line.
#[derive(Debug)]
struct Coded {
    code: &'static str,
    message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

fn coded(code: &'static str, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        code,
        message: message.into(),
    })
}

/// Credentials that attach a fixed bearer token (read from `--token-file`) to every RPC.
struct BearerToken {
    header: HeaderValue,
}

impl BearerToken {
    fn from_file(path: &PathBuf) -> Result<Self> {
        let raw = std::fs::read_to_string(path).map_err(|e| {
            coded(
                "INVALID_ARGUMENT",
                format!("reading --token-file {}: {e}", path.display()),
            )
        })?;
        let token = raw.trim();
        if token.is_empty() {
            return Err(coded(
                "INVALID_ARGUMENT",
                format!("--token-file {} is empty", path.display()),
            ));
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| {
            coded(
                "INVALID_ARGUMENT",
                format!("--token-file {}: {e}", path.display()),
            )
        })?;
        header.set_sensitive(true);
        Ok(Self { header })
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

impl CredentialsProvider for BearerToken {
    async fn headers(
        &self,
        _extensions: http::Extensions,
    ) -> std::result::Result<CacheableResource<HeaderMap>, CredentialsError> {
        let mut data = HeaderMap::new();
        data.insert(AUTHORIZATION, self.header.clone());
        // The transport asks for fresh headers on every attempt and does not cache them.
        Ok(CacheableResource::New {
            entity_tag: EntityTag::new(),
            data,
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None // the default universe (googleapis.com); the endpoint is set explicitly anyway
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help / --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let first = e.to_string();
            let first = first
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            eprintln!("ERROR INVALID_ARGUMENT {first}");
            let _ = e.print();
            return ExitCode::from(FAILURE);
        }
    };
    let deadline = Duration::from_secs(args.timeout);
    let outcome = match tokio::time::timeout(deadline, run(&args)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(coded(
            "DEADLINE_EXCEEDED",
            format!("no result within --timeout {}s", args.timeout),
        )),
    };
    let code = match outcome {
        Ok(()) => 0,
        Err(err) => {
            report(&err);
            FAILURE
        }
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // Exit right away: the client keeps background tasks (session maintenance, channel pool
    // scaling) that the runtime would otherwise wind down first.
    std::process::exit(i32::from(code));
}

async fn run(args: &Args) -> Result<()> {
    // The client's transport (tonic + rustls) needs a process-wide crypto provider because
    // `default-rustls-provider` (aws-lc-rs) is disabled; use ring, as the workspace does.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let client = database_client(args).await?;
    let mut out = std::io::stdout().lock();
    if let Some(sql) = &args.sql {
        for row in query(&client, sql).await? {
            writeln!(out, "{}", serde_json::Value::Array(row))?;
        }
        out.flush()?;
    }
    if let Some(dml) = &args.dml {
        let rows_modified = update(&client, dml).await?;
        writeln!(
            out,
            "{}",
            serde_json::json!({ "rows_modified": rows_modified })
        )?;
        out.flush()?;
    }
    Ok(())
}

async fn database_client(args: &Args) -> Result<DatabaseClient> {
    let credentials: Credentials = match &args.token_file {
        Some(path) => Credentials::from(BearerToken::from_file(path)?),
        None => anonymous::Builder::new().build(),
    };
    let mut builder = Spanner::builder()
        .with_endpoint(args.endpoint.clone())
        .with_credentials(credentials);
    if let Some(ca) = &args.ca {
        if !args.endpoint.to_ascii_lowercase().starts_with("https://") {
            return Err(coded(
                "INVALID_ARGUMENT",
                "--ca needs an https:// --endpoint",
            ));
        }
        let pem = std::fs::read(ca).map_err(|e| {
            coded(
                "INVALID_ARGUMENT",
                format!("reading --ca {}: {e}", ca.display()),
            )
        })?;
        // The only public way to give the client a custom trust root is the Spanner Omni TLS
        // option. It also switches the instance type to Omni, so switch it back to Cloud: the
        // TLS settings are applied regardless of the instance type.
        builder = builder
            .with_omni_tls(TlsConfig::new().with_root_certificate_pem(pem))
            .with_instance_type(InstanceType::Cloud);
    }
    let spanner = builder.build().await.map_err(|e| {
        coded(
            "INVALID_ARGUMENT",
            format!("building the Spanner client: {}", chain(&e)),
        )
    })?;
    let mut db = spanner.database_client(args.database.clone());
    if let Some(role) = &args.role {
        db = db.with_database_role(role.clone());
    }
    // The client retries CreateSession on transport errors (e.g. connection refused) without
    // limit; stop after 3 attempts so an unreachable endpoint reports UNAVAILABLE instead of
    // running into --timeout.
    let mut options = RequestOptions::default();
    options.set_retry_policy(SpannerRetryPolicy::new().with_attempt_limit(3));
    db = db.with_request_options(options);
    // Creates the multiplexed session (CreateSession with creator_role).
    Ok(db.build().await?)
}

async fn query(client: &DatabaseClient, sql: &str) -> Result<Vec<Vec<serde_json::Value>>> {
    let transaction = client.single_use().build();
    let mut result_set = transaction.execute_query(sql).await?;
    let types = result_set.metadata().column_types().to_vec();
    let mut rows = Vec::new();
    while let Some(row) = result_set.next().await {
        let row = row?;
        rows.push(
            row.raw_values()
                .iter()
                .enumerate()
                .map(|(i, value)| to_json(value, types.get(i)))
                .collect(),
        );
    }
    Ok(rows)
}

async fn update(client: &DatabaseClient, dml: &str) -> Result<i64> {
    let runner = client.read_write_transaction().build();
    let outcome = runner
        .run(async |transaction| {
            transaction
                .execute_update(Statement::builder(dml).build())
                .await
        })
        .await?;
    Ok(outcome.result)
}

/// Converts a Spanner wire value to JSON. INT64 values (which travel as decimal strings) become
/// JSON numbers, also inside arrays; every other type keeps its wire form (FLOAT64 a number or
/// "NaN"/"Infinity", BOOL a boolean, STRING/BYTES(base64)/NUMERIC/DATE/TIMESTAMP/JSON strings,
/// ARRAY/STRUCT arrays, NULL null).
fn to_json(value: &Value, ty: Option<&Type>) -> serde_json::Value {
    use serde_json::Value as J;
    let code = ty.map(Type::code);
    match value.kind() {
        Kind::Null | Kind::Unknown => J::Null,
        Kind::Bool => value.as_bool().map_or(J::Null, J::Bool),
        Kind::Number => value
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(J::Null, J::Number),
        Kind::String => {
            let s = value.as_str().unwrap_or_default();
            match (code, s.parse::<i64>()) {
                (Some(TypeCode::Int64), Ok(n)) => J::from(n),
                _ => J::String(s.to_string()),
            }
        }
        Kind::List => {
            let element = ty.and_then(Type::array_element_type);
            let items = value.as_list().map(|list| {
                list.iter()
                    .map(|item| to_json(item, element))
                    .collect::<Vec<_>>()
            });
            J::Array(items.unwrap_or_default())
        }
    }
}

/// `error: source: source ...` on one line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// Prints `ERROR <CODE> <message>` (one line), then the cause chain and any `google.rpc.Status`
/// details (e.g. RetryInfo, ResourceInfo) on the following lines.
fn report(err: &anyhow::Error) {
    let (code, message) = classify(err);
    let message = message.replace(['\n', '\r'], " ");
    eprintln!("ERROR {code} {message}");
    for cause in err.chain() {
        eprintln!("  caused by: {cause}");
        if let Some(status) = cause
            .downcast_ref::<google_cloud_spanner::Error>()
            .and_then(google_cloud_spanner::Error::status)
            && !status.details.is_empty()
        {
            eprintln!("  status details: {:?}", status.details);
        }
    }
}

fn classify(err: &anyhow::Error) -> (String, String) {
    for cause in err.chain() {
        if let Some(coded) = cause.downcast_ref::<Coded>() {
            return (coded.code.to_string(), coded.message.clone());
        }
        if let Some(e) = cause.downcast_ref::<google_cloud_spanner::Error>() {
            if let Some(status) = e.status() {
                return (status.code.name().to_string(), status.message.clone());
            }
            let code = if e.is_timeout() {
                "DEADLINE_EXCEEDED"
            } else if e.is_authentication() {
                "UNAUTHENTICATED"
            } else if e.is_connect() || e.is_transport() || e.is_io() {
                "UNAVAILABLE"
            } else {
                "UNKNOWN"
            };
            return (code.to_string(), chain(e));
        }
    }
    ("UNKNOWN".to_string(), format!("{err:#}"))
}
