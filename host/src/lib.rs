//! intentgate: an identity-aware proxy.
//!
//! Every call is identified by an identity-provider plugin, classified by a
//! connector plugin, decided by Cedar policies, bound to an explicit backend
//! identity, forwarded and audited. See `docs/ARCHITECTURE.md`.

pub mod ambient;
pub mod audit;
pub mod aws_token;
pub mod capability;
pub mod cli;
pub mod clock;
pub mod config;
pub mod gate;
pub mod gcp_federation;
pub mod identity_cache;
pub mod listener;
pub mod metrics;
pub mod model;
pub mod plugin;
pub mod policy;
pub mod server;
pub mod trust;
pub mod upstream_auth;
