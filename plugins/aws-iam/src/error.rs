//! The plugin's rejection type, mirroring the WIT `auth-error` variant so the
//! pure logic does not depend on the generated bindings.

pub use intentgate_guest::{AuthFailure, invalid, malformed, quote, unavailable};
