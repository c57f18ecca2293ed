//! Shared pieces of the benchmark binaries (`spanner-standin`, `grpc-forwarder`, `mkreq`).
//!
//! Everything here serves `scripts/bench-spanner` (see `docs/bench-spanner.md`): a Spanner
//! stand-in fast enough that it is not the bottleneck, the bare HTTP/2 forwarder that is the
//! ceiling for any proxy hop built on hyper, and a small gRPC client to prepare and check requests.

pub mod forwarder;
pub mod grpc;
pub mod net;
pub mod standin;
