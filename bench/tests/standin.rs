//! The stand-in served in-process, called directly and through the bare forwarder: the
//! behaviour the benchmark and proxy end-to-end tests rely on.

// clippy's allow-unwrap-in-tests covers `#[test]` fns, not the helpers beside them.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::sync::Arc;

use googleapis_tonic_google_spanner_v1::google::{rpc, spanner::v1 as pb};
use intentgate_bench::grpc::{CallError, Client};
use intentgate_bench::{forwarder, net, standin};
use prost::Message;
use prost_types::value::Kind;
use tonic::Code;

const DB: &str = "projects/p/instances/i/databases/d";

/// Starts a stand-in and a forwarder in front of it; returns (direct URL, forwarder URL).
async fn start(aborts: u64) -> (String, String) {
    let listener = net::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let direct = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(standin::serve(
        listener,
        Arc::new(standin::Standin::new(aborts)),
    ));
    let upstream = Arc::new(forwarder::Upstream::new(&direct).unwrap());
    upstream.connect().await.unwrap();
    let listener = net::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let proxied = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(forwarder::serve(listener, upstream));
    (direct, proxied)
}

fn status(e: anyhow::Error) -> tonic::Status {
    e.downcast::<CallError>().expect("a gRPC status").status
}

async fn create(client: &mut Client, role: &str, multiplexed: bool) -> pb::Session {
    let req = pb::CreateSessionRequest {
        database: DB.into(),
        session: Some(pb::Session {
            creator_role: role.into(),
            multiplexed,
            ..Default::default()
        }),
    };
    client.spanner("CreateSession", &req, None).await.unwrap()
}

fn sql(session: &str, sql: &str, begin: Option<pb::TransactionOptions>) -> pb::ExecuteSqlRequest {
    pb::ExecuteSqlRequest {
        session: session.into(),
        sql: sql.into(),
        transaction: begin.map(|o| pb::TransactionSelector {
            selector: Some(pb::transaction_selector::Selector::Begin(o)),
        }),
        ..Default::default()
    }
}

fn read_write() -> pb::TransactionOptions {
    pb::TransactionOptions {
        mode: Some(pb::transaction_options::Mode::ReadWrite(Default::default())),
        ..Default::default()
    }
}

#[tokio::test]
async fn sessions_and_queries_direct_and_forwarded() {
    let (direct, proxied) = start(0).await;
    for url in [&direct, &proxied] {
        let mut client = Client::connect(url).await.unwrap();
        let session = create(&mut client, "bench_reader", true).await;
        assert!(session.name.starts_with(&format!("{DB}/sessions/")));

        let got: pb::Session = client
            .spanner(
                "GetSession",
                &pb::GetSessionRequest {
                    name: session.name.clone(),
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(got.creator_role, "bench_reader");
        assert!(got.multiplexed);

        let rs: pb::ResultSet = client
            .spanner("ExecuteSql", &sql(&session.name, "SELECT 7", None), None)
            .await
            .unwrap();
        assert_eq!(
            rs.rows[0].values[0].kind,
            Some(Kind::StringValue("7".into()))
        );
        let prs: pb::PartialResultSet = client
            .spanner(
                "ExecuteStreamingSql",
                &sql(&session.name, "SELECT 8", None),
                None,
            )
            .await
            .unwrap();
        assert!(prs.last);
        assert_eq!(prs.values[0].kind, Some(Kind::StringValue("8".into())));

        // DML needs a read-write transaction; an inline begin returns it.
        let e = client
            .spanner::<_, pb::ResultSet>(
                "ExecuteSql",
                &sql(&session.name, "DELETE FROM t WHERE true", None),
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(status(e).code(), Code::InvalidArgument);
        let rs: pb::ResultSet = client
            .spanner(
                "ExecuteSql",
                &sql(
                    &session.name,
                    "UPDATE t SET a = 1 WHERE true",
                    Some(read_write()),
                ),
                None,
            )
            .await
            .unwrap();
        let txn = rs.metadata.unwrap().transaction.unwrap();
        assert!(!txn.id.is_empty());
        assert_eq!(
            rs.stats.unwrap().row_count,
            Some(pb::result_set_stats::RowCount::RowCountExact(1))
        );
        let commit = pb::CommitRequest {
            session: session.name.clone(),
            transaction: Some(pb::commit_request::Transaction::TransactionId(txn.id)),
            ..Default::default()
        };
        let resp: pb::CommitResponse = client.spanner("Commit", &commit, None).await.unwrap();
        assert!(resp.commit_timestamp.is_some());

        client
            .spanner::<_, ()>(
                "DeleteSession",
                &pb::DeleteSessionRequest {
                    name: session.name.clone(),
                },
                None,
            )
            .await
            .unwrap();
        let e = client
            .spanner::<_, pb::ResultSet>("ExecuteSql", &sql(&session.name, "SELECT 1", None), None)
            .await
            .unwrap_err();
        let st = status(e);
        assert_eq!(st.code(), Code::NotFound);
        assert_eq!(st.message(), format!("Session not found: {}", session.name));
        let details = rpc::Status::decode(st.details()).unwrap();
        assert_eq!(
            details.details[0].type_url,
            "type.googleapis.com/google.rpc.ResourceInfo"
        );
        let info = rpc::ResourceInfo::decode(&details.details[0].value[..]).unwrap();
        assert_eq!(info.resource_name, session.name);

        let e = client
            .spanner::<_, pb::PartitionResponse>(
                "PartitionQuery",
                &pb::PartitionQueryRequest::default(),
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(status(e).code(), Code::Unimplemented);
    }
}

#[tokio::test]
async fn injected_aborts_carry_retry_info() {
    let (direct, _) = start(1).await;
    let mut client = Client::connect(&direct).await.unwrap();
    let session = create(&mut client, "", false).await;
    let begin = pb::BeginTransactionRequest {
        session: session.name.clone(),
        options: Some(read_write()),
        ..Default::default()
    };
    let commit = |txn: pb::Transaction| pb::CommitRequest {
        session: session.name.clone(),
        transaction: Some(pb::commit_request::Transaction::TransactionId(txn.id)),
        ..Default::default()
    };
    let txn: pb::Transaction = client
        .spanner("BeginTransaction", &begin, None)
        .await
        .unwrap();
    let e = client
        .spanner::<_, pb::CommitResponse>("Commit", &commit(txn), None)
        .await
        .unwrap_err();
    let st = status(e);
    assert_eq!(st.code(), Code::Aborted);
    let details = rpc::Status::decode(st.details()).unwrap();
    let retry = rpc::RetryInfo::decode(&details.details[0].value[..]).unwrap();
    assert!(retry.retry_delay.is_some());

    let txn: pb::Transaction = client
        .spanner("BeginTransaction", &begin, None)
        .await
        .unwrap();
    let _: pb::CommitResponse = client.spanner("Commit", &commit(txn), None).await.unwrap();
}
