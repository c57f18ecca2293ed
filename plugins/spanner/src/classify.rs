//! Turns a `google.spanner.v1.Spanner` call into one Cedar request, from the
//! first request message's raw protobuf bytes.
//!
//! * resource: the database named by field 1 (`database`, or the database
//!   part of `session` / `name`), parent: its instance;
//! * action: `read`, `write` or `connect`, decided from the message
//!   structure (RPC and transaction selector), never from SQL text;
//! * context: `rpc`, `session`, `sql_kind`, `tables`, `transaction`;
//! * capability: the session name, for every RPC that runs in a session;
//! * binding: `database_role` for session creation (forced by `bind`) and
//!   for every session-scoped RPC (checked by the host against the role the
//!   session is bound to);
//! * replay-safe: what Spanner's own service config retries, except a
//!   single-use Commit.
//!
//! Every field this module interprets must occur at most once with the
//! expected wire type: a repeated singular field is merged or overwritten by
//! protobuf parsers ("last one wins"), so a proxy reading the first
//! occurrence and a server reading the last could disagree. Such messages
//! are refused as `malformed`.

use serde_json::json;

use crate::config::SpannerConfig;
use crate::names::{self, Kind};
use crate::wire::{self, Field, Value, WireError};

/// The Cedar type of the actions, e.g. `Spanner::Action::"read"`.
pub const ACTION_TYPE: &str = "Spanner::Action";
/// The Cedar type of the resources.
pub const DATABASE_TYPE: &str = "Spanner::Database";
/// The Cedar type of the resources' parents.
pub const INSTANCE_TYPE: &str = "Spanner::Instance";
/// The only `call.protocol` this connector classifies.
pub const GRPC: &str = "grpc";
/// The gRPC service every supported method belongs to.
pub const SERVICE_PREFIX: &str = "/google.spanner.v1.Spanner/";
/// Field names `Rpc::field2` / `Rpc::field3` return and `classify` matches.
const TRANSACTION: &str = "transaction";
const SQL: &str = "sql";
const TABLE: &str = "table";
/// Longest `table` accepted into the context, in bytes.
const MAX_TABLE_BYTES: usize = 1024;
/// The policy annotation that names a session's database role.
pub const BINDING_ANNOTATION: &str = "database_role";

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The call is malformed or ambiguous.
    Malformed(String),
    /// The call is outside what this connector understands.
    Unsupported(String),
}

fn malformed(m: impl Into<String>) -> Refusal {
    Refusal::Malformed(m.into())
}

fn wire_error(what: &str, e: WireError) -> Refusal {
    Refusal::Malformed(format!("{what} is not valid protobuf: {}", e.0))
}

/// The `google.spanner.v1.Spanner` RPCs this connector knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    CreateSession,
    BatchCreateSessions,
    GetSession,
    ListSessions,
    DeleteSession,
    ExecuteSql,
    ExecuteStreamingSql,
    ExecuteBatchDml,
    Read,
    StreamingRead,
    BeginTransaction,
    Commit,
    Rollback,
    PartitionQuery,
    PartitionRead,
    BatchWrite,
}

impl Rpc {
    /// Every known RPC.
    pub const ALL: [Rpc; 16] = [
        Rpc::CreateSession,
        Rpc::BatchCreateSessions,
        Rpc::GetSession,
        Rpc::ListSessions,
        Rpc::DeleteSession,
        Rpc::ExecuteSql,
        Rpc::ExecuteStreamingSql,
        Rpc::ExecuteBatchDml,
        Rpc::Read,
        Rpc::StreamingRead,
        Rpc::BeginTransaction,
        Rpc::Commit,
        Rpc::Rollback,
        Rpc::PartitionQuery,
        Rpc::PartitionRead,
        Rpc::BatchWrite,
    ];

