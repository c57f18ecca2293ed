//! The one wasmtime `Engine` every plugin shares, and its epoch ticker.
//!
//! Pooling allocator with resident memory kept warm (a fresh instance per
//! call costs a few microseconds), epoch interruption for preemption, stack
//! zeroing so pooled stacks never leak one call's data into the next.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

use super::limits::{EPOCH_TICK, MAX_MEMORY_MIB, MAX_TOTAL_INSTANCES};

/// Builds the shared engine.
///
/// # Errors
/// When wasmtime rejects the configuration (for example when the address
/// space for the pool cannot be reserved).
pub fn build() -> wasmtime::Result<Engine> {
    let n = MAX_TOTAL_INSTANCES;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(4 * n)
        .total_memories(2 * n)
        .total_tables(4 * n)
        .total_stacks(n)
        .max_memory_size((MAX_MEMORY_MIB as usize) << 20)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        .max_core_instances_per_component(16)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20)
        .table_elements(20_000)
        // Keep the first pages of each slot resident: re-faulting them on
        // every fresh instance would triple the cost of a call.
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(512 << 10)
        .async_stack_size(2 << 20)
        .async_stack_zeroing(false)
        .cranelift_opt_level(OptLevel::Speed)
        .memory_init_cow(false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// Increments the engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    /// Starts the ticker thread. It holds only a weak engine reference.
    pub fn start(engine: &Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("intentgate-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })?;
        Ok(Self { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
