//! The command line as an operator and a security team use it: `check`,
//! `explain` and `policy test`, on the quickstart example and broken copies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test loudly"
)]

use std::process::Command;

use anyhow::Result;
use intentgate_tests::gateway::{TempDir, binary};
use intentgate_tests::repo_root;

fn run(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(binary()?)
        .args(args)
        .current_dir(repo_root())
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

/// A copy of the quickstart example whose plugin paths still resolve.
fn quickstart_copy(dir: &TempDir) -> Result<std::path::PathBuf> {
    let root = repo_root();
    // The committed review date ages with the calendar; the copy is reviewed today.
    let today = intentgate_tests::today();
    let text = std::fs::read_to_string(root.join("examples/quickstart/intentgate.toml"))?
        .replace("../../plugins/", &format!("{}/plugins/", root.display()))
        .lines()
        .map(|l| {
            if l.starts_with("reviewed = ") {
                format!("reviewed = \"{today}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let policies = std::fs::read_to_string(root.join("examples/quickstart/policies/orders.cedar"))?;
    dir.write("policies/orders.cedar", &policies)?;
    dir.write("intentgate.toml", &text)
}

#[test]
fn check_accepts_the_quickstart() -> Result<()> {
    let dir = TempDir::new("cli-check")?;
    let config = quickstart_copy(&dir)?;
    let (code, stdout, stderr) = run(&["check", "--config", config.to_str().unwrap()])?;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.starts_with(&format!("ok: {}", config.display())),
        "{stdout}"
    );
    Ok(())
}

#[test]
fn check_names_the_file_and_line_of_a_policy_syntax_error() -> Result<()> {
    let dir = TempDir::new("cli-syntax")?;
    let config = quickstart_copy(&dir)?;
    let path = dir.path().join("policies/orders.cedar");
    let text = std::fs::read_to_string(&path)?;
    // Break the third line of the first policy's scope.
    let broken = text.replacen(
        "action in Http::Action::\"read\",",
        "action in Http::Action::\"read\" ,,",
        1,
    );
    assert_ne!(broken, text);
    std::fs::write(&path, &broken)?;
    let line = broken.lines().position(|l| l.contains(",,")).unwrap() + 1;
    let (code, _, stderr) = run(&["check", "--config", config.to_str().unwrap()])?;
    assert_ne!(code, 0);
    let expected = format!("{}:{line}:", path.display());
    assert!(
        stderr.contains(&expected),
        "expected `{expected}` in:\n{stderr}"
    );
    Ok(())
}

#[test]
fn check_names_the_file_and_line_of_a_validation_error() -> Result<()> {
    let dir = TempDir::new("cli-validate")?;
    let config = quickstart_copy(&dir)?;
    let path = dir.path().join("policies/extra.cedar");
    std::fs::write(
        &path,
        "// a typo in an attribute name\n\n@id(\"typo\")\npermit (principal, action, resource)\nwhen { principal.emial == \"a@b\" };\n",
    )?;
    let (code, _, stderr) = run(&["check", "--config", config.to_str().unwrap()])?;
    assert_ne!(code, 0);
    let expected = format!("{}:", path.display());
    assert!(
        stderr.contains(&expected) && stderr.contains("emial"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn check_names_the_line_of_a_config_error() -> Result<()> {
    let dir = TempDir::new("cli-config")?;
    let config = quickstart_copy(&dir)?;
    let text =
        std::fs::read_to_string(&config)?.replace("connector = \"http\"", "connector = \"htp\"");
    std::fs::write(&config, &text)?;
    let line = text.lines().position(|l| l.contains("\"htp\"")).unwrap() + 1;
    let (code, _, stderr) = run(&["check", "--config", config.to_str().unwrap()])?;
    assert_ne!(code, 0);
    assert!(
        stderr.contains(&format!("intentgate.toml:{line}:"))
            && stderr.contains("no [[connector]] named `htp`"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn explain_shows_the_decision_and_the_determining_policies() -> Result<()> {
    let dir = TempDir::new("cli-explain")?;
    let request = dir.write(
        "request.json",
        r#"{
          "identity": {
            "principal": "Oidc::Subject::\"http://127.0.0.1:18080#alice\"",
            "parents": ["Oidc::Issuer::\"http://127.0.0.1:18080\""],
            "attributes": { "sub": "alice", "iss": "http://127.0.0.1:18080", "scopes": [] },
            "trust_anchor": "http://127.0.0.1:18080"
          },
          "call": { "method": "GET", "path": "/orders/42" }
        }"#,
    )?;
    let config = quickstart_copy(&dir)?;
    let (code, stdout, stderr) = run(&[
        "explain",
        "--config",
        config.to_str().unwrap(),
        "--request",
        request.to_str().unwrap(),
    ])?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let out: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(out["decision"], "allow");
    assert_eq!(
        out["determining_policies"],
        serde_json::json!(["alice-reads-orders"])
    );
    assert_eq!(out["resource"], "Http::Path::\"/orders/42\"");

    let write = std::fs::read_to_string(&request)?.replace("\"GET\"", "\"DELETE\"");
    std::fs::write(&request, write)?;
    let (code, stdout, _) = run(&[
        "explain",
        "--config",
        config.to_str().unwrap(),
        "--request",
        request.to_str().unwrap(),
    ])?;
    assert_eq!(code, 3, "a deny exits 3");
    let out: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(out["decision"], "deny");
    assert_eq!(
        out["determining_policies"],
        serde_json::json!(["no-writes-to-orders"])
    );
    Ok(())
}

#[test]
fn policy_tests_pass_on_the_quickstart_and_fail_on_a_wrong_expectation() -> Result<()> {
    let (code, stdout, stderr) = run(&[
        "policy",
        "test",
        "--config",
        "examples/quickstart/intentgate.toml",
        "examples/quickstart/policy-tests.toml",
    ])?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");

    let dir = TempDir::new("cli-policy-test")?;
    let wrong = std::fs::read_to_string(repo_root().join("examples/quickstart/policy-tests.toml"))?
        .replacen("decision = \"allow\"", "decision = \"deny\"", 1);
    let file = dir.write("wrong.toml", &wrong)?;
    let (code, stdout, _) = run(&[
        "policy",
        "test",
        "--config",
        "examples/quickstart/intentgate.toml",
        file.to_str().unwrap(),
    ])?;
    assert_ne!(code, 0);
    assert!(
        stdout.contains("FAIL") && stdout.contains(" 1 failed"),
        "{stdout}"
    );
    Ok(())
}
