//! A deliberately hostile identity plugin for the host's sandbox tests.
//!
//! The credential value (UTF-8) selects a misbehaviour; see `README.md` for
//! what the host must do in each case. Nothing here is meant for production.

mod bindings {
    #![allow(unsafe_code)]
    wit_bindgen::generate!({
        world: "identity-plugin",
        path: "../../wit/intentgate-plugin@0.1.0",
    });
    use super::Hostile;
    export!(Hostile with_types_in self);
}

mod config;

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bindings::exports::intentgate::plugin::identity_provider::{
    AuthError, Credential, Guest, Identity,
};
use bindings::intentgate::plugin::log::{self, Level};
use bindings::intentgate::plugin::outbound_http::{self, CacheMode, HttpError, Request};
use bindings::intentgate::plugin::types::{EntityRef, PluginMetadata};

use config::HostileConfig;

/// Size of the `attributes-json` string returned by the `huge` mode.
const HUGE_BYTES: usize = 20 << 20;
/// Size of the `attributes-json` string returned by `attrs-over-cap`: one
/// byte over the contract's 16 KiB cap.
const OVER_CAP_BYTES: usize = 16 * 1024 + 1;
/// Number of log lines written by the `log-flood` mode.
const LOG_FLOOD_LINES: usize = 1_000_000;
/// Size of each log line written by the `log-flood` mode.
const LOG_FLOOD_LINE_BYTES: usize = 1024;
/// Size of each allocation in the `memory` mode.
const MEMORY_CHUNK_BYTES: usize = 1 << 20;
/// Wall time spent busy-waiting in the `slow-host` mode.
const SLOW_HOST_WAIT: Duration = Duration::from_millis(50);

struct Hostile;

impl Guest for Hostile {
    fn check_config() -> Result<(), String> {
        load_config().map(|_| ())
    }

    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "hostile".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            outbound: load_config().map(|c| c.ask_outbound).unwrap_or_default(),
            headers: Vec::new(),
        }
    }

    fn cedar_schema() -> String {
        "namespace Test { entity User; }\n".to_string()
    }

    fn principal_types() -> Vec<String> {
        vec!["Test::User".to_string()]
    }

    fn authenticate(credential: Credential) -> Result<Identity, AuthError> {
        let mode = std::str::from_utf8(&credential.value)
            .map_err(|_| AuthError::Malformed("credential is not UTF-8".to_string()))?;
        match mode {
            "ok" => Ok(ok_identity()),
            "loop" => spin_forever(),
            "memory" => exhaust_memory(),
            "recursion" => Ok(identity_after(recurse(black_box(0)))),
            "trap" => trap(),
            "huge" => Ok(padded_identity(HUGE_BYTES)),
            "attrs-over-cap" => Ok(padded_identity(OVER_CAP_BYTES)),
            "log-flood" => {
                log_flood();
                Ok(ok_identity())
            }
            "outbound-denied" => outbound("https://not-granted.example/"),
            "outbound-metadata" => outbound("http://169.254.169.254/latest/meta-data/"),
            "outbound-private" => outbound("http://10.0.0.1/"),
            "outbound-loopback" => {
                let url = load_config()
                    .map_err(AuthError::Unavailable)?
                    .loopback_url
                    .ok_or_else(|| {
                        AuthError::Unavailable(
                            "hostile: config key `loopback_url` is not set".to_string(),
                        )
                    })?;
                outbound(&url)
            }
            "slow-host" => {
                busy_wait(SLOW_HOST_WAIT);
                Ok(ok_identity())
            }
            other => Err(AuthError::Malformed(format!(
                "hostile: unknown mode `{}`",
                other.escape_debug()
            ))),
        }
    }
}

