//! How a node sizes and shapes its engine: the instance pool, memory and
//! stack bounds, fuel, the compiler sandbox and caches. The settings that
//! shape compiled code travel to the compiler process as one argument
//! (`to_arg`), so both sides compile alike.
//!
//! ```
//! use fabric_runtime::runtime::engine::EngineSettings;
//! let s = EngineSettings::default();
//! assert!(s.max_instances > 0 && s.max_wasm_stack < s.async_stack_size);
//! ```

use std::sync::Arc;

/// Sizing of the engine's instance pool.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Live instances at once (tasks running, actors alive, drivers).
    pub max_instances: u32,
    /// Largest linear memory one instance may grow to, in bytes.
    pub max_instance_memory: u64,
    /// Native stack for a running guest (its wasm stack lives inside it).
    pub async_stack_size: usize,
    /// Wasm stack a guest may use before it traps with a stack overflow.
    pub max_wasm_stack: usize,
    /// Meter CPU with fuel (deterministic, about 10-20% slower) instead of
    /// epoch ticks alone. Jobs then get the `fuel` limit.
    pub fuel_metering: bool,
    /// Compile components in a bounded child process (see
    /// [`super::compile`]); `None` compiles in this process, for trusted
    /// code only.
    pub compile: Option<super::compile::CompileSandbox>,
    /// What compiled components the node keeps, and how many compiles run
    /// at once.
    pub components: super::component_cache::ComponentBounds,
    /// A private directory where compiled components are kept across
    /// restarts (see [`super::disk_cache`]); `None` keeps them in memory
    /// only.
    pub compiled_dir: Option<std::path::PathBuf>,
    /// Tenants' guaranteed shares of the `max_instances` slots (see
    /// [`super::slots`]); they sum to no more than `max_instances`.
    pub guaranteed_instances: Vec<(Arc<str>, u32)>,
}

impl EngineSettings {
    /// The settings that shape compiled code, as one command-line value.
    pub(crate) fn to_arg(&self) -> String {
        format!(
            "max-instances={},max-instance-memory={},async-stack-size={},max-wasm-stack={},fuel={}",
            self.max_instances,
            self.max_instance_memory,
            self.async_stack_size,
            self.max_wasm_stack,
            u8::from(self.fuel_metering)
        )
    }

    pub(crate) fn from_arg(arg: &str) -> Result<Self, String> {
        let mut s = EngineSettings::default();
        for part in arg.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("bad setting `{part}`"))?;
            let n: u64 = v.parse().map_err(|_| format!("bad value in `{part}`"))?;
            match k {
                "max-instances" => s.max_instances = n as u32,
                "max-instance-memory" => s.max_instance_memory = n,
                "async-stack-size" => s.async_stack_size = n as usize,
                "max-wasm-stack" => s.max_wasm_stack = n as usize,
                "fuel" => s.fuel_metering = n != 0,
                _ => return Err(format!("unknown setting `{k}`")),
            }
        }
        Ok(s)
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            // Fits the kernel's default vm.max_map_count (65,530) at about six
            // mappings per live instance.
            max_instances: 10_000,
            max_instance_memory: 4 << 30,
            async_stack_size: 2 << 20,
            max_wasm_stack: 1 << 20,
            fuel_metering: false,
            compile: None,
            components: Default::default(),
            compiled_dir: None,
            guaranteed_instances: Vec::new(),
        }
    }
}
