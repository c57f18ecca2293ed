//! AWS workload tokens minted from the real AWS default credentials chain:
//! a fake ECS container-credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`)
//! serves the credentials, and, when the Python test peers have moto, moto
//! plays STS and must accept the token (with signature checking on).
//!
//! The chain reads process-wide environment variables, and changing them is
//! `unsafe` (forbidden here), so each scenario runs the `child` test of this
//! binary in a child process with exactly the environment it needs; the
//! parent serves the endpoint and checks what the child minted.
//!
use intentgate::aws_token;

/// The scenarios (helpers included): test code, where a failed step
/// should stop the test loudly. The module above is checked as product
/// code.
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test loudly"
)]
mod scenarios {
    use std::path::PathBuf;
    use std::process::{Command, Output, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    use super::aws_token::{self, AwsTokenConfig, AwsTokenMinter};

    const CHILD_MODE: &str = "INTENTGATE_AWS_TOKEN_TEST_CHILD";
    const CHILD_REFRESH_AT: &str = "INTENTGATE_AWS_TOKEN_TEST_REFRESH_AT";
    const AUDIENCE: &str = "intentgate-test";
    const STS_HOST: &str = "sts.us-east-1.amazonaws.com";

    /// The scenarios' minting side, run in a child process (see the module
    /// docs). Does nothing when run directly.
    #[test]
    #[ignore = "run by the other tests in a child process with a controlled environment"]
    fn child() {
        let Ok(mode) = std::env::var(CHILD_MODE) else {
            return;
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let config = AwsTokenConfig {
                region: Some("us-east-1".into()),
                ..AwsTokenConfig::new(AUDIENCE)
            };
            match mode.as_str() {
                "none" => {
                    let error = AwsTokenMinter::from_environment(config).await.unwrap_err();
                    println!("\nERROR {error}");
                }
                "ecs" => {
                    let minter = AwsTokenMinter::from_environment(config).await.unwrap();
                    let minted_by = SystemTime::now();
                    let first = minter.current().await.unwrap();
                    let again = minter.current().await.unwrap();
                    assert!(Arc::ptr_eq(&first, &again), "a fresh token is cached");
                    println!("\nTOKEN {}", String::from_utf8(first.to_vec()).unwrap());
                    if let Ok(refresh_at) = std::env::var(CHILD_REFRESH_AT) {
                        // Wait until the credentials expire within 60 s and the
                        // token is past the minimum re-mint interval.
                        let refresh_at =
                            UNIX_EPOCH + Duration::from_secs(refresh_at.parse().unwrap());
                        let wake = refresh_at.max(minted_by + aws_token::MIN_REMINT_INTERVAL)
                            + Duration::from_millis(300);
                        if let Ok(wait) = wake.duration_since(SystemTime::now()) {
                            tokio::time::sleep(wait).await;
                        }
                        let refreshed = minter.current().await.unwrap();
                        assert_ne!(first, refreshed, "re-minted before the credentials expire");
                        let again = minter.current().await.unwrap();
                        assert!(Arc::ptr_eq(&refreshed, &again));
                        println!("\nTOKEN {}", String::from_utf8(refreshed.to_vec()).unwrap());
                    }
                }
                other => panic!("unknown child mode {other}"),
            }
        });
    }

    /// Runs `child` with the AWS environment reduced to `vars` (plus instance
    /// metadata disabled and no profile files, so nothing leaves the machine).
    async fn run_child(vars: Vec<(&'static str, String)>) -> Output {
        let exe = std::env::current_exe().unwrap();
        let nowhere = std::env::temp_dir().join("intentgate-aws-token-test-no-such-file");
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new(exe);
            command
                .args([
                    "scenarios::child",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .stdin(Stdio::null());
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("AWS_") {
                    command.env_remove(key);
                }
            }
            command
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("AWS_CONFIG_FILE", &nowhere)
                .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
                .envs(vars);
            command.output().unwrap()
        })
        .await
        .unwrap()
    }

    /// The child's `PREFIX rest` lines (it starts each on a new line: the test
    /// harness's `test child ... ` precedes the first).
    fn lines(output: &Output, prefix: &str) -> Vec<String> {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "child failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix(prefix).map(str::to_string))
            .collect()
    }

    /// A fake ECS container-credentials endpoint: `GET /creds` answers
    /// `answers[i]` for the i-th request (the last one from then on).
    struct FakeEcs {
        answers: Vec<String>,
        hits: AtomicUsize,
        authorization: Mutex<Vec<Option<String>>>,
    }