    /// The method name, as in `/google.spanner.v1.Spanner/<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Rpc::CreateSession => "CreateSession",
            Rpc::BatchCreateSessions => "BatchCreateSessions",
            Rpc::GetSession => "GetSession",
            Rpc::ListSessions => "ListSessions",
            Rpc::DeleteSession => "DeleteSession",
            Rpc::ExecuteSql => "ExecuteSql",
            Rpc::ExecuteStreamingSql => "ExecuteStreamingSql",
            Rpc::ExecuteBatchDml => "ExecuteBatchDml",
            Rpc::Read => "Read",
            Rpc::StreamingRead => "StreamingRead",
            Rpc::BeginTransaction => "BeginTransaction",
            Rpc::Commit => "Commit",
            Rpc::Rollback => "Rollback",
            Rpc::PartitionQuery => "PartitionQuery",
            Rpc::PartitionRead => "PartitionRead",
            Rpc::BatchWrite => "BatchWrite",
        }
    }

    /// Whether field 1 of the request is a session name: the RPC runs in
    /// (or on) an existing session, and presents it as a capability.
    /// Everything except CreateSession, BatchCreateSessions, ListSessions.
    pub fn session_scoped(self) -> bool {
        self.field1().0 == Kind::Session
    }

    /// Whether Spanner's published service config
    /// (`google/spanner/v1/spanner_grpc_service_config.json`) has clients
    /// retry this RPC when it fails with UNAVAILABLE: the unary RPCs that
    /// are idempotent or replay-protected (ExecuteSql and ExecuteBatchDml by
    /// `seqno`, Commit by its transaction id). The streaming RPCs are not
    /// among them: clients resume those with resume tokens instead.
    pub fn retried_by_spanner(self) -> bool {
        match self {
            Rpc::CreateSession
            | Rpc::BatchCreateSessions
            | Rpc::GetSession
            | Rpc::DeleteSession
            | Rpc::ListSessions
            | Rpc::ExecuteSql
            | Rpc::ExecuteBatchDml
            | Rpc::Read
            | Rpc::BeginTransaction
            | Rpc::Commit
            | Rpc::Rollback
            | Rpc::PartitionQuery
            | Rpc::PartitionRead => true,
            Rpc::ExecuteStreamingSql | Rpc::StreamingRead | Rpc::BatchWrite => false,
        }
    }

    /// What field 1 of the request names.
    fn field1(self) -> (Kind, &'static str) {
        match self {
            Rpc::CreateSession | Rpc::BatchCreateSessions | Rpc::ListSessions => {
                (Kind::Database, "database")
            }
            Rpc::GetSession | Rpc::DeleteSession => (Kind::Session, "name"),
            _ => (Kind::Session, "session"),
        }
    }

    /// What field 2 of the request holds, when this module reads it.
    fn field2(self) -> Option<&'static str> {
        match self {
            Rpc::ExecuteSql
            | Rpc::ExecuteStreamingSql
            | Rpc::ExecuteBatchDml
            | Rpc::Read
            | Rpc::StreamingRead
            | Rpc::PartitionQuery
            | Rpc::PartitionRead => Some(TRANSACTION),
            Rpc::BeginTransaction => Some("options"),
            Rpc::Commit | Rpc::Rollback => Some("transaction_id"),
            Rpc::CreateSession => Some("session"),
            Rpc::BatchCreateSessions => Some("session_template"),
            Rpc::GetSession | Rpc::ListSessions | Rpc::DeleteSession | Rpc::BatchWrite => None,
        }
    }

    /// What singular field 3 of the request holds, when this module reads it.
    fn field3(self) -> Option<&'static str> {
        match self {
            Rpc::ExecuteSql | Rpc::ExecuteStreamingSql | Rpc::PartitionQuery => Some(SQL),
            Rpc::Read | Rpc::StreamingRead | Rpc::PartitionRead => Some(TABLE),
            Rpc::Commit => Some("single_use_transaction"),
            _ => None,
        }
    }
}

/// Parses `/google.spanner.v1.Spanner/<Rpc>`.
pub fn parse_method(method: &str) -> Result<Rpc, Refusal> {
    let Some(name) = method.strip_prefix(SERVICE_PREFIX) else {
        return Err(Refusal::Unsupported(format!(
            "{} is not a google.spanner.v1.Spanner method",
            names::shown(method)
        )));
    };
    Rpc::ALL
        .into_iter()
        .find(|r| r.name() == name)
        .ok_or_else(|| {
            Refusal::Unsupported(format!(
                "Spanner RPC {} is not supported by this connector",
                names::shown(name)
            ))
        })
}

/// The action a call is authorized as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
    Connect,
}

impl Action {
    pub fn id(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Connect => "connect",
        }
    }
}

