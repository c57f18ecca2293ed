//! The stand-in's state (sessions, a transaction counter, injected aborts) and one synchronous
//! handler per implemented RPC. Handlers never wait on I/O, so they run inline on the connection
//! task; `ExecuteSql` on a known session takes one read lock and builds a tiny `ResultSet`.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use googleapis_tonic_google_spanner_v1::google::{rpc, spanner::v1 as pb};
use prost::Message;
use prost_types::value::Kind;
use prost_types::{Any, ListValue, Timestamp, Value};
use tonic::{Code, Status};

use super::sql::{Statement, classify};

/// How long a client is told to wait before retrying an injected abort.
const ABORT_RETRY_DELAY_NANOS: i32 = 10_000_000;

/// The stand-in's state. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct Standin {
    sessions: RwLock<HashMap<String, pb::Session>>,
    next_id: AtomicU64,
    aborts_left: AtomicU64,
    /// RPCs answered with OK, and with an error (the harness compares these with h2load's counts).
    pub ok: AtomicU64,
    /// RPCs answered with a non-OK status.
    pub errors: AtomicU64,
}

impl Standin {
    /// A stand-in whose first `aborts` commits fail with ABORTED (as `STANDIN_ABORT_COMMITS`).
    pub fn new(aborts: u64) -> Self {
        Self {
            aborts_left: AtomicU64::new(aborts),
            ..Self::default()
        }
    }

    /// Number of sessions currently stored.
    pub fn session_count(&self) -> usize {
        self.sessions.read().map_or(0, |s| s.len())
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn new_session(&self, database: &str, template: Option<&pb::Session>) -> pb::Session {
        let now = Timestamp::from(SystemTime::now());
        let template = template.cloned().unwrap_or_default();
        pb::Session {
            name: format!("{database}/sessions/standin-{}", self.id()),
            labels: template.labels,
            create_time: Some(now),
            approximate_last_use_time: Some(now),
            creator_role: template.creator_role,
            multiplexed: template.multiplexed,
        }
    }

    fn store(&self, sessions: &[pb::Session]) -> Result<(), Status> {
        let mut map = self.sessions.write().map_err(|_| poisoned())?;
        for s in sessions {
            map.insert(s.name.clone(), s.clone());
        }
        Ok(())
    }

    fn require_session(&self, name: &str) -> Result<(), Status> {
        let map = self.sessions.read().map_err(|_| poisoned())?;
        if map.contains_key(name) {
            Ok(())
        } else {
            Err(session_not_found(name))
        }
    }

    /// `CreateSession`: stores the session with the requested `creator_role` and `multiplexed`.
    pub fn create_session(&self, req: pb::CreateSessionRequest) -> Result<pb::Session, Status> {
        check_database(&req.database)?;
        let session = self.new_session(&req.database, req.session.as_ref());
        self.store(std::slice::from_ref(&session))?;
        Ok(session)
    }

    /// `BatchCreateSessions`: `session_count` sessions from the template.
    pub fn batch_create_sessions(
        &self,
        req: pb::BatchCreateSessionsRequest,
    ) -> Result<pb::BatchCreateSessionsResponse, Status> {
        check_database(&req.database)?;
        if !(1..=100).contains(&req.session_count) {
            return Err(Status::invalid_argument(
                "session_count must be between 1 and 100",
            ));
        }
        let session: Vec<_> = (0..req.session_count)
            .map(|_| self.new_session(&req.database, req.session_template.as_ref()))
            .collect();
        self.store(&session)?;
        Ok(pb::BatchCreateSessionsResponse { session })
    }

    /// `GetSession`: the stored session, `creator_role` included.
    pub fn get_session(&self, req: pb::GetSessionRequest) -> Result<pb::Session, Status> {
        let map = self.sessions.read().map_err(|_| poisoned())?;
        map.get(&req.name)
            .cloned()
            .ok_or_else(|| session_not_found(&req.name))
    }

    /// `DeleteSession`.
    pub fn delete_session(&self, req: pb::DeleteSessionRequest) -> Result<(), Status> {
        let mut map = self.sessions.write().map_err(|_| poisoned())?;
        map.remove(&req.name)
            .map(|_| ())
            .ok_or_else(|| session_not_found(&req.name))
    }

    /// `ExecuteSql`: `SELECT <int>` gives one INT64 row, DML gives `row_count_exact` 1. An inline
    /// `begin` returns the new transaction in `metadata.transaction`.
    pub fn execute_sql(&self, req: pb::ExecuteSqlRequest) -> Result<pb::ResultSet, Status> {
        self.require_session(&req.session)?;
        let statement = classify(&req.sql).ok_or_else(|| {
            Status::invalid_argument(format!(
                "the stand-in answers only `SELECT <int>` and DML, not {:?}",
                req.sql
            ))
        })?;
        let transaction = self.selected_transaction(req.transaction.as_ref(), statement)?;
        Ok(match statement {
            Statement::SelectInt(n) => pb::ResultSet {
                metadata: Some(pb::ResultSetMetadata {
                    row_type: Some(int64_row_type()),
                    transaction,
                    ..Default::default()
                }),
                rows: vec![ListValue {
                    // Spanner sends INT64 as a decimal string.
                    values: vec![Value {
                        kind: Some(Kind::StringValue(n.to_string())),
                    }],
                }],
                ..Default::default()
            },
            Statement::Dml => pb::ResultSet {
                metadata: Some(pb::ResultSetMetadata {
                    row_type: Some(pb::StructType::default()),
                    transaction,
                    ..Default::default()
                }),
                stats: Some(pb::ResultSetStats {
                    row_count: Some(pb::result_set_stats::RowCount::RowCountExact(1)),
                    ..Default::default()
                }),
                ..Default::default()
            },
        })
    }

    /// `ExecuteStreamingSql`: the `ExecuteSql` answer as one final `PartialResultSet`.
    pub fn execute_streaming_sql(
        &self,
        req: pb::ExecuteSqlRequest,
    ) -> Result<pb::PartialResultSet, Status> {
        let rs = self.execute_sql(req)?;
        Ok(pb::PartialResultSet {
            metadata: rs.metadata,
            values: rs.rows.into_iter().flat_map(|r| r.values).collect(),
            stats: rs.stats,
            last: true,
            ..Default::default()
        })
    }

    /// `BeginTransaction`.
    pub fn begin_transaction(
        &self,
        req: pb::BeginTransactionRequest,
    ) -> Result<pb::Transaction, Status> {
        self.require_session(&req.session)?;
        let read_only = req.options.as_ref().is_some_and(is_read_only);
        Ok(self.transaction(read_only))
    }

    /// `Commit`: ABORTED with a RetryInfo detail while injected aborts are left.
    pub fn commit(&self, req: pb::CommitRequest) -> Result<pb::CommitResponse, Status> {
        self.require_session(&req.session)?;
        if req.transaction.is_none() {
            return Err(Status::invalid_argument(
                "Commit needs a transaction_id or single_use_transaction",
            ));
        }
        let aborted = self
            .aborts_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if aborted {
            let retry = rpc::RetryInfo {
                retry_delay: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: ABORT_RETRY_DELAY_NANOS,
                }),
            };
            return Err(status_with(
                Code::Aborted,
                "Transaction was aborted (injected by STANDIN_ABORT_COMMITS).",
                any("google.rpc.RetryInfo", &retry),
            ));
        }
        Ok(pb::CommitResponse {
            commit_timestamp: Some(Timestamp::from(SystemTime::now())),
            ..Default::default()
        })
    }

    /// `Rollback`.
    pub fn rollback(&self, req: pb::RollbackRequest) -> Result<(), Status> {
        self.require_session(&req.session)
    }

    fn transaction(&self, read_only: bool) -> pb::Transaction {
        pb::Transaction {
            id: format!("txn-{}", self.id()).into_bytes(),
            read_timestamp: read_only.then(|| Timestamp::from(SystemTime::now())),
            ..Default::default()
        }
    }

    /// Checks the selector against the statement as Spanner does (DML needs a read-write
    /// transaction; no selector means a single-use read-only one) and begins one if asked.
    fn selected_transaction(
        &self,
        selector: Option<&pb::TransactionSelector>,
        statement: Statement,
    ) -> Result<Option<pb::Transaction>, Status> {
        use pb::transaction_selector::Selector;
        let (read_only, begun) = match selector.and_then(|s| s.selector.as_ref()) {
            None => (true, None),
            Some(Selector::SingleUse(options)) => (is_read_only(options), None),
            Some(Selector::Begin(options)) => {
                let ro = is_read_only(options);
                (ro, Some(self.transaction(ro)))
            }
            // The stand-in does not track transactions: an id is taken as read-write.
            Some(Selector::Id(_)) => (false, None),
        };
        if statement == Statement::Dml && read_only {
            return Err(Status::invalid_argument(
                "DML statements can only be performed in a read-write or partitioned-dml transaction",
            ));
        }
        Ok(begun)
    }
}

