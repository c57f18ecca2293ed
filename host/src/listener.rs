//! Listeners: one module per protocol. Each accepts connections, turns a
//! request into a [`crate::gate::Attempt`], runs the gate, forwards what is
//! allowed and audits every attempt.

pub mod admin;
pub mod http;
pub mod tls;