/// The mode of a `TransactionOptions` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `read_only` (field 2), and no field this connector does not know.
    ReadOnly,
    /// `read_write` (field 1).
    ReadWrite,
    /// `partitioned_dml` (field 3).
    PartitionedDml,
    /// No mode, or fields this connector does not know (a newer mode could
    /// be among them): treated as read-write.
    Unknown,
}

/// A request's transaction, as reported in `context.transaction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transaction {
    /// No selector, an empty selector (Spanner's default: a single-use
    /// strong read-only transaction), or an RPC without a transaction.
    None,
    /// `single_use` (or Commit's `single_use_transaction`), any mode.
    SingleUse,
    /// `begin` (or BeginTransaction's `options`) with `read_only`.
    BeginReadOnly,
    /// `begin` with `read_write`, or with no or an unknown mode.
    BeginReadWrite,
    /// `begin` with `partitioned_dml`.
    PartitionedDml,
    /// An existing transaction's id (`id`, Commit's and Rollback's
    /// `transaction_id`).
    Id,
}

impl Transaction {
    pub fn as_str(self) -> &'static str {
        match self {
            Transaction::None => "none",
            Transaction::SingleUse => "single_use",
            Transaction::BeginReadOnly => "begin_read_only",
            Transaction::BeginReadWrite => "begin_read_write",
            Transaction::PartitionedDml => "partitioned_dml",
            Transaction::Id => "id",
        }
    }

    fn begin(mode: Mode) -> Self {
        match mode {
            Mode::ReadOnly => Transaction::BeginReadOnly,
            Mode::PartitionedDml => Transaction::PartitionedDml,
            Mode::ReadWrite | Mode::Unknown => Transaction::BeginReadWrite,
        }
    }
}

/// A `TransactionSelector` (or its absence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    /// Absent or empty: a single-use strong read-only transaction.
    Default,
    SingleUse(Mode),
    Id,
    Begin(Mode),
}

impl Selector {
    fn transaction(self) -> Transaction {
        match self {
            Selector::Default => Transaction::None,
            Selector::SingleUse(_) => Transaction::SingleUse,
            Selector::Id => Transaction::Id,
            Selector::Begin(mode) => Transaction::begin(mode),
        }
    }

    /// The action for an RPC that runs in this selector's transaction.
    /// `id_reads_only`: the RPC cannot change data whatever the transaction
    /// (Read, StreamingRead, PartitionQuery, PartitionRead), so running it in
    /// an existing transaction is a read.
    fn action(self, id_reads_only: bool) -> Action {
        match self {
            Selector::Default
            | Selector::SingleUse(Mode::ReadOnly)
            | Selector::Begin(Mode::ReadOnly) => Action::Read,
            Selector::Id if id_reads_only => Action::Read,
            Selector::SingleUse(_) | Selector::Begin(_) | Selector::Id => Action::Write,
        }
    }
}

/// Records the only occurrence of a length-delimited field.
pub(crate) fn once<'a>(
    slot: &mut Option<&'a [u8]>,
    field: Field<'a>,
    what: &str,
) -> Result<(), Refusal> {
    let Value::Bytes(bytes) = field.value else {
        return Err(malformed(format!(
            "field {} (`{what}`) has wire type {}, expected length-delimited",
            field.number,
            field.value.wire_name()
        )));
    };
    if slot.is_some() {
        return Err(malformed(format!(
            "field {} (`{what}`) occurs more than once; a repeated singular field is ambiguous",
            field.number
        )));
    }
    *slot = Some(bytes);
    Ok(())
}

/// Reads a protobuf `string` field's bytes.
pub(crate) fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, Refusal> {
    std::str::from_utf8(bytes).map_err(|_| malformed(format!("`{what}` is not valid UTF-8")))
}

