//! `mkreq`: prepares and checks the benchmark's requests.
//!
//!     mkreq create-session --endpoint URL [--authorization 'Bearer …'] [--database D] [--role R]
//!         calls CreateSession and prints the session name (through intentgate this binds the
//!         session to the caller's database role);
//!     mkreq get-session --endpoint URL --name NAME [--authorization …]
//!         prints the session's `creator_role` (to check what a proxy bound it to);
//!     mkreq request --session NAME [--sql 'SELECT 1'] --out FILE
//!         writes the gRPC-framed ExecuteSqlRequest that `h2load -d FILE` sends;
//!     mkreq probe --endpoint URL --session NAME [--authorization …] [--sql 'SELECT <n>']
//!         one ExecuteSql, checked end to end (grpc-status 0 and the row `<n>`);
//!     mkreq free-port
//!         prints a currently free 127.0.0.1 port (for configs that need a fixed port).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use googleapis_tonic_google_spanner_v1::google::spanner::v1 as pb;
use intentgate_bench::grpc::{self, Client};
use prost_types::value::Kind;

/// Prepares and checks Spanner benchmark requests.
#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a session and print its name.
    CreateSession {
        /// The endpoint, `http://host:port`.
        #[arg(long)]
        endpoint: String,
        /// The `authorization` header value to send, if any.
        #[arg(long)]
        authorization: Option<String>,
        /// The database.
        #[arg(long, default_value = "projects/p/instances/i/databases/d")]
        database: String,
        /// A `creator_role` to ask for (intentgate refuses one that differs from the policy's).
        #[arg(long)]
        role: Option<String>,
    },
    /// Print a session's `creator_role`.
    GetSession {
        /// The endpoint, `http://host:port`.
        #[arg(long)]
        endpoint: String,
        /// The session name.
        #[arg(long)]
        name: String,
        /// The `authorization` header value to send, if any.
        #[arg(long)]
        authorization: Option<String>,
    },
    /// Write a gRPC-framed ExecuteSqlRequest to a file.
    Request {
        /// The session name.
        #[arg(long)]
        session: String,
        /// The SQL.
        #[arg(long, default_value = "SELECT 1")]
        sql: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run one ExecuteSql `SELECT <n>` and check the answer.
    Probe {
        /// The endpoint, `http://host:port`.
        #[arg(long)]
        endpoint: String,
        /// The session name.
        #[arg(long)]
        session: String,
        /// The `authorization` header value to send, if any.
        #[arg(long)]
        authorization: Option<String>,
        /// The SQL; must be `SELECT <int>`.
        #[arg(long, default_value = "SELECT 1")]
        sql: String,
    },
    /// Print a free 127.0.0.1 port.
    FreePort,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args.command))
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::CreateSession {
            endpoint,
            authorization,
            database,
            role,
        } => {
            let mut client = Client::connect(&endpoint).await?;
            let req = pb::CreateSessionRequest {
                database,
                session: role.map(|creator_role| pb::Session {
                    creator_role,
                    ..Default::default()
                }),
            };
            let session: pb::Session = client
                .spanner("CreateSession", &req, authorization.as_deref())
                .await
                .context("CreateSession failed")?;
            println!("{}", session.name);
        }
        Command::GetSession {
            endpoint,
            name,
            authorization,
        } => {
            let mut client = Client::connect(&endpoint).await?;
            let session: pb::Session = client
                .spanner(
                    "GetSession",
                    &pb::GetSessionRequest { name },
                    authorization.as_deref(),
                )
                .await
                .context("GetSession failed")?;
            println!("{}", session.creator_role);
        }
        Command::Request { session, sql, out } => {
            let body = grpc::frame(&pb::ExecuteSqlRequest {
                session,
                sql,
                ..Default::default()
            })?;
            std::fs::write(&out, &body)
                .with_context(|| format!("cannot write {}", out.display()))?;
        }
        Command::Probe {
            endpoint,
            session,
            authorization,
            sql,
        } => {
            let want = sql
                .trim()
                .strip_prefix("SELECT ")
                .map(|n| n.trim().to_string())
                .context("probe SQL must be `SELECT <int>`")?;
            let mut client = Client::connect(&endpoint).await?;
            let req = pb::ExecuteSqlRequest {
                session,
                sql,
                ..Default::default()
            };
            let rs: pb::ResultSet = client
                .spanner("ExecuteSql", &req, authorization.as_deref())
                .await
                .context("ExecuteSql probe failed")?;
            let got = rs
                .rows
                .first()
                .and_then(|r| r.values.first())
                .and_then(|v| v.kind.as_ref());
            match got {
                Some(Kind::StringValue(v)) if *v == want => println!("ok: {endpoint} -> {v}"),
                other => bail!("ExecuteSql probe: expected one row [{want}], got {other:?}"),
            }
        }
        Command::FreePort => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            println!("{}", listener.local_addr()?.port());
        }
    }
    Ok(())
}