fn load_config() -> Result<HostileConfig, String> {
    HostileConfig::parse(&bindings::intentgate::plugin::config::get())
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The one valid identity this plugin hands out: `Test::User::"ok"`.
fn ok_identity() -> Identity {
    Identity {
        principal: EntityRef {
            type_name: "Test::User".to_string(),
            id: "ok".to_string(),
        },
        attributes_json: "{}".to_string(),
        parents: Vec::new(),
        expires_at: now_unix() + 300,
        trust_anchor: "test".to_string(),
    }
}

/// An ok identity that depends on `value`, so the work producing `value`
/// cannot be optimized away.
fn identity_after(value: u64) -> Identity {
    black_box(value);
    ok_identity()
}

/// `loop`: never returns. The counter goes through `black_box`, so the
/// optimizer cannot prove the loop side-effect free and delete it.
fn spin_forever() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// `memory`: allocate 1 MiB chunks and touch every page of each, forever.
/// Ends with a trap when the host's memory limit refuses to grow memory.
fn exhaust_memory() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; MEMORY_CHUNK_BYTES];
        for i in (0..MEMORY_CHUNK_BYTES).step_by(4096) {
            chunk[i] = black_box(1);
        }
        chunks.push(black_box(chunk));
    }
}

/// `recursion`: unbounded, non-tail recursion that only uses the wasm
/// (native) stack. `black_box` on the argument and on the result keeps LLVM
/// from turning it into a loop (tail-call or accumulator elimination).
fn recurse(depth: u64) -> u64 {
    // Never true (the stack runs out long before), but opaque to the compiler.
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let next = recurse(black_box(depth.wrapping_add(1)));
    black_box(next).wrapping_add(1)
}

/// `trap`: panic; with `panic = "abort"` this is a wasm `unreachable` trap.
#[allow(clippy::panic)]
fn trap() -> ! {
    panic!("hostile plugin: deliberate trap");
}

/// `huge` and `attrs-over-cap`: an identity whose attributes are a valid
/// JSON object of exactly `bytes` bytes (20 MiB, or 16 KiB + 1).
fn padded_identity(bytes: usize) -> Identity {
    let mut json = String::with_capacity(bytes);
    json.push_str("{\"pad\":\"");
    let fill = bytes.saturating_sub(json.len() + 2);
    json.extend(std::iter::repeat_n('x', fill));
    json.push_str("\"}");
    Identity {
        attributes_json: json,
        ..ok_identity()
    }
}

/// `log-flood`: one million 1 KiB log lines.
fn log_flood() {
    let line = "x".repeat(LOG_FLOOD_LINE_BYTES);
    for _ in 0..LOG_FLOOD_LINES {
        log::log(Level::Info, black_box(&line));
    }
}

/// `outbound-*`: ask the host for a URL it must refuse. The host's refusal
/// comes back as `unavailable("<variant>: <text>")`; an ok identity means the
/// host let the request through.
fn outbound(url: &str) -> Result<Identity, AuthError> {
    let request = Request {
        method: "GET".to_string(),
        url: url.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
        cache: CacheMode::NoStore,
    };
    match outbound_http::send(&request) {
        Ok(_) => Ok(ok_identity()),
        Err(e) => Err(AuthError::Unavailable(describe_http_error(&e))),
    }
}

fn describe_http_error(e: &HttpError) -> String {
    match e {
        HttpError::Denied(s) => format!("denied: {s}"),
        HttpError::Invalid(s) => format!("invalid: {s}"),
        HttpError::Timeout => "timeout".to_string(),
        HttpError::TooLarge => "too-large".to_string(),
        HttpError::Unavailable(s) => format!("unavailable: {s}"),
    }
}

/// `slow-host`: burn CPU for `wait` of wall time, then return.
fn busy_wait(wait: Duration) {
    let start = Instant::now();
    let mut spins = 0u64;
    while start.elapsed() < wait {
        spins = black_box(spins.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_attributes_are_exact_size_json() {
        for size in [OVER_CAP_BYTES, 64] {
            let id = padded_identity(size);
            assert_eq!(id.attributes_json.len(), size);
            let v: serde_json::Value = serde_json::from_str(&id.attributes_json).unwrap();
            assert!(v["pad"].is_string());
        }
    }

    #[test]
    fn ok_identity_shape() {
        let id = ok_identity();
        assert_eq!(id.principal.type_name, "Test::User");
        assert_eq!(id.principal.id, "ok");
        assert_eq!(id.attributes_json, "{}");
        assert!(id.parents.is_empty());
        assert_eq!(id.trust_anchor, "test");
        assert!(id.expires_at > now_unix());
    }

    #[test]
    fn busy_wait_takes_wall_time() {
        let start = Instant::now();
        busy_wait(Duration::from_millis(5));
        assert!(start.elapsed() >= Duration::from_millis(5));
    }
}