/// Parses a `TransactionOptions` message.
pub fn parse_options(bytes: &[u8]) -> Result<Mode, Refusal> {
    let mut mode: Option<Mode> = None;
    let mut unknown = false;
    for field in wire::fields(bytes) {
        let field = field.map_err(|e| wire_error("TransactionOptions", e))?;
        let this = match field.number {
            1 => Mode::ReadWrite,
            2 => Mode::ReadOnly,
            3 => Mode::PartitionedDml,
            5 | 6 => continue,
            _ => {
                unknown = true;
                continue;
            }
        };
        if !matches!(field.value, Value::Bytes(_)) {
            return Err(malformed(format!(
                "TransactionOptions field {} has wire type {}, expected a message",
                field.number,
                field.value.wire_name()
            )));
        }
        if mode.is_some() {
            return Err(malformed(
                "TransactionOptions sets its mode (read_write, read_only, partitioned_dml) more than once",
            ));
        }
        mode = Some(this);
    }
    Ok(match mode {
        Some(Mode::ReadOnly) if unknown => Mode::Unknown,
        Some(m) => m,
        None => Mode::Unknown,
    })
}

/// Parses a `TransactionSelector` message.
pub fn parse_selector(bytes: &[u8]) -> Result<Selector, Refusal> {
    let mut selector = Selector::Default;
    let mut seen = false;
    for field in wire::fields(bytes) {
        let field = field.map_err(|e| wire_error("TransactionSelector", e))?;
        let Value::Bytes(inner) = field.value else {
            return Err(malformed(format!(
                "TransactionSelector field {} has wire type {}, expected length-delimited",
                field.number,
                field.value.wire_name()
            )));
        };
        selector = match field.number {
            1 => Selector::SingleUse(parse_options(inner)?),
            2 => Selector::Id,
            3 => Selector::Begin(parse_options(inner)?),
            n => {
                return Err(malformed(format!(
                    "TransactionSelector has unknown field {n}"
                )));
            }
        };
        if seen {
            return Err(malformed(
                "TransactionSelector sets more than one of single_use, id, begin (or one twice)",
            ));
        }
        seen = true;
    }
    Ok(selector)
}

/// A cheap first-keyword classification of SQL text, for the context only
/// (never for the action): `query`, `dml`, `ddl`, or `""`.
pub fn sql_kind(sql: &str) -> &'static str {
    let mut rest = sql;
    loop {
        let trimmed = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(after) = trimmed
            .strip_prefix("--")
            .or_else(|| trimmed.strip_prefix('#'))
        {
            rest = after.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(after) = trimmed.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r);
        } else if let Some(after) = trimmed.strip_prefix("@{") {
            // A GoogleSQL statement hint.
            rest = after.split_once('}').map_or("", |(_, r)| r);
        } else {
            rest = trimmed;
            break;
        }
    }
    let end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let word = rest[..end].to_ascii_uppercase();
    match word.as_str() {
        "SELECT" | "WITH" | "FROM" | "GRAPH" | "VALUES" | "TABLE" | "SHOW" => "query",
        "INSERT" | "UPDATE" | "DELETE" | "MERGE" => "dml",
        "CREATE" | "ALTER" | "DROP" | "RENAME" | "GRANT" | "REVOKE" | "ANALYZE" | "TRUNCATE" => {
            "ddl"
        }
        _ => "",
    }
}

/// Whether a call may be sent upstream again after an attempt failed before
/// any response reached the caller: the RPCs Spanner's service config
/// retries ([`Rpc::retried_by_spanner`]), except a Commit with
/// `single_use_transaction`. That one is not replay-protected (Spanner:
/// "mutations can be applied more than once"), as there is no transaction
/// id to deduplicate it by.
pub fn replay_safe(rpc: Rpc, transaction: Transaction) -> bool {
    rpc.retried_by_spanner() && !(rpc == Rpc::Commit && transaction == Transaction::SingleUse)
}

/// The result of classifying one call, independent of the WIT bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub rpc: Rpc,
    pub action: Action,
    /// `projects/<p>/instances/<i>/databases/<d>`: the resource id.
    pub database: String,
    /// `projects/<p>/instances/<i>`: the resource's parent.
    pub instance: String,
    /// The session name, `""` for RPCs that name a database.
    pub session: String,
    pub transaction: Transaction,
    pub sql_kind: &'static str,
    /// The `table` of Read, StreamingRead and PartitionRead (when not empty).
    pub tables: Vec<String>,
    /// The capability the call presents: its session name, for every
    /// session-scoped RPC ([`Rpc::session_scoped`]); `None` for
    /// CreateSession, BatchCreateSessions and ListSessions.
    pub capability: Option<String>,
    /// [`BINDING_ANNOTATION`] for session creation (then `bind` forces the
    /// role) and for every call with a capability (then the host checks the
    /// session's bound role against the permits); `None` for ListSessions.
    pub binding_annotation: Option<&'static str>,
    /// Whether the host must show the response to `observe`: session
    /// creation, which teaches the new sessions' roles.
    pub observe_response: bool,
    /// See [`replay_safe`].
    pub replay_safe: bool,
}

