//! Resource sets: what a node has and what a task or actor asks for.
//!
//! CPUs, GPUs and custom resources are fractional (a task may ask for half a
//! CPU) and are kept in fixed point, 1/10,000 of a unit, so that adding and
//! subtracting them never drifts. Memory is kept in bytes.
//!
//! ```
//! use fabric_runtime::resources::ResourceSet;
//! let node = ResourceSet::parse_custom("ssd=1").unwrap().with_cpus(2.0);
//! let task = ResourceSet::default().with_cpus(1.0).with_custom("ssd", 1.0);
//! assert!(node.contains(&task));
//! assert_eq!(task.to_string(), "CPU: 1, ssd: 1");
//! ```

use std::sync::Arc;

/// Fixed-point scale of fractional resources.
pub const UNIT: i64 = 10_000;

/// An amount of each resource. Negative amounts appear only in a node's free
/// set, briefly, when a task that released its CPU while blocked takes it back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResourceSet {
    /// CPUs in 1/10,000 units.
    pub cpu: i64,
    /// GPUs in 1/10,000 units.
    pub gpu: i64,
    /// Bytes.
    pub memory: i64,
    /// Custom resources in 1/10,000 units, sorted by name.
    pub custom: Vec<(Arc<str>, i64)>,
}

/// Converts a user-facing amount to fixed point, rejecting NaN, infinities and
/// negative amounts.
pub fn to_fixed(name: &str, amount: f64) -> Result<i64, String> {
    if !amount.is_finite() || amount < 0.0 {
        return Err(format!(
            "resource `{name}` must be a finite amount >= 0, got {amount}"
        ));
    }
    if amount > 1e12 {
        return Err(format!("resource `{name}` is too large: {amount}"));
    }
    Ok((amount * UNIT as f64).round() as i64)
}

fn fmt_fixed(v: i64) -> String {
    if v % UNIT == 0 {
        format!("{}", v / UNIT)
    } else {
        let s = format!("{:.4}", v as f64 / UNIT as f64);
        s.trim_end_matches('0').to_string()
    }
}

/// Formats a byte count for people, e.g. `1.5 GiB`.
pub fn fmt_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

impl ResourceSet {
    pub fn with_cpus(mut self, cpus: f64) -> Self {
        self.cpu = (cpus * UNIT as f64).round() as i64;
        self
    }

    pub fn with_gpus(mut self, gpus: f64) -> Self {
        self.gpu = (gpus * UNIT as f64).round() as i64;
        self
    }

    pub fn with_memory(mut self, bytes: u64) -> Self {
        self.memory = bytes.min(i64::MAX as u64) as i64;
        self
    }

    pub fn with_custom(mut self, name: &str, amount: f64) -> Self {
        self.set_custom(name, (amount * UNIT as f64).round() as i64);
        self
    }

    fn set_custom(&mut self, name: &str, fixed: i64) {
        match self.custom.binary_search_by(|(n, _)| (**n).cmp(name)) {
            Ok(i) => self.custom[i].1 = fixed,
            Err(i) => self.custom.insert(i, (Arc::from(name), fixed)),
        }
    }

    /// The amount of custom resource `name` (0 when absent).
    pub fn custom(&self, name: &str) -> i64 {
        self.custom
            .binary_search_by(|(n, _)| (**n).cmp(name))
            .map(|i| self.custom[i].1)
            .unwrap_or(0)
    }

    /// Parses `name=amount,name=amount` (the `--resources` flag).
    pub fn parse_custom(spec: &str) -> Result<Self, String> {
        let mut set = ResourceSet::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, amount) = part
                .split_once('=')
                .ok_or_else(|| format!("expected `name=amount`, got `{part}`"))?;
            let name = name.trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c))
            {
                return Err(format!("invalid resource name `{name}`"));
            }
            if matches!(name, "CPU" | "GPU" | "memory") {
                return Err(format!(
                    "`{name}` is set with its own flag, not --resources"
                ));
            }
            let amount: f64 = amount
                .trim()
                .parse()
                .map_err(|_| format!("invalid amount for `{name}`: `{amount}`"))?;
            set.set_custom(name, to_fixed(name, amount)?);
        }
        Ok(set)
    }

    /// Whether every amount in `demand` fits in `self`.
    pub fn contains(&self, demand: &ResourceSet) -> bool {
        self.cpu >= demand.cpu
            && self.gpu >= demand.gpu
            && self.memory >= demand.memory
            && demand
                .custom
                .iter()
                .all(|(n, v)| *v <= 0 || self.custom(n) >= *v)
    }

    /// The resources of `demand` that `self` lacks, for error messages.
    pub fn missing(&self, demand: &ResourceSet) -> Vec<String> {
        let mut out = Vec::new();
        if demand.cpu > self.cpu {
            out.push(format!(
                "CPU: {} (node has {})",
                fmt_fixed(demand.cpu),
                fmt_fixed(self.cpu)
            ));
        }
        if demand.gpu > self.gpu {
            out.push(format!(
                "GPU: {} (node has {})",
                fmt_fixed(demand.gpu),
                fmt_fixed(self.gpu)
            ));
        }
        if demand.memory > self.memory {
            out.push(format!(
                "memory: {} (node has {})",
                fmt_bytes(demand.memory),
                fmt_bytes(self.memory)
            ));
        }
        for (n, v) in &demand.custom {
            if *v > self.custom(n) {
                out.push(format!(
                    "{n}: {} (node has {})",
                    fmt_fixed(*v),
                    fmt_fixed(self.custom(n))
                ));
            }
        }
        out
    }

    /// The larger of each amount in `self` and `other`: what the best node
    /// of a group has of each resource.
    pub fn max_with(&mut self, other: &ResourceSet) {
        self.cpu = self.cpu.max(other.cpu);
        self.gpu = self.gpu.max(other.gpu);
        self.memory = self.memory.max(other.memory);
        for (n, v) in &other.custom {
            let cur = self.custom(n);
            self.set_custom(n, cur.max(*v));
        }
    }

    pub fn subtract(&mut self, demand: &ResourceSet) {
        self.cpu -= demand.cpu;
        self.gpu -= demand.gpu;
        self.memory -= demand.memory;
        for (n, v) in &demand.custom {
            let cur = self.custom(n);
            self.set_custom(n, cur - v);
        }
    }

    pub fn add(&mut self, demand: &ResourceSet) {
        self.cpu += demand.cpu;
        self.gpu += demand.gpu;
        self.memory += demand.memory;
        for (n, v) in &demand.custom {
            let cur = self.custom(n);
            self.set_custom(n, cur + v);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.cpu == 0
            && self.gpu == 0
            && self.memory == 0
            && self.custom.iter().all(|(_, v)| *v == 0)
    }

    /// The same demand with its CPUs capped at what `total` has (for work
    /// that should run even on a node with less than one CPU).
    pub fn min_cpus(mut self, total: &ResourceSet) -> Self {
        self.cpu = self.cpu.min(total.cpu);
        self
    }

    /// Whole GPUs requested (GPU ids are assigned per whole GPU; a fractional
    /// request shares one GPU).
    pub fn gpu_slots(&self) -> usize {
        ((self.gpu + UNIT - 1) / UNIT).max(0) as usize
    }
}