fn is_read_only(options: &pb::TransactionOptions) -> bool {
    matches!(
        options.mode,
        Some(pb::transaction_options::Mode::ReadOnly(_))
    )
}

fn int64_row_type() -> pb::StructType {
    pb::StructType {
        fields: vec![pb::struct_type::Field {
            name: String::new(),
            r#type: Some(pb::Type {
                code: pb::TypeCode::Int64 as i32,
                ..Default::default()
            }),
        }],
    }
}

fn check_database(database: &str) -> Result<(), Status> {
    let ok = database.starts_with("projects/")
        && database.split('/').count() == 6
        && database.contains("/instances/")
        && database.contains("/databases/");
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "Invalid database name: {database:?}"
        )))
    }
}

/// NOT_FOUND as Spanner words it, with the ResourceInfo detail clients use to drop the session.
fn session_not_found(name: &str) -> Status {
    let info = rpc::ResourceInfo {
        resource_type: "type.googleapis.com/google.spanner.v1.Session".into(),
        resource_name: name.into(),
        owner: String::new(),
        description: "Session does not exist.".into(),
    };
    status_with(
        Code::NotFound,
        &format!("Session not found: {name}"),
        any("google.rpc.ResourceInfo", &info),
    )
}

fn poisoned() -> Status {
    Status::internal("stand-in session map lock poisoned")
}

fn any(type_name: &str, msg: &impl Message) -> Any {
    Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: msg.encode_to_vec(),
    }
}

/// A status carrying a `google.rpc.Status` in `grpc-status-details-bin`.
fn status_with(code: Code, message: &str, detail: Any) -> Status {
    let st = rpc::Status {
        code: code as i32,
        message: message.into(),
        details: vec![detail],
    };
    Status::with_details(code, message, st.encode_to_vec().into())
}