impl Classified {
    /// The connector's context object (the host adds `gate`).
    pub fn context_json(&self) -> String {
        json!({
            "rpc": self.rpc.name(),
            "session": self.session,
            "sql_kind": self.sql_kind,
            "tables": self.tables,
            "transaction": self.transaction.as_str(),
        })
        .to_string()
    }
}

/// The top-level fields of a request that this module reads.
pub(crate) struct Request<'a> {
    pub rpc: Rpc,
    /// Field 1, parsed.
    pub names: names::Names<'a>,
    pub field2: Option<&'a [u8]>,
    /// CreateSession's `session` / BatchCreateSessions' `session_template`:
    /// every occurrence, in order. Protobuf merges repeated embedded
    /// messages (a proxy in front of this one may have appended a
    /// `creator_role`), so these are read merged, not refused.
    pub session_parts: Vec<&'a [u8]>,
    pub field3: Option<&'a [u8]>,
    /// ExecuteBatchDml: the combined `sql_kind` of its statements.
    pub batch_kind: Option<&'static str>,
}

/// How much of a request `read_request` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// Field 1 and every field that decides the action (classify, bind).
    All,
    /// Field 1 only (observe, which may be shown the request with the
    /// binding's bytes appended, so field 2 occurs twice there).
    NameOnly,
}

/// Checks the call's envelope and reads the request's top-level fields.
/// Used by `classify`, `bind` and `observe` alike.
pub(crate) fn read_request<'a>(
    config: &SpannerConfig,
    protocol: &str,
    method: &str,
    path: &str,
    body: &'a [u8],
    reading: Reading,
) -> Result<Request<'a>, Refusal> {
    if protocol != GRPC {
        return Err(Refusal::Unsupported(format!(
            "the spanner connector classifies gRPC calls only, not {}",
            names::shown(protocol)
        )));
    }
    let rpc = parse_method(method)?;
    if path != method {
        return Err(malformed(format!(
            "gRPC path {} differs from the method {}",
            names::shown(path),
            names::shown(method)
        )));
    }
    if body.len() > config.max_message_bytes {
        return Err(malformed(format!(
            "the first {} message is {} bytes, over max_message_bytes ({})",
            rpc.name(),
            body.len(),
            config.max_message_bytes
        )));
    }
    let (kind, field1_name) = rpc.field1();
    let all = reading == Reading::All;
    let field2_name = rpc.field2().filter(|_| all);
    let field3_name = rpc.field3().filter(|_| all);
    let mut field1 = None;
    let mut field2 = None;
    let mut field3 = None;
    let mut session_parts = Vec::new();
    let mut batch_kind: Option<&'static str> = None;
    for field in wire::fields(body) {
        let field = field.map_err(|e| wire_error(rpc.name(), e))?;
        match field.number {
            1 => once(&mut field1, field, field1_name)?,
            2 => {
                if let Some(what) = field2_name {
                    if matches!(rpc, Rpc::CreateSession | Rpc::BatchCreateSessions) {
                        let mut part = None;
                        once(&mut part, field, what)?;
                        session_parts.push(part.unwrap_or_default());
                    } else {
                        once(&mut field2, field, what)?;
                    }
                }
            }
            3 => {
                if let Some(what) = field3_name {
                    once(&mut field3, field, what)?;
                } else if all && rpc == Rpc::ExecuteBatchDml {
                    let mut one = None;
                    once(&mut one, field, "statements")?;
                    let kind = statement_kind(one.unwrap_or_default())?;
                    batch_kind = Some(match batch_kind {
                        None => kind,
                        Some(k) if k == kind => k,
                        Some(_) => "",
                    });
                }
            }
            _ => {}
        }
    }
    let Some(name) = field1.filter(|b| !b.is_empty()) else {
        return Err(malformed(format!(
            "{} has no `{field1_name}` (field 1)",
            rpc.name()
        )));
    };
    let name = utf8(name, field1_name)?;
    let names = names::parse(name, kind).map_err(|e| malformed(format!("`{field1_name}`: {e}")))?;
    if !config.serves(names.instance) {
        return Err(malformed(format!(
            "database {} is not in a configured instance",
            names::shown(names.database)
        )));
    }
    Ok(Request {
        rpc,
        names,
        field2,
        session_parts,
        field3,
        batch_kind,
    })
}