impl std::fmt::Display for ResourceSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if self.cpu != 0 {
            parts.push(format!("CPU: {}", fmt_fixed(self.cpu)));
        }
        if self.gpu != 0 {
            parts.push(format!("GPU: {}", fmt_fixed(self.gpu)));
        }
        if self.memory != 0 {
            parts.push(format!("memory: {}", fmt_bytes(self.memory)));
        }
        for (n, v) in &self.custom {
            parts.push(format!("{n}: {}", fmt_fixed(*v)));
        }
        if parts.is_empty() {
            write!(f, "nothing")
        } else {
            write!(f, "{}", parts.join(", "))
        }
    }
}

/// What this machine has: CPUs, GPUs (from `nvidia-smi`) and memory.
pub mod detect {
    /// Logical CPUs available to this process.
    pub fn cpus() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }

    /// GPU count: `CUDA_VISIBLE_DEVICES` when set, else `nvidia-smi`, else 0.
    pub fn gpus() -> usize {
        if let Ok(v) = std::env::var("CUDA_VISIBLE_DEVICES") {
            return v.split(',').filter(|s| !s.trim().is_empty()).count();
        }
        let out = std::process::Command::new("nvidia-smi")
            .args(["--query-gpu=index", "--format=csv,noheader"])
            .stderr(std::process::Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count(),
            _ => 0,
        }
    }

    /// Total physical memory in bytes (from /proc/meminfo; 8 GiB if unknown).
    pub fn memory_bytes() -> u64 {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| {
                        l.split_whitespace()
                            .nth(1)
                            .and_then(|kb| kb.parse::<u64>().ok())
                    })
            })
            .map(|kb| kb * 1024)
            .unwrap_or(8 << 30)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_contain() {
        let node = ResourceSet::parse_custom("ssd=1, tpu=0.5")
            .unwrap()
            .with_cpus(2.0);
        assert_eq!(node.custom("ssd"), UNIT);
        assert_eq!(node.custom("tpu"), UNIT / 2);
        assert!(node.contains(&ResourceSet::default().with_custom("ssd", 1.0)));
        assert!(!node.contains(&ResourceSet::default().with_custom("ssd", 2.0)));
        assert!(!node.contains(&ResourceSet::default().with_custom("gpu-x", 1.0)));
        assert!(!node.contains(&ResourceSet::default().with_gpus(1.0)));
    }

    #[test]
    fn bad_specs_are_rejected() {
        assert!(ResourceSet::parse_custom("ssd").is_err());
        assert!(ResourceSet::parse_custom("ssd=-1").is_err());
        assert!(ResourceSet::parse_custom("ssd=abc").is_err());
        assert!(ResourceSet::parse_custom("CPU=4").is_err());
        assert!(ResourceSet::parse_custom("a b=1").is_err());
        assert!(to_fixed("x", f64::NAN).is_err());
    }

    #[test]
    fn add_subtract_round_trip_and_display() {
        let mut free = ResourceSet::default()
            .with_cpus(2.0)
            .with_custom("ssd", 1.0);
        let d = ResourceSet::default()
            .with_cpus(0.5)
            .with_custom("ssd", 1.0);
        free.subtract(&d);
        assert_eq!(free.to_string(), "CPU: 1.5, ssd: 0");
        free.add(&d);
        assert_eq!(
            free,
            ResourceSet::default()
                .with_cpus(2.0)
                .with_custom("ssd", 1.0)
        );
        assert_eq!(
            ResourceSet::default()
                .with_gpus(1.0)
                .missing(&ResourceSet::default().with_gpus(2.0)),
            vec!["GPU: 2 (node has 1)".to_string()]
        );
        assert_eq!(fmt_bytes(3 << 29), "1.5 GiB");
    }
}
