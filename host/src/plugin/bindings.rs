//! Host bindings generated from `wit/intentgate-plugin@0.1.0`.
//!
//! Imports are async (outbound HTTP waits on the network) and trappable (the
//! host may end a guest that breaks the rules); exports are called async.

/// The identity-plugin world.
pub mod identity {
    wasmtime::component::bindgen!({
        world: "identity-plugin",
        path: "../wit/intentgate-plugin@0.1.0",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

/// The connector-plugin world; shares the common interfaces with `identity`.
pub mod connector {
    wasmtime::component::bindgen!({
        world: "connector-plugin",
        path: "../wit/intentgate-plugin@0.1.0",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "intentgate:plugin/types": super::identity::intentgate::plugin::types,
            "intentgate:plugin/log": super::identity::intentgate::plugin::log,
            "intentgate:plugin/config": super::identity::intentgate::plugin::config,
        },
    });
}