    impl FakeEcs {
        async fn start(answers: Vec<String>) -> (Arc<Self>, String) {
            let fake = Arc::new(Self {
                answers,
                hits: AtomicUsize::new(0),
                authorization: Mutex::new(Vec::new()),
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let uri = format!("http://{}/creds", listener.local_addr().unwrap());
            let serving = fake.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let fake = serving.clone();
                    tokio::spawn(async move {
                        let service =
                            service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                                let fake = fake.clone();
                                async move {
                                    let response = if request.uri().path() == "/creds" {
                                        let i = fake.hits.fetch_add(1, Ordering::SeqCst);
                                        fake.authorization.lock().unwrap().push(
                                            request
                                                .headers()
                                                .get("authorization")
                                                .and_then(|v| v.to_str().ok())
                                                .map(str::to_string),
                                        );
                                        let body =
                                            fake.answers[i.min(fake.answers.len() - 1)].clone();
                                        hyper::Response::builder()
                                            .header("content-type", "application/json")
                                            .body(Full::new(Bytes::from(body)))
                                    } else {
                                        hyper::Response::builder()
                                            .status(404)
                                            .body(Full::new(Bytes::new()))
                                    };
                                    Ok::<_, std::convert::Infallible>(response.unwrap())
                                }
                            });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            (fake, uri)
        }
    }

    fn unix_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`, as the ECS agent writes `Expiration`.
    fn rfc3339(secs: u64) -> String {
        intentgate::clock::format_rfc3339(secs, 0).replace(".000000Z", "Z")
    }

    fn ecs_answer(key_id: &str, secret: &str, token: &str, expiration: u64) -> String {
        serde_json::json!({
            "RoleArn": "arn:aws:iam::123456789012:role/TaskRole",
            "AccessKeyId": key_id,
            "SecretAccessKey": secret,
            "Token": token,
            "Expiration": rfc3339(expiration),
        })
        .to_string()
    }

    /// The token's headers by lowercase name.
    fn token_headers(token: &str) -> Vec<(String, String)> {
        let value: serde_json::Value = serde_json::from_str(token).unwrap();
        value["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["key"].as_str().unwrap().to_ascii_lowercase(),
                    h["value"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn header(token: &str, name: &str) -> String {
        token_headers(token)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    fn key_id(token: &str) -> String {
        let authorization = header(token, "authorization");
        let credential = authorization.split("Credential=").nth(1).unwrap();
        credential.split('/').next().unwrap().to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ecs_container_credentials_are_used_and_refreshed_before_expiry() {
        let now = unix_now();
        // The first credentials expire in 68 s, so within the 60 s margin after
        // about 8 s; the second are good for an hour.
        let first_expiry = now + 68;
        let (fake, uri) = FakeEcs::start(vec![
            ecs_answer(
                "ASIAFAKEKEY000000001",
                "secret-1",
                "session-1",
                first_expiry,
            ),
            ecs_answer("ASIAFAKEKEY000000002", "secret-2", "session-2", now + 3600),
        ])
        .await;
        let output = run_child(vec![
            (CHILD_MODE, "ecs".into()),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                "pod-identity-token".into(),
            ),
            (CHILD_REFRESH_AT, (first_expiry - 60).to_string()),
        ])
        .await;
        let tokens = lines(&output, "TOKEN ");
        assert_eq!(tokens.len(), 2, "{tokens:?}");
        assert_eq!(key_id(&tokens[0]), "ASIAFAKEKEY000000001");
        assert_eq!(header(&tokens[0], "x-amz-security-token"), "session-1");
        assert_eq!(header(&tokens[0], "x-intentgate-audience"), AUDIENCE);
        assert_eq!(header(&tokens[0], "host"), STS_HOST);
        assert_eq!(key_id(&tokens[1]), "ASIAFAKEKEY000000002");
        assert_eq!(header(&tokens[1], "x-amz-security-token"), "session-2");
        for token in &tokens {
            assert!(!token.contains("secret-"), "the secret key never leaves");
        }
        assert_eq!(fake.hits.load(Ordering::SeqCst), 2);
        assert!(
            fake.authorization
                .lock()
                .unwrap()
                .iter()
                .all(|a| a.as_deref() == Some("pod-identity-token"))
        );
    }

    #[tokio::test]
    async fn no_credentials_is_a_clear_error_naming_the_chain() {
        let output = run_child(vec![(CHILD_MODE, "none".into())]).await;
        let errors = lines(&output, "ERROR ");
        assert_eq!(errors.len(), 1, "{errors:?}");
        let error = &errors[0];
        assert!(error.starts_with("no AWS credentials found."), "{error}");
        for source in [
            "AWS_ACCESS_KEY_ID",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "IMDS",
            "EcsContainer",
        ] {
            assert!(error.contains(source), "{source} in {error}");
        }
    }

    /// The Python test peers' virtualenv (`INTENTGATE_MOTO_VENV` overrides it).
    fn moto_venv() -> PathBuf {
        std::env::var_os("INTENTGATE_MOTO_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/python/.venv")
            })
    }

    /// Kills and reaps the process when dropped.
    struct KillOnDrop(std::process::Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Creates an IAM user with keys and a role it may assume (moto counts these
    /// four calls before it starts checking signatures), then assumes the role
    /// as that user; prints the ECS-style credentials JSON.
    const ASSUME_ROLE: &str = r#"
import boto3, json, sys
endpoint = sys.argv[1]
common = dict(endpoint_url=endpoint, region_name="us-east-1")
iam = boto3.client("iam", aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="bootstrap", **common)
user = iam.create_user(UserName="deployer")["User"]
key = iam.create_access_key(UserName="deployer")["AccessKey"]
iam.put_user_policy(UserName="deployer", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
role = iam.create_role(RoleName="TaskRole", Path="/svc/", AssumeRolePolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": user["Arn"]}, "Action": "sts:AssumeRole"}]}))["Role"]
sts = boto3.client("sts", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], **common)
c = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="task-0123abcd")["Credentials"]
print(json.dumps({"RoleArn": role["Arn"], "AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"],
                  "Token": c["SessionToken"], "Expiration": c["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ")}))
"#;

    /// Sends the token's request to `port` on 127.0.0.1, keeping its Host
    /// header (as the plugin's `sts_endpoint` does); answers status and body.
    async fn replay(token: &str, port: u16) -> (u16, String) {
        let value: serde_json::Value = serde_json::from_str(token).unwrap();
        let url = value["url"].as_str().unwrap();
        let after_scheme = url.strip_prefix("https://").unwrap();
        let path = &after_scheme[after_scheme.find('/').unwrap()..];
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut request = hyper::Request::post(path);
        for (key, value) in token_headers(token) {
            request = request.header(key, value);
        }
        let body = value["body"].as_str().unwrap().to_string();
        let response = sender
            .send_request(request.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn moto_as_sts_accepts_the_token_and_names_the_assumed_role() {
        let venv = moto_venv();
        let moto_server = venv.join("bin/moto_server");
        if !moto_server.exists() {
            eprintln!(
                "SKIPPED moto end to end: no {} (run scripts/ensure-python-peers: \
                 it installs moto from tests/peers/python/requirements.txt)",
                moto_server.display()
            );
            return;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut moto = Command::new(&moto_server);
        moto.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "4")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _moto = KillOnDrop(moto.spawn().unwrap());
        let mut ready = false;
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            ready,
            "moto_server did not listen on port {port} within 30 s"
        );

        let python = venv.join("bin/python");
        let endpoint = format!("http://127.0.0.1:{port}");
        let assumed = tokio::task::spawn_blocking(move || {
            let mut command = Command::new(python);
            command
                .args(["-c", ASSUME_ROLE, &endpoint])
                .stdin(Stdio::null());
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("AWS_") {
                    command.env_remove(key);
                }
            }
            command
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            assumed.status.success(),
            "AssumeRole via moto failed: {}",
            String::from_utf8_lossy(&assumed.stderr)
        );
        let credentials = String::from_utf8(assumed.stdout).unwrap();
        let served: serde_json::Value = serde_json::from_str(credentials.trim()).unwrap();

        let (_fake, uri) = FakeEcs::start(vec![credentials.trim().to_string()]).await;
        let output = run_child(vec![
            (CHILD_MODE, "ecs".into()),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri),
        ])
        .await;
        let tokens = lines(&output, "TOKEN ");
        assert_eq!(tokens.len(), 1, "{tokens:?}");
        let token = &tokens[0];
        assert_eq!(key_id(token), served["AccessKeyId"].as_str().unwrap());
        assert_eq!(
            header(token, "x-amz-security-token"),
            served["Token"].as_str().unwrap()
        );

        let (status, body) = replay(token, port).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains(
                "<Arn>arn:aws:sts::123456789012:assumed-role/TaskRole/task-0123abcd</Arn>"
            ),
            "{body}"
        );

        // moto checks signatures here: a changed signature, or a changed
        // audience under the same signature, is refused.
        let signature = header(token, "authorization");
        let signature = &signature[signature.len() - 64..];
        let flipped = if signature.starts_with('0') { "1" } else { "0" };
        let bad_signature = token.replace(signature, &format!("{flipped}{}", &signature[1..]));
        let (status, body) = replay(&bad_signature, port).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("SignatureDoesNotMatch"), "{body}");
        let other_audience =
            token.replace(&format!("\"{AUDIENCE}\""), "\"intentgate-somewhere-else\"");
        let (status, body) = replay(&other_audience, port).await;
        assert_eq!(status, 403, "{body}");
    }
}