/// The `sql_kind` of one `ExecuteBatchDmlRequest.Statement`.
fn statement_kind(bytes: &[u8]) -> Result<&'static str, Refusal> {
    let mut sql = None;
    for field in wire::fields(bytes) {
        let field = field.map_err(|e| wire_error("ExecuteBatchDml statement", e))?;
        if field.number == 1 {
            once(&mut sql, field, "statements.sql")?;
        }
    }
    Ok(sql_kind(utf8(sql.unwrap_or_default(), "statements.sql")?))
}

/// The only metadata `classify` reads (declared in the plugin's metadata, so
/// the host passes nothing else).
pub const ROUTING_HEADERS: [&str; 2] = [RESOURCE_PREFIX, REQUEST_PARAMS];
const RESOURCE_PREFIX: &str = "google-cloud-resource-prefix";
const REQUEST_PARAMS: &str = "x-goog-request-params";

/// Refuses a call whose routing metadata names another database than its
/// message. Spanner acts on the message, but the metadata routes the call
/// and lands in logs; a disagreement is never legitimate. This only ever
/// denies: nothing is authorized on headers.
fn check_routing_headers(headers: &[(String, String)], database: &str) -> Result<(), Refusal> {
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(RESOURCE_PREFIX) {
            if value != database {
                return Err(malformed(format!(
                    "header google-cloud-resource-prefix {} does not name the request's database {}",
                    names::shown(value),
                    names::shown(database)
                )));
            }
        } else if name.eq_ignore_ascii_case(REQUEST_PARAMS) {
            for pair in value.split('&').filter(|p| !p.is_empty()) {
                let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
                if !matches!(key, "database" | "session" | "name") {
                    continue;
                }
                let decoded = percent_decode(raw).ok_or_else(|| {
                    malformed(format!(
                        "header x-goog-request-params has a malformed value for `{key}`"
                    ))
                })?;
                let named = names::parse(&decoded, Kind::Session)
                    .or_else(|_| names::parse(&decoded, Kind::Database))
                    .map(|n| n.database == database)
                    .unwrap_or(false);
                if !named {
                    return Err(malformed(format!(
                        "header x-goog-request-params `{key}` {} does not name the request's database {}",
                        names::shown(&decoded),
                        names::shown(database)
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Decodes `%XX` escapes (and `+` as a space, as form encoding does);
/// `None` for a malformed escape or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Classifies one call. `headers` are the gRPC metadata (names lowercase).
pub fn classify(
    config: &SpannerConfig,
    protocol: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Classified, Refusal> {
    let req = read_request(config, protocol, method, path, body, Reading::All)?;
    check_routing_headers(headers, req.names.database)?;
    let rpc = req.rpc;

    let selector = match (rpc.field2(), req.field2) {
        (Some(TRANSACTION), Some(bytes)) => parse_selector(bytes)?,
        _ => Selector::Default,
    };
    let (action, transaction) = match rpc {
        Rpc::CreateSession | Rpc::BatchCreateSessions => {
            // Checked again in `bind`; refused early when unreadable.
            crate::bind::requested_role(rpc, &req.session_parts)?;
            (Action::Connect, Transaction::None)
        }
        Rpc::GetSession | Rpc::ListSessions | Rpc::DeleteSession => {
            (Action::Read, Transaction::None)
        }
        Rpc::ExecuteSql | Rpc::ExecuteStreamingSql => {
            (selector.action(false), selector.transaction())
        }
        Rpc::Read | Rpc::StreamingRead | Rpc::PartitionQuery | Rpc::PartitionRead => {
            (selector.action(true), selector.transaction())
        }
        Rpc::ExecuteBatchDml => (Action::Write, selector.transaction()),
        Rpc::BeginTransaction => {
            let mode = match req.field2 {
                Some(bytes) => parse_options(bytes)?,
                None => Mode::Unknown,
            };
            let action = if mode == Mode::ReadOnly {
                Action::Read
            } else {
                Action::Write
            };
            (action, Transaction::begin(mode))
        }
        Rpc::Commit => {
            // `transaction_id` (2) and `single_use_transaction` (3) are one
            // oneof: at most one of them.
            let transaction = match (req.field2, req.field3) {
                (Some(_), Some(_)) => {
                    return Err(malformed(
                        "Commit sets both transaction_id and single_use_transaction",
                    ));
                }
                (Some(_), None) => Transaction::Id,
                (None, Some(options)) => {
                    parse_options(options)?;
                    Transaction::SingleUse
                }
                (None, None) => Transaction::None,
            };
            (Action::Write, transaction)
        }
        Rpc::Rollback => (Action::Read, Transaction::Id),
        Rpc::BatchWrite => (Action::Write, Transaction::None),
    };

    let sql_kind = match (rpc.field3(), rpc) {
        (Some(SQL), _) => sql_kind(utf8(req.field3.unwrap_or_default(), SQL)?),
        (_, Rpc::ExecuteBatchDml) => req.batch_kind.unwrap_or(""),
        _ => "",
    };
    let mut tables = Vec::new();
    if rpc.field3() == Some(TABLE) {
        let table = utf8(req.field3.unwrap_or_default(), TABLE)?;
        if table.len() > MAX_TABLE_BYTES {
            return Err(malformed(format!(
                "`table` is {} bytes, over {MAX_TABLE_BYTES}",
                table.len()
            )));
        }
        if !table.is_empty() {
            tables.push(table.to_string());
        }
    }

    let creates = matches!(rpc, Rpc::CreateSession | Rpc::BatchCreateSessions);
    let capability = req
        .names
        .session
        .filter(|_| rpc.session_scoped())
        .map(str::to_string);
    Ok(Classified {
        rpc,
        action,
        database: req.names.database.to_string(),
        instance: req.names.instance.to_string(),
        session: req.names.session.unwrap_or_default().to_string(),
        transaction,
        sql_kind,
        tables,
        binding_annotation: (creates || capability.is_some()).then_some(BINDING_ANNOTATION),
        capability,
        observe_response: creates,
        replay_safe: replay_safe(rpc, transaction),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_kinds() {
        for (sql, kind) in [
            ("SELECT 1", "query"),
            ("  select * from t", "query"),
            ("(SELECT 1) UNION ALL (SELECT 2)", "query"),
            ("WITH a AS (SELECT 1) SELECT * FROM a", "query"),
            (
                "-- c\n/* d */ # e\n @{USE_ADDITIONAL_PARALLELISM=TRUE} SELECT 1",
                "query",
            ),
            ("FROM t |> WHERE x = 1", "query"),
            ("INSERT INTO t (a) VALUES (1)", "dml"),
            ("update t set a = 1 where true", "dml"),
            ("DELETE FROM t WHERE true", "dml"),
            ("CREATE TABLE t (a INT64) PRIMARY KEY (a)", "ddl"),
            ("", ""),
            ("CALL cancel_query('1')", ""),
            ("/* unterminated", ""),
            ("-- only a comment", ""),
            ("SELECTX", ""),
            ("SELECT1", "query"),
        ] {
            assert_eq!(sql_kind(sql), kind, "{sql:?}");
        }
    }

    #[test]
    fn selector_actions() {
        use Selector::*;
        for (sel, id_reads_only, action) in [
            (Default, false, Action::Read),
            (SingleUse(Mode::ReadOnly), false, Action::Read),
            (Begin(Mode::ReadOnly), false, Action::Read),
            (SingleUse(Mode::ReadWrite), false, Action::Write),
            (SingleUse(Mode::Unknown), true, Action::Write),
            (Begin(Mode::ReadWrite), true, Action::Write),
            (Begin(Mode::PartitionedDml), true, Action::Write),
            (Begin(Mode::Unknown), true, Action::Write),
            (Id, false, Action::Write),
            (Id, true, Action::Read),
        ] {
            assert_eq!(sel.action(id_reads_only), action, "{sel:?} {id_reads_only}");
        }
    }

    #[test]
    fn options_and_selectors_from_bytes() {
        // read_only {} / read_write {} / partitioned_dml {}
        assert_eq!(parse_options(&[0x12, 0]), Ok(Mode::ReadOnly));
        assert_eq!(parse_options(&[0x0a, 0]), Ok(Mode::ReadWrite));
        assert_eq!(parse_options(&[0x1a, 0]), Ok(Mode::PartitionedDml));
        assert_eq!(parse_options(&[]), Ok(Mode::Unknown));
        // read_only plus isolation_level (known) / plus field 9 (unknown).
        assert_eq!(parse_options(&[0x12, 0, 0x30, 1]), Ok(Mode::ReadOnly));
        assert_eq!(parse_options(&[0x12, 0, 0x48, 1]), Ok(Mode::Unknown));
        // Two modes, the same mode twice, a mode with a scalar wire type.
        assert!(parse_options(&[0x12, 0, 0x0a, 0]).is_err());
        assert!(parse_options(&[0x12, 0, 0x12, 0]).is_err());
        assert!(parse_options(&[0x10, 1]).is_err());

        assert_eq!(parse_selector(&[]), Ok(Selector::Default));
        assert_eq!(parse_selector(&[0x12, 2, 1, 2]), Ok(Selector::Id));
        assert_eq!(
            parse_selector(&[0x0a, 2, 0x12, 0]),
            Ok(Selector::SingleUse(Mode::ReadOnly))
        );
        assert_eq!(
            parse_selector(&[0x1a, 2, 0x0a, 0]),
            Ok(Selector::Begin(Mode::ReadWrite))
        );
        // single_use read-only followed by begin read-write: protobuf keeps
        // the last oneof member, so this must not read as read-only.
        assert!(parse_selector(&[0x0a, 2, 0x12, 0, 0x1a, 2, 0x0a, 0]).is_err());
        assert!(parse_selector(&[0x12, 0, 0x12, 0]).is_err());
        assert!(parse_selector(&[0x22, 0]).is_err());
        assert!(parse_selector(&[0x10, 1]).is_err());
        assert!(parse_selector(&[0x0a, 5, 0x12]).is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%2fc+d").as_deref(), Some("a/b/c d"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn session_scoped_rpcs() {
        for rpc in Rpc::ALL {
            let expected = !matches!(
                rpc,
                Rpc::CreateSession | Rpc::BatchCreateSessions | Rpc::ListSessions
            );
            assert_eq!(rpc.session_scoped(), expected, "{rpc:?}");
        }
    }

    #[test]
    fn replay_safety() {
        let retried = [
            Rpc::CreateSession,
            Rpc::BatchCreateSessions,
            Rpc::GetSession,
            Rpc::DeleteSession,
            Rpc::ListSessions,
            Rpc::ExecuteSql,
            Rpc::ExecuteBatchDml,
            Rpc::Read,
            Rpc::BeginTransaction,
            Rpc::Commit,
            Rpc::Rollback,
            Rpc::PartitionQuery,
            Rpc::PartitionRead,
        ];
        for rpc in Rpc::ALL {
            assert_eq!(rpc.retried_by_spanner(), retried.contains(&rpc), "{rpc:?}");
        }
        assert!(replay_safe(Rpc::Commit, Transaction::Id));
        assert!(!replay_safe(Rpc::Commit, Transaction::SingleUse));
        assert!(replay_safe(Rpc::ExecuteSql, Transaction::SingleUse));
        assert!(!replay_safe(Rpc::StreamingRead, Transaction::None));
    }

    #[test]
    fn methods() {
        for rpc in Rpc::ALL {
            assert_eq!(
                parse_method(&format!("{SERVICE_PREFIX}{}", rpc.name())),
                Ok(rpc)
            );
        }
        for m in [
            "/google.spanner.v1.Spanner/FetchCacheUpdate",
            "/google.spanner.v1.Spanner/executeSql",
            "/google.spanner.v1.Spanner/",
            "/google.spanner.admin.database.v1.DatabaseAdmin/GetDatabase",
            "ExecuteSql",
        ] {
            assert!(
                matches!(parse_method(m), Err(Refusal::Unsupported(_))),
                "{m}"
            );
        }
    }
}
