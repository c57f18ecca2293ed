//! End-to-end tests of classify, bind, observe and lookup on real messages, built
//! and decoded with the prost types of a published crate
//! (`googleapis-tonic-google-spanner-v1`, a dev-dependency only).

use googleapis_tonic_google_spanner_v1::google::spanner::v1 as pb;
use pb::transaction_options::{Mode as PbMode, PartitionedDml, ReadOnly, ReadWrite};
use pb::transaction_selector::Selector as PbSelector;
use prost::Message;
use serde_json::{Value, json};

use crate::bind;
use crate::classify::{Action, Classified, Refusal, Rpc, Transaction, classify};
use crate::config::SpannerConfig;

const INSTANCE: &str = "projects/p/instances/i";
const DB: &str = "projects/p/instances/i/databases/d";
const SESSION: &str = "projects/p/instances/i/databases/d/sessions/s1";
const OTHER_DB: &str = "projects/p/instances/other/databases/d";

fn config() -> SpannerConfig {
    SpannerConfig::parse(r#"{"instances":["projects/p/instances/i","projects/q/instances/j"]}"#)
        .unwrap()
}

fn method(rpc: &str) -> String {
    format!("/google.spanner.v1.Spanner/{rpc}")
}

fn run(rpc: &str, body: &[u8]) -> Result<Classified, Refusal> {
    run_with(rpc, &[], body)
}

fn run_with(rpc: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Classified, Refusal> {
    let m = method(rpc);
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    classify(&config(), "grpc", &m, &m, &headers, body)
}

fn ok(rpc: &str, msg: &impl Message) -> Classified {
    run(rpc, &msg.encode_to_vec()).unwrap_or_else(|e| panic!("{rpc}: {e:?}"))
}

fn malformed(rpc: &str, body: &[u8]) -> String {
    match run(rpc, body) {
        Err(Refusal::Malformed(m)) => m,
        other => panic!("{rpc}: expected malformed, got {other:?}"),
    }
}

fn read_only() -> pb::TransactionOptions {
    pb::TransactionOptions {
        mode: Some(PbMode::ReadOnly(ReadOnly {
            return_read_timestamp: true,
            timestamp_bound: Some(pb::transaction_options::read_only::TimestampBound::Strong(
                true,
            )),
        })),
        ..Default::default()
    }
}

fn read_write() -> pb::TransactionOptions {
    pb::TransactionOptions {
        mode: Some(PbMode::ReadWrite(ReadWrite::default())),
        isolation_level: 2,
        ..Default::default()
    }
}

fn pdml() -> pb::TransactionOptions {
    pb::TransactionOptions {
        mode: Some(PbMode::PartitionedDml(PartitionedDml {})),
        ..Default::default()
    }
}

fn sel(s: PbSelector) -> Option<pb::TransactionSelector> {
    Some(pb::TransactionSelector { selector: Some(s) })
}

/// Every selector shape, with the action and transaction expected for an
/// RPC that may run DML (`ExecuteSql`) and one that only reads (`Read`).
fn selector_cases() -> Vec<(
    &'static str,
    Option<pb::TransactionSelector>,
    Action,
    Action,
    Transaction,
)> {
    use Action::{Read as R, Write as W};
    vec![
        ("absent", None, R, R, Transaction::None),
        (
            "empty",
            Some(pb::TransactionSelector::default()),
            R,
            R,
            Transaction::None,
        ),
        (
            "single_use read_only",
            sel(PbSelector::SingleUse(read_only())),
            R,
            R,
            Transaction::SingleUse,
        ),
        (
            "single_use read_write",
            sel(PbSelector::SingleUse(read_write())),
            W,
            W,
            Transaction::SingleUse,
        ),
        (
            "begin read_only",
            sel(PbSelector::Begin(read_only())),
            R,
            R,
            Transaction::BeginReadOnly,
        ),
        (
            "begin read_write",
            sel(PbSelector::Begin(read_write())),
            W,
            W,
            Transaction::BeginReadWrite,
        ),
        (
            "begin partitioned_dml",
            sel(PbSelector::Begin(pdml())),
            W,
            W,
            Transaction::PartitionedDml,
        ),
        (
            "begin without a mode",
            sel(PbSelector::Begin(pb::TransactionOptions::default())),
            W,
            W,
            Transaction::BeginReadWrite,
        ),
        (
            "id",
            sel(PbSelector::Id(b"txn-1".to_vec())),
            W,
            R,
            Transaction::Id,
        ),
    ]
}

#[test]
fn execute_sql_actions_follow_the_selector() {
    for rpc in ["ExecuteSql", "ExecuteStreamingSql"] {
        for (name, transaction, sql_action, _, expected_txn) in selector_cases() {
            let c = ok(
                rpc,
                &pb::ExecuteSqlRequest {
                    session: SESSION.into(),
                    transaction,
                    sql: "SELECT 1".into(),
                    seqno: 3,
                    ..Default::default()
                },
            );
            assert_eq!(c.action, sql_action, "{rpc} {name}");
            assert_eq!(c.transaction, expected_txn, "{rpc} {name}");
            assert_eq!(c.database, DB);
            assert_eq!(c.instance, INSTANCE);
            assert_eq!(c.session, SESSION);
            assert_eq!(c.sql_kind, "query");
        }
    }
    // The SQL text never decides the action.
    let c = ok(
        "ExecuteSql",
        &pb::ExecuteSqlRequest {
            session: SESSION.into(),
            sql: "DELETE FROM t WHERE true".into(),
            ..Default::default()
        },
    );
    assert_eq!((c.action, c.sql_kind), (Action::Read, "dml"));
    let c = ok(
        "ExecuteSql",
        &pb::ExecuteSqlRequest {
            session: SESSION.into(),
            transaction: sel(PbSelector::Id(vec![1])),
            sql: "SELECT 1".into(),
            ..Default::default()
        },
    );
    assert_eq!((c.action, c.sql_kind), (Action::Write, "query"));
}

#[test]
fn read_rpcs_read_in_existing_transactions() {
    for rpc in ["Read", "StreamingRead"] {
        for (name, transaction, _, read_action, expected_txn) in selector_cases() {
            let c = ok(
                rpc,
                &pb::ReadRequest {
                    session: SESSION.into(),
                    transaction,
                    table: "Orders".into(),
                    columns: vec!["id".into()],
                    key_set: Some(pb::KeySet {
                        all: true,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            );
            assert_eq!(c.action, read_action, "{rpc} {name}");
            assert_eq!(c.transaction, expected_txn, "{rpc} {name}");
            assert_eq!(c.tables, vec!["Orders"]);
            assert_eq!(c.sql_kind, "");
        }
    }
    for (name, transaction, _, read_action, expected_txn) in selector_cases() {
        let c = ok(
            "PartitionRead",
            &pb::PartitionReadRequest {
                session: SESSION.into(),
                transaction: transaction.clone(),
                table: "Orders".into(),
                ..Default::default()
            },
        );
        assert_eq!(
            (c.action, c.transaction),
            (read_action, expected_txn),
            "{name}"
        );
        assert_eq!(c.tables, vec!["Orders"]);
        let c = ok(
            "PartitionQuery",
            &pb::PartitionQueryRequest {
                session: SESSION.into(),
                transaction,
                sql: "select * from Orders".into(),
                ..Default::default()
            },
        );
        assert_eq!(
            (c.action, c.transaction),
            (read_action, expected_txn),
            "{name}"
        );
        assert_eq!((c.sql_kind, c.tables.len()), ("query", 0));
    }
    // An empty table is skipped.
    let c = ok(
        "Read",
        &pb::ReadRequest {
            session: SESSION.into(),
            ..Default::default()
        },
    );
    assert!(c.tables.is_empty());
}

#[test]
fn write_rpcs() {
    let mutation = pb::Mutation {
        operation: Some(pb::mutation::Operation::Insert(pb::mutation::Write {
            table: "Orders".into(),
            columns: vec!["id".into()],
            values: vec![],
        })),
    };
    for (name, transaction) in [
        ("id", sel(PbSelector::Id(vec![7]))),
        ("begin read_write", sel(PbSelector::Begin(read_write()))),
        // Nonsense (the server refuses DML outside read-write), still write.
        ("begin read_only", sel(PbSelector::Begin(read_only()))),
    ] {
        let c = ok(
            "ExecuteBatchDml",
            &pb::ExecuteBatchDmlRequest {
                session: SESSION.into(),
                transaction,
                statements: vec![
                    pb::execute_batch_dml_request::Statement {
                        sql: "INSERT INTO t (a) VALUES (1)".into(),
                        ..Default::default()
                    },
                    pb::execute_batch_dml_request::Statement {
                        sql: "UPDATE t SET a = 2 WHERE true".into(),
                        ..Default::default()
                    },
                ],
                seqno: 1,
                ..Default::default()
            },
        );
        assert_eq!(c.action, Action::Write, "{name}");
        assert_eq!(c.sql_kind, "dml");
    }
    let mixed = ok(
        "ExecuteBatchDml",
        &pb::ExecuteBatchDmlRequest {
            session: SESSION.into(),
            statements: vec![
                pb::execute_batch_dml_request::Statement {
                    sql: "INSERT INTO t (a) VALUES (1)".into(),
                    ..Default::default()
                },
                pb::execute_batch_dml_request::Statement {
                    sql: "SELECT 1".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
    );
    assert_eq!((mixed.action, mixed.sql_kind), (Action::Write, ""));

    for (transaction, expected) in [
        (
            Some(pb::commit_request::Transaction::TransactionId(vec![1, 2])),
            Transaction::Id,
        ),
        (
            Some(pb::commit_request::Transaction::SingleUseTransaction(
                read_write(),
            )),
            Transaction::SingleUse,
        ),
        (None, Transaction::None),
    ] {
        let c = ok(
            "Commit",
            &pb::CommitRequest {
                session: SESSION.into(),
                transaction,
                mutations: vec![mutation.clone()],
                precommit_token: Some(pb::MultiplexedSessionPrecommitToken {
                    precommit_token: vec![9],
                    seq_num: 4,
                }),
                ..Default::default()
            },
        );
        assert_eq!((c.action, c.transaction), (Action::Write, expected));
    }
    // A commit without mutations is still a write.
    let c = ok(
        "Commit",
        &pb::CommitRequest {
            session: SESSION.into(),
            transaction: Some(pb::commit_request::Transaction::TransactionId(vec![1])),
            ..Default::default()
        },
    );
    assert_eq!(c.action, Action::Write);

    let c = ok(
        "BatchWrite",
        &pb::BatchWriteRequest {
            session: SESSION.into(),
            mutation_groups: vec![pb::batch_write_request::MutationGroup {
                mutations: vec![mutation],
            }],
            ..Default::default()
        },
    );
    assert_eq!(
        (c.action, c.transaction),
        (Action::Write, Transaction::None)
    );
}

#[test]
fn begin_transaction_and_rollback() {
    for (options, action, txn) in [
        (Some(read_only()), Action::Read, Transaction::BeginReadOnly),
        (
            Some(read_write()),
            Action::Write,
            Transaction::BeginReadWrite,
        ),
        (Some(pdml()), Action::Write, Transaction::PartitionedDml),
        (
            Some(pb::TransactionOptions::default()),
            Action::Write,
            Transaction::BeginReadWrite,
        ),
        (None, Action::Write, Transaction::BeginReadWrite),
    ] {
        let c = ok(
            "BeginTransaction",
            &pb::BeginTransactionRequest {
                session: SESSION.into(),
                options,
                ..Default::default()
            },
        );
        assert_eq!((c.action, c.transaction), (action, txn));
    }
    let c = ok(
        "Rollback",
        &pb::RollbackRequest {
            session: SESSION.into(),
            transaction_id: vec![1],
        },
    );
    assert_eq!((c.action, c.transaction), (Action::Read, Transaction::Id));
}

#[test]
fn session_rpcs() {
    let c = ok(
        "CreateSession",
        &pb::CreateSessionRequest {
            database: DB.into(),
            session: Some(pb::Session {
                multiplexed: true,
                ..Default::default()
            }),
        },
    );
    assert_eq!((c.action, c.session.as_str()), (Action::Connect, ""));
    assert_eq!(c.capability, None);
    let c = ok(
        "BatchCreateSessions",
        &pb::BatchCreateSessionsRequest {
            database: DB.into(),
            session_template: None,
            session_count: 25,
        },
    );
    assert_eq!(c.action, Action::Connect);
    let c = ok(
        "ListSessions",
        &pb::ListSessionsRequest {
            database: DB.into(),
            page_size: 10,
            ..Default::default()
        },
    );
    assert_eq!((c.action, c.database.as_str()), (Action::Read, DB));
    // ListSessions shows session names of every principal, but a name is
    // only usable under the role it is bound to.
    assert_eq!((c.capability, c.binding_annotation), (None, None));
    for rpc in ["GetSession", "DeleteSession"] {
        let body = pb::GetSessionRequest {
            name: SESSION.into(),
        }
        .encode_to_vec();
        let c = run(rpc, &body).unwrap();
        assert_eq!((c.action, c.session.as_str()), (Action::Read, SESSION));
        assert_eq!(c.capability.as_deref(), Some(SESSION));
        assert_eq!(c.binding_annotation, Some("database_role"));
    }
}

#[test]
fn context_json_shape() {
    let c = ok(
        "StreamingRead",
        &pb::ReadRequest {
            session: SESSION.into(),
            transaction: sel(PbSelector::SingleUse(read_only())),
            table: "Orders".into(),
            ..Default::default()
        },
    );
    let ctx: Value = serde_json::from_str(&c.context_json()).unwrap();
    assert_eq!(
        ctx,
        json!({"rpc":"StreamingRead","session":SESSION,"sql_kind":"","tables":["Orders"],"transaction":"single_use"})
    );
    let c = ok(
        "ListSessions",
        &pb::ListSessionsRequest {
            database: DB.into(),
            ..Default::default()
        },
    );
    let ctx: Value = serde_json::from_str(&c.context_json()).unwrap();
    assert_eq!(
        ctx,
        json!({"rpc":"ListSessions","session":"","sql_kind":"","tables":[],"transaction":"none"})
    );
}

#[test]
fn unknown_rpcs_and_envelopes_are_refused() {
    // FetchCacheUpdate names a database in field 1, but is not known here.
    let mut body = Vec::new();
    crate::wire::put_bytes(&mut body, 1, DB.as_bytes());
    for rpc in ["FetchCacheUpdate", "NewRpc2030"] {
        assert!(
            matches!(run(rpc, &body), Err(Refusal::Unsupported(_))),
            "{rpc}"
        );
    }
    let m = method("ListSessions");
    assert!(matches!(
        classify(&config(), "http", &m, &m, &[], &body),
        Err(Refusal::Unsupported(_))
    ));
    let other = method("GetSession");
    assert!(matches!(
        classify(&config(), "grpc", &m, &other, &[], &body),
        Err(Refusal::Malformed(_))
    ));
}

#[test]
fn field_one_must_occur_exactly_once() {
    let one = pb::ExecuteSqlRequest {
        session: SESSION.into(),
        sql: "SELECT 1".into(),
        ..Default::default()
    }
    .encode_to_vec();
    for second in [SESSION, "projects/p/instances/i/databases/d/sessions/s2"] {
        let mut twice = one.clone();
        crate::wire::put_bytes(&mut twice, 1, second.as_bytes());
        let m = malformed("ExecuteSql", &twice);
        assert!(m.contains("occurs more than once"), "{m}");
    }
    // Repeated field 1 ahead of everything else, too.
    let mut twice = Vec::new();
    crate::wire::put_bytes(&mut twice, 1, DB.as_bytes());
    crate::wire::put_bytes(&mut twice, 1, DB.as_bytes());
    assert!(malformed("CreateSession", &twice).contains("more than once"));

    // Missing, empty, not a string, not UTF-8.
    let no_name = pb::ExecuteSqlRequest {
        sql: "SELECT 1".into(),
        ..Default::default()
    }
    .encode_to_vec();
    assert!(malformed("ExecuteSql", &no_name).contains("has no `session` (field 1)"));
    assert!(malformed("ExecuteSql", &[]).contains("has no `session`"));
    assert!(malformed("ExecuteSql", &[0x0a, 0]).contains("has no `session`"));
    assert!(malformed("ExecuteSql", &[0x08, 1]).contains("wire type varint"));
    let mut bad_utf8 = Vec::new();
    crate::wire::put_bytes(&mut bad_utf8, 1, b"projects/p/instances/i/databases/d\xff");
    assert!(malformed("ListSessions", &bad_utf8).contains("not valid UTF-8"));
}

#[test]
fn names_are_exact() {
    for (rpc, name) in [
        // A database where a session is expected, and the reverse.
        ("ExecuteSql", DB),
        ("GetSession", DB),
        ("CreateSession", SESSION),
        // Extra, empty and dot segments.
        (
            "ExecuteSql",
            "projects/p/instances/i/databases/d/sessions/s/x",
        ),
        ("ExecuteSql", "projects/p/instances/i/databases//sessions/s"),
        (
            "ExecuteSql",
            "projects/p/instances/i/databases/../sessions/s",
        ),
        ("ListSessions", "projects/p/instances/i/databases/d/"),
        ("ListSessions", "projects/p/instances/i/databases/d%2fe"),
    ] {
        let mut body = Vec::new();
        crate::wire::put_bytes(&mut body, 1, name.as_bytes());
        let m = malformed(rpc, &body);
        assert!(m.contains("is not a valid"), "{rpc} {name}: {m}");
    }
}

#[test]
fn databases_outside_the_configured_instances_are_refused() {
    let body = pb::ListSessionsRequest {
        database: OTHER_DB.into(),
        ..Default::default()
    }
    .encode_to_vec();
    let m = malformed("ListSessions", &body);
    assert_eq!(
        m,
        format!("database {OTHER_DB:?} is not in a configured instance")
    );
    let body = pb::ExecuteSqlRequest {
        session: format!("{OTHER_DB}/sessions/s"),
        ..Default::default()
    }
    .encode_to_vec();
    assert!(malformed("ExecuteSql", &body).contains("not in a configured instance"));
    // The second configured instance is served.
    let body = pb::ListSessionsRequest {
        database: "projects/q/instances/j/databases/x".into(),
        ..Default::default()
    }
    .encode_to_vec();
    assert!(run("ListSessions", &body).is_ok());
}

#[test]
fn ambiguous_transactions_are_refused() {
    let base = pb::ExecuteSqlRequest {
        session: SESSION.into(),
        transaction: sel(PbSelector::SingleUse(read_only())),
        sql: "SELECT 1".into(),
        ..Default::default()
    }
    .encode_to_vec();
    // A second selector (protobuf would merge them, the last member wins).
    let second = pb::TransactionSelector {
        selector: Some(PbSelector::Begin(read_write())),
    }
    .encode_to_vec();
    let mut twice = base.clone();
    crate::wire::put_bytes(&mut twice, 2, &second);
    assert!(malformed("ExecuteSql", &twice).contains("`transaction`) occurs more than once"));
    // Two modes inside one options message.
    let mut options = read_only().encode_to_vec();
    options.extend(read_write().encode_to_vec());
    let mut selector = Vec::new();
    crate::wire::put_bytes(&mut selector, 1, &options);
    let mut body = Vec::new();
    crate::wire::put_bytes(&mut body, 1, SESSION.as_bytes());
    crate::wire::put_bytes(&mut body, 2, &selector);
    assert!(malformed("ExecuteSql", &body).contains("more than once"));
    // Commit's oneof, both members.
    let mut commit = pb::CommitRequest {
        session: SESSION.into(),
        transaction: Some(pb::commit_request::Transaction::TransactionId(vec![1])),
        ..Default::default()
    }
    .encode_to_vec();
    crate::wire::put_bytes(&mut commit, 3, &read_write().encode_to_vec());
    assert!(malformed("Commit", &commit).contains("both"));
    // A repeated table.
    let mut read = pb::ReadRequest {
        session: SESSION.into(),
        table: "Public".into(),
        ..Default::default()
    }
    .encode_to_vec();
    crate::wire::put_bytes(&mut read, 3, b"Secrets");
    assert!(malformed("Read", &read).contains("`table`) occurs more than once"));
    // Unknown fields inside a read-only `TransactionOptions` (a newer mode
    // could hide there) make it a write; elsewhere they are ignored.
    let mut options = read_only().encode_to_vec();
    options.extend([0x78, 0x01]); // field 15, varint
    let mut selector = Vec::new();
    crate::wire::put_bytes(&mut selector, 3, &options);
    let mut body = Vec::new();
    crate::wire::put_bytes(&mut body, 1, SESSION.as_bytes());
    crate::wire::put_bytes(&mut body, 2, &selector);
    body.extend([0xf8, 0x07, 0x01]); // top-level field 127, varint: ignored
    let c = run("ExecuteSql", &body).unwrap();
    assert_eq!(
        (c.action, c.transaction),
        (Action::Write, Transaction::BeginReadWrite)
    );
}

#[test]
fn malformed_bytes_are_refused_and_never_panic() {
    // Protobuf concatenation is merging, so the message can be built one
    // field at a time, which gives its field boundaries.
    let parts = [
        pb::ExecuteSqlRequest {
            session: SESSION.into(),
            ..Default::default()
        },
        pb::ExecuteSqlRequest {
            transaction: sel(PbSelector::Begin(read_only())),
            ..Default::default()
        },
        pb::ExecuteSqlRequest {
            sql: "SELECT 1".into(),
            ..Default::default()
        },
        pb::ExecuteSqlRequest {
            params: Some(prost_types::Struct::default()),
            ..Default::default()
        },
        pb::ExecuteSqlRequest {
            seqno: 300,
            ..Default::default()
        },
    ];
    let mut body = Vec::new();
    let mut boundaries = vec![0];
    for part in &parts {
        body.extend(part.encode_to_vec());
        boundaries.push(body.len());
    }
    let c = run("ExecuteSql", &body).unwrap();
    assert_eq!(c.transaction, Transaction::BeginReadOnly);
    // Every proper prefix that cuts the message mid-field is refused; the
    // ones that end on a field boundary may still be whole messages.
    for cut in 0..body.len() {
        let result = run("ExecuteSql", &body[..cut]);
        if !boundaries.contains(&cut) {
            assert!(
                matches!(result, Err(Refusal::Malformed(_))),
                "cut {cut}: {result:?}"
            );
        }
    }
    // Flipping any byte to any of a few values never panics.
    for i in 0..body.len() {
        for v in [0x00, 0x07, 0x0b, 0x0c, 0x7f, 0x80, 0xff] {
            let mut b = body.clone();
            b[i] = v;
            let _ = run("ExecuteSql", &b);
        }
    }
    // Group wire types, an 11-byte varint, a huge length.
    let mut group = body.clone();
    group.extend([0x5b, 0x5c]); // field 11 start/end group
    assert!(malformed("ExecuteSql", &group).contains("group wire type"));
    let mut long = body.clone();
    long.extend([
        0x48, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
    ]);
    assert!(malformed("ExecuteSql", &long).contains("longer than 10 bytes"));
    let mut huge = body.clone();
    huge.extend([0x22, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(malformed("ExecuteSql", &huge).contains("claims"));
}

#[test]
fn oversized_messages_are_refused() {
    let small =
        SpannerConfig::parse(r#"{"instances":["projects/p/instances/i"],"max_message_bytes":80}"#)
            .unwrap();
    let m = method("ExecuteSql");
    let body = |sql: &str| {
        pb::ExecuteSqlRequest {
            session: SESSION.into(),
            sql: sql.into(),
            ..Default::default()
        }
        .encode_to_vec()
    };
    assert!(classify(&small, "grpc", &m, &m, &[], &body("SELECT 1")).is_ok());
    let err = classify(&small, "grpc", &m, &m, &[], &body(&"x".repeat(100))).unwrap_err();
    assert!(
        matches!(&err, Refusal::Malformed(s) if s.contains("over max_message_bytes")),
        "{err:?}"
    );
}

#[test]
fn routing_headers_must_agree_with_the_message() {
    let body = pb::ExecuteSqlRequest {
        session: SESSION.into(),
        sql: "SELECT 1".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let session_param = format!("session={}", SESSION.replace('/', "%2F"));
    let database_param = format!("&database={}", DB.replace('/', "%2f"));
    for headers in [
        vec![("google-cloud-resource-prefix", DB)],
        vec![("x-goog-request-params", session_param.as_str())],
        vec![("x-goog-request-params", database_param.as_str())],
        vec![("x-goog-request-params", "other=1&x")],
        vec![("x-goog-spanner-route-to-leader", "true")],
    ] {
        assert!(
            run_with("ExecuteSql", &headers, &body).is_ok(),
            "{headers:?}"
        );
    }
    let other_session = format!(
        "session={}",
        format!("{OTHER_DB}/sessions/s").replace('/', "%2F")
    );
    for headers in [
        vec![("google-cloud-resource-prefix", OTHER_DB)],
        vec![("google-cloud-resource-prefix", INSTANCE)],
        vec![("x-goog-request-params", other_session.as_str())],
        vec![(
            "x-goog-request-params",
            "database=projects%2Fp%2Finstances%2Fi%2Fdatabases%2Fe",
        )],
        vec![("x-goog-request-params", "session=%zz")],
        vec![("x-goog-request-params", "name=garbage")],
    ] {
        assert!(
            matches!(
                run_with("ExecuteSql", &headers, &body),
                Err(Refusal::Malformed(_))
            ),
            "{headers:?}"
        );
    }
}

fn bind_call(rpc: &str, body: &[u8], role: &str) -> Result<Vec<u8>, Refusal> {
    let m = method(rpc);
    bind::bind(&config(), "grpc", &m, &m, body, role)
}

fn observe_call(rpc: &str, body: &[u8], response: &[u8]) -> Result<Vec<(String, String)>, Refusal> {
    let m = method(rpc);
    bind::observe(&config(), "grpc", &m, &m, body, response)
}

#[test]
fn bind_forces_creator_role_on_create_session() {
    for session in [
        None,
        Some(pb::Session::default()),
        Some(pb::Session {
            multiplexed: true,
            labels: [("team".to_string(), "pay".to_string())].into(),
            ..Default::default()
        }),
        // The client asking for the very role its policy maps it to is fine.
        Some(pb::Session {
            creator_role: "orders_reader".into(),
            ..Default::default()
        }),
    ] {
        let request = pb::CreateSessionRequest {
            database: DB.into(),
            session: session.clone(),
        };
        let mut body = request.encode_to_vec();
        let append = bind_call("CreateSession", &body, "orders_reader").unwrap();
        body.extend_from_slice(&append);
        let forced = pb::CreateSessionRequest::decode(body.as_slice()).unwrap();
        let got = forced.session.unwrap();
        assert_eq!(got.creator_role, "orders_reader");
        let original = session.clone().unwrap_or_default();
        assert_eq!(got.multiplexed, original.multiplexed);
        assert_eq!(got.labels, original.labels);
        assert_eq!(forced.database, DB);
        // The bound message may repeat field 2; protobuf merges it, so a
        // second intentgate (a gateway behind a sidecar) reads the forced
        // role, accepts the same mapping and refuses another one.
        assert!(run("CreateSession", &body).is_ok());
        assert!(bind_call("CreateSession", &body, "orders_reader").is_ok());
        assert!(matches!(
            bind_call("CreateSession", &body, "orders_writer"),
            Err(Refusal::Malformed(m)) if m.contains("asked for database role \"orders_reader\"")
        ));
        // `observe` may be shown either form of the request.
        let response = pb::Session {
            name: SESSION.into(),
            creator_role: "orders_reader".into(),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(
            observe_call("CreateSession", &body, &response).unwrap(),
            grants(&[(SESSION, "orders_reader")])
        );
    }
}

#[test]
fn bind_forces_the_batch_template() {
    let request = pb::BatchCreateSessionsRequest {
        database: DB.into(),
        session_template: Some(pb::Session {
            labels: [("a".to_string(), "b".to_string())].into(),
            ..Default::default()
        }),
        session_count: 100,
    };
    let mut body = request.encode_to_vec();
    body.extend(bind_call("BatchCreateSessions", &body, "writer").unwrap());
    let forced = pb::BatchCreateSessionsRequest::decode(body.as_slice()).unwrap();
    assert_eq!(forced.session_count, 100);
    let template = forced.session_template.unwrap();
    assert_eq!(template.creator_role, "writer");
    assert_eq!(template.labels.get("a").map(String::as_str), Some("b"));
    // Without a template at all.
    let mut body = pb::BatchCreateSessionsRequest {
        database: DB.into(),
        session_template: None,
        session_count: 1,
    }
    .encode_to_vec();
    body.extend(bind_call("BatchCreateSessions", &body, "writer").unwrap());
    let forced = pb::BatchCreateSessionsRequest::decode(body.as_slice()).unwrap();
    assert_eq!(forced.session_template.unwrap().creator_role, "writer");
}

#[test]
fn bind_refuses_conflicts_and_bad_calls() {
    let asks_admin = pb::CreateSessionRequest {
        database: DB.into(),
        session: Some(pb::Session {
            creator_role: "admin".into(),
            ..Default::default()
        }),
    }
    .encode_to_vec();
    assert_eq!(
        bind_call("CreateSession", &asks_admin, "orders_reader"),
        Err(Refusal::Malformed(
            "the client asked for database role \"admin\" but its policy maps it to \"orders_reader\""
                .to_string()
        ))
    );
    let template_admin = pb::BatchCreateSessionsRequest {
        database: DB.into(),
        session_template: Some(pb::Session {
            creator_role: "admin".into(),
            ..Default::default()
        }),
        session_count: 1,
    }
    .encode_to_vec();
    assert!(matches!(
        bind_call("BatchCreateSessions", &template_admin, "reader"),
        Err(Refusal::Malformed(m)) if m.contains("asked for database role \"admin\"")
    ));
    // A session message sent twice is merged (the last role set wins); a
    // role sent twice inside one message is ambiguous.
    let mut twice = pb::CreateSessionRequest {
        database: DB.into(),
        session: Some(pb::Session {
            creator_role: "admin".into(),
            ..Default::default()
        }),
    }
    .encode_to_vec();
    twice.extend(bind::creator_role_bytes("reader"));
    assert!(bind_call("CreateSession", &twice, "reader").is_ok());
    assert!(matches!(
        bind_call("CreateSession", &twice, "admin"),
        Err(Refusal::Malformed(m)) if m.contains("asked for database role \"reader\"")
    ));
    let mut session = Vec::new();
    crate::wire::put_bytes(&mut session, 5, b"reader");
    crate::wire::put_bytes(&mut session, 5, b"admin");
    let mut body = Vec::new();
    crate::wire::put_bytes(&mut body, 1, DB.as_bytes());
    crate::wire::put_bytes(&mut body, 2, &session);
    assert!(matches!(
        bind_call("CreateSession", &body, "reader"),
        Err(Refusal::Malformed(_))
    ));
    // ... which classify refuses too.
    assert!(malformed("CreateSession", &body).contains("more than once"));

    let ok_body = pb::CreateSessionRequest {
        database: DB.into(),
        session: None,
    }
    .encode_to_vec();
    for role in ["", "bad-role", "1role", "r\"x"] {
        assert!(
            matches!(
                bind_call("CreateSession", &ok_body, role),
                Err(Refusal::Malformed(_))
            ),
            "{role:?}"
        );
    }
    let sql = pb::ExecuteSqlRequest {
        session: SESSION.into(),
        ..Default::default()
    }
    .encode_to_vec();
    assert!(matches!(
        bind_call("ExecuteSql", &sql, "reader"),
        Err(Refusal::Unsupported(_))
    ));
    let outside = pb::CreateSessionRequest {
        database: OTHER_DB.into(),
        session: None,
    }
    .encode_to_vec();
    assert!(matches!(
        bind_call("CreateSession", &outside, "reader"),
        Err(Refusal::Malformed(_))
    ));
}

fn grants(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn observe_learns_sessions_and_roles() {
    let request = pb::CreateSessionRequest {
        database: DB.into(),
        session: None,
    }
    .encode_to_vec();
    let response = pb::Session {
        name: SESSION.into(),
        creator_role: "orders_reader".into(),
        multiplexed: true,
        create_time: Some(prost_types::Timestamp {
            seconds: 1,
            nanos: 2,
        }),
        ..Default::default()
    }
    .encode_to_vec();
    assert_eq!(
        observe_call("CreateSession", &request, &response).unwrap(),
        grants(&[(SESSION, "orders_reader")])
    );
    // Upstream did not echo the role.
    let bare = pb::Session {
        name: SESSION.into(),
        ..Default::default()
    }
    .encode_to_vec();
    assert_eq!(
        observe_call("CreateSession", &request, &bare).unwrap(),
        grants(&[(SESSION, "")])
    );

    let batch_request = pb::BatchCreateSessionsRequest {
        database: DB.into(),
        session_template: None,
        session_count: 3,
    }
    .encode_to_vec();
    let session = |n: &str, role: &str| pb::Session {
        name: format!("{DB}/sessions/{n}"),
        creator_role: role.into(),
        ..Default::default()
    };
    let response = pb::BatchCreateSessionsResponse {
        session: vec![session("a", "w"), session("b", "w"), session("c", "w")],
    }
    .encode_to_vec();
    let a = format!("{DB}/sessions/a");
    let b = format!("{DB}/sessions/b");
    let c = format!("{DB}/sessions/c");
    assert_eq!(
        observe_call("BatchCreateSessions", &batch_request, &response).unwrap(),
        grants(&[(&a, "w"), (&b, "w"), (&c, "w")])
    );
    // Upstream did not echo the role: every grant has "".
    let response = pb::BatchCreateSessionsResponse {
        session: vec![session("a", ""), session("b", "")],
    }
    .encode_to_vec();
    assert_eq!(
        observe_call("BatchCreateSessions", &batch_request, &response).unwrap(),
        grants(&[(&a, ""), (&b, "")])
    );
    let empty = pb::BatchCreateSessionsResponse { session: vec![] }.encode_to_vec();
    assert_eq!(
        observe_call("BatchCreateSessions", &batch_request, &empty).unwrap(),
        grants(&[])
    );
}

#[test]
fn observe_validates_what_upstream_returned() {
    let request = pb::CreateSessionRequest {
        database: DB.into(),
        session: None,
    }
    .encode_to_vec();
    for (name, role) in [
        (format!("{OTHER_DB}/sessions/s"), "r"),
        (
            "projects/p/instances/i/databases/e/sessions/s".to_string(),
            "r",
        ),
        (DB.to_string(), "r"),
        (String::new(), "r"),
        (SESSION.to_string(), "bad role"),
    ] {
        let response = pb::Session {
            name,
            creator_role: role.into(),
            ..Default::default()
        }
        .encode_to_vec();
        assert!(
            matches!(
                observe_call("CreateSession", &request, &response),
                Err(Refusal::Malformed(_))
            ),
            "{response:?}"
        );
    }
    assert!(matches!(
        observe_call("CreateSession", &request, &[0x0a, 0x10, b'x']),
        Err(Refusal::Malformed(_))
    ));
    let batch_request = pb::BatchCreateSessionsRequest {
        database: DB.into(),
        session_template: None,
        session_count: 2,
    }
    .encode_to_vec();
    let mixed = pb::BatchCreateSessionsResponse {
        session: vec![
            pb::Session {
                name: format!("{DB}/sessions/a"),
                creator_role: "r1".into(),
                ..Default::default()
            },
            pb::Session {
                name: format!("{DB}/sessions/b"),
                creator_role: "r2".into(),
                ..Default::default()
            },
        ],
    }
    .encode_to_vec();
    assert!(matches!(
        observe_call("BatchCreateSessions", &batch_request, &mixed),
        Err(Refusal::Malformed(m)) if m.contains("different creator_role")
    ));
    let sql = pb::ExecuteSqlRequest {
        session: SESSION.into(),
        ..Default::default()
    }
    .encode_to_vec();
    assert!(matches!(
        observe_call("ExecuteSql", &sql, &[]),
        Err(Refusal::Unsupported(_))
    ));
}

#[test]
fn observe_caps_the_grants() {
    let request = pb::BatchCreateSessionsRequest {
        database: DB.into(),
        session_template: None,
        session_count: 100,
    }
    .encode_to_vec();
    let response = |n: usize| {
        pb::BatchCreateSessionsResponse {
            session: (0..n)
                .map(|i| pb::Session {
                    name: format!("{DB}/sessions/s{i}"),
                    creator_role: "r".into(),
                    ..Default::default()
                })
                .collect(),
        }
        .encode_to_vec()
    };
    let ok = observe_call("BatchCreateSessions", &request, &response(bind::MAX_GRANTS)).unwrap();
    assert_eq!(ok.len(), bind::MAX_GRANTS);
    assert!(matches!(
        observe_call("BatchCreateSessions", &request, &response(bind::MAX_GRANTS + 1)),
        Err(Refusal::Malformed(m)) if m.contains("more than 1000 sessions")
    ));
}

/// A minimal valid first message for `rpc`: field 1 only.
fn minimal(rpc: Rpc) -> Vec<u8> {
    let name = if rpc.session_scoped() { SESSION } else { DB };
    let mut body = Vec::new();
    crate::wire::put_bytes(&mut body, 1, name.as_bytes());
    body
}

#[test]
fn session_scoped_rpcs_present_their_session_as_a_capability() {
    for rpc in Rpc::ALL {
        let c = run(rpc.name(), &minimal(rpc)).unwrap_or_else(|e| panic!("{rpc:?}: {e:?}"));
        match rpc {
            Rpc::CreateSession | Rpc::BatchCreateSessions => {
                assert_eq!(c.capability, None, "{rpc:?}");
                assert_eq!(c.binding_annotation, Some("database_role"), "{rpc:?}");
                assert!(c.observe_response, "{rpc:?}");
            }
            Rpc::ListSessions => {
                assert_eq!(c.capability, None);
                assert_eq!(c.binding_annotation, None);
                assert!(!c.observe_response);
            }
            _ => {
                assert_eq!(c.capability.as_deref(), Some(SESSION), "{rpc:?}");
                assert_eq!(c.binding_annotation, Some("database_role"), "{rpc:?}");
                assert!(!c.observe_response, "{rpc:?}");
            }
        }
    }
    // The capability is the session name exactly as sent.
    let other = "projects/q/instances/j/databases/x/sessions/AbC-_9";
    let body = pb::ExecuteSqlRequest {
        session: other.into(),
        sql: "SELECT 1".into(),
        ..Default::default()
    }
    .encode_to_vec();
    assert_eq!(
        run("ExecuteSql", &body).unwrap().capability.as_deref(),
        Some(other)
    );
}

#[test]
fn replay_safety_per_rpc() {
    for rpc in Rpc::ALL {
        let expected = !matches!(
            rpc,
            Rpc::ExecuteStreamingSql | Rpc::StreamingRead | Rpc::BatchWrite
        );
        let c = run(rpc.name(), &minimal(rpc)).unwrap();
        assert_eq!(c.replay_safe, expected, "{rpc:?}");
    }
    // Commit: replay-protected by its transaction id, not when single-use.
    for (transaction, expected) in [
        (
            Some(pb::commit_request::Transaction::TransactionId(vec![1, 2])),
            true,
        ),
        (
            Some(pb::commit_request::Transaction::SingleUseTransaction(
                read_write(),
            )),
            false,
        ),
    ] {
        let c = ok(
            "Commit",
            &pb::CommitRequest {
                session: SESSION.into(),
                transaction,
                ..Default::default()
            },
        );
        assert_eq!(c.replay_safe, expected, "{:?}", c.transaction);
    }
    // The selector does not matter elsewhere (ExecuteSql is protected by
    // `seqno`, an inline `begin` only starts another transaction).
    for (name, transaction, ..) in selector_cases() {
        for rpc in ["ExecuteSql", "ExecuteStreamingSql"] {
            let c = ok(
                rpc,
                &pb::ExecuteSqlRequest {
                    session: SESSION.into(),
                    transaction: transaction.clone(),
                    sql: "UPDATE t SET a = 1 WHERE true".into(),
                    seqno: 1,
                    ..Default::default()
                },
            );
            assert_eq!(c.replay_safe, rpc == "ExecuteSql", "{rpc} {name}");
        }
    }
}

fn session_msg(name: &str, role: &str) -> Vec<u8> {
    pb::Session {
        name: name.into(),
        creator_role: role.into(),
        multiplexed: false,
        approximate_last_use_time: Some(prost_types::Timestamp {
            seconds: 5,
            nanos: 0,
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn observe_reads_the_lookup_response() {
    let lookup = bind::lookup(&config(), SESSION).unwrap();
    let get = |response: &[u8]| {
        bind::observe(
            &config(),
            "grpc",
            &lookup.method,
            &lookup.method,
            &lookup.body,
            response,
        )
    };
    assert_eq!(
        get(&session_msg(SESSION, "orders_reader")).unwrap(),
        grants(&[(SESSION, "orders_reader")])
    );
    // No role known: "" (the host denies on a lookup).
    assert_eq!(
        get(&session_msg(SESSION, "")).unwrap(),
        grants(&[(SESSION, "")])
    );
    assert_eq!(
        get(&[]),
        Err(Refusal::Malformed(format!(
            "upstream answered GetSession {SESSION:?} with session \"\""
        )))
    );
    for name in [
        // Another session of the same database, or of another database.
        format!("{DB}/sessions/s2"),
        "projects/p/instances/i/databases/e/sessions/s1".to_string(),
        format!("{OTHER_DB}/sessions/s1"),
        // Not exactly the requested name.
        format!("{SESSION}x"),
        format!("{SESSION}/"),
        SESSION.to_uppercase(),
        DB.to_string(),
    ] {
        assert!(
            matches!(get(&session_msg(&name, "r")), Err(Refusal::Malformed(m)) if m.contains("upstream answered GetSession")),
            "{name}"
        );
    }
    // An invalid role, a repeated name, bytes that are not a message.
    assert!(matches!(
        get(&session_msg(SESSION, "bad role")),
        Err(Refusal::Malformed(m)) if m.contains("not a valid role name")
    ));
    let mut twice = session_msg(SESSION, "r");
    crate::wire::put_bytes(&mut twice, 1, SESSION.as_bytes());
    assert!(matches!(get(&twice), Err(Refusal::Malformed(_))));
    assert!(matches!(
        get(&[0x0a, 0x10, b'x']),
        Err(Refusal::Malformed(_))
    ));
    // A GetSession for a database outside the configured instances.
    let outside = pb::GetSessionRequest {
        name: format!("{OTHER_DB}/sessions/s1"),
    }
    .encode_to_vec();
    assert!(matches!(
        observe_call("GetSession", &outside, &session_msg(&format!("{OTHER_DB}/sessions/s1"), "r")),
        Err(Refusal::Malformed(m)) if m.contains("not in a configured instance")
    ));
}

#[test]
fn lookup_builds_a_get_session_call() {
    let call = bind::lookup(&config(), SESSION).unwrap();
    assert_eq!(call.method, "/google.spanner.v1.Spanner/GetSession");
    assert_eq!(
        call.headers,
        vec![
            ("google-cloud-resource-prefix".to_string(), DB.to_string()),
            (
                "x-goog-request-params".to_string(),
                format!("name={SESSION}")
            ),
        ]
    );
    let request = pb::GetSessionRequest::decode(call.body.as_slice()).unwrap();
    assert_eq!(request.name, SESSION);
    assert_eq!(request.encode_to_vec(), call.body);
    // This connector would pass the call itself: same session, same
    // capability, routing headers agree.
    let headers: Vec<(&str, &str)> = call
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let c = run_with("GetSession", &headers, &call.body).unwrap();
    assert_eq!(
        (c.action, c.capability.as_deref(), c.database.as_str()),
        (Action::Read, Some(SESSION), DB)
    );
    // The second configured instance.
    let other = "projects/q/instances/j/databases/x/sessions/Z";
    let call = bind::lookup(&config(), other).unwrap();
    assert_eq!(
        pb::GetSessionRequest::decode(call.body.as_slice())
            .unwrap()
            .name,
        other
    );
}

#[test]
fn lookup_refuses_bad_capabilities() {
    for capability in [
        "",
        DB,
        INSTANCE,
        "projects/p/instances/i/databases/d/sessions/",
        "projects/p/instances/i/databases/d/sessions/s/x",
        "projects/p/instances/i/databases/d/sessions/a.b",
        "projects/p/instances/i/databases/../sessions/s",
        "/projects/p/instances/i/databases/d/sessions/s",
        "projects/p/instances/i/databases/d/sessions/s%2f",
        "projects/p/instances/i/databases/d/sessions/s\n",
    ] {
        assert!(
            matches!(
                bind::lookup(&config(), capability),
                Err(Refusal::Malformed(m)) if m.contains("is not a valid session name")
            ),
            "{capability:?}"
        );
    }
    assert_eq!(
        bind::lookup(&config(), &format!("{OTHER_DB}/sessions/s1")),
        Err(Refusal::Malformed(format!(
            "capability: database {OTHER_DB:?} is not in a configured instance"
        )))
    );
}

#[test]
fn interpreted_strings_are_checked() {
    let mut body = Vec::new();
    crate::wire::put_bytes(&mut body, 1, SESSION.as_bytes());
    let mut sql = body.clone();
    crate::wire::put_bytes(&mut sql, 3, b"SELECT \xff");
    assert!(malformed("ExecuteSql", &sql).contains("`sql` is not valid UTF-8"));
    let mut table = body.clone();
    crate::wire::put_bytes(&mut table, 3, "t".repeat(1025).as_bytes());
    assert!(malformed("Read", &table).contains("over 1024"));
    let mut statement = Vec::new();
    crate::wire::put_bytes(&mut statement, 1, b"INSERT \xff");
    let mut batch = body.clone();
    crate::wire::put_bytes(&mut batch, 3, &statement);
    assert!(malformed("ExecuteBatchDml", &batch).contains("not valid UTF-8"));
    // A session template that is not a valid message.
    let mut create = Vec::new();
    crate::wire::put_bytes(&mut create, 1, DB.as_bytes());
    crate::wire::put_bytes(&mut create, 2, &[0x2a, 0x05, b'x']);
    assert!(malformed("CreateSession", &create).contains("not valid protobuf"));
    let mut role = Vec::new();
    crate::wire::put_bytes(&mut role, 5, b"r\xff");
    let mut create = Vec::new();
    crate::wire::put_bytes(&mut create, 1, DB.as_bytes());
    crate::wire::put_bytes(&mut create, 2, &role);
    assert!(malformed("CreateSession", &create).contains("creator_role"));
}
