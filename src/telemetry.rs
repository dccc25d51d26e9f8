//! Structured logs and Prometheus metrics.

use std::sync::{Arc, atomic::AtomicU64};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tracing_subscriber::{EnvFilter, prelude::*};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global log subscriber. `RUST_LOG` overrides the default filter.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn,tower=warn,hyper=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry.with(tracing_subscriber::fmt::layer().json().flatten_event(true)).try_init(),
        LogFormat::Text => registry.with(tracing_subscriber::fmt::layer()).try_init(),
    };
    // A subscriber installed earlier (tests run several operators in one process) wins.
    drop(result);
}

/// Labels of per-controller metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// The controller (`tenant`, `agent`, `capabilityquota`).
    pub controller: String,
}

/// Labels of error metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The controller.
    pub controller: String,
    /// The error's reason (a condition reason).
    pub reason: String,
}

/// The operator's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Reconciles started, per controller.
    pub reconciles: Family<ControllerLabels, Counter>,
    /// Reconcile errors, per controller and reason.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile durations in seconds, per controller.
    pub duration: Family<ControllerLabels, Histogram>,
    /// 1 while this instance holds the leader lease.
    pub leader: Gauge,
    /// Reconciles running now, per controller.
    pub in_flight: Family<ControllerLabels, Gauge>,
    /// When a controller last finished a reconcile (Unix seconds).
    pub last_reconcile: Family<ControllerLabels, Gauge<f64, AtomicU64>>,
    /// Objects queued for a controller that it has not taken yet.
    pub queue_depth: Family<ControllerLabels, Gauge>,
    /// How long the oldest queued object has waited for its controller (0 when the
    /// queue is empty); grows without bound only when a controller has stopped.
    pub queue_wait: Family<ControllerLabels, Gauge<f64, AtomicU64>>,
    /// Measured use per tenant and capability (`cx_capability_used`).
    pub capability_used: Family<CapabilityLabels, Gauge<f64, AtomicU64>>,
    /// Effective limit per tenant and capability (`cx_capability_limit`).
    pub capability_limit: Family<CapabilityLabels, Gauge<f64, AtomicU64>>,
    /// Sum of the tenants' allotments per licensed capability (`cx_licence_allotted`;
    /// +Inf while a tenant has no limit).
    pub licence_allotted: Family<LicenceLabels, Gauge<f64, AtomicU64>>,
    /// The licence cap per capability (`cx_licence_cap`).
    pub licence_cap: Family<LicenceLabels, Gauge<f64, AtomicU64>>,
}

/// Labels of licence metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LicenceLabels {
    /// The licensed capability (`agents`, `aiAgents`, `workflowTriggers`).
    pub capability: String,
}

/// Labels of capability metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CapabilityLabels {
    /// The tenant id.
    pub tenant: String,
    /// The capability (`agents`, `storage` ...).
    pub capability: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        let leader = Gauge::default();
        let in_flight = Family::<ControllerLabels, Gauge>::default();
        let last_reconcile = Family::<ControllerLabels, Gauge<f64, AtomicU64>>::default();
        let queue_depth = Family::<ControllerLabels, Gauge>::default();
        let queue_wait = Family::<ControllerLabels, Gauge<f64, AtomicU64>>::default();
        let capability_used = Family::<CapabilityLabels, Gauge<f64, AtomicU64>>::default();
        let capability_limit = Family::<CapabilityLabels, Gauge<f64, AtomicU64>>::default();
        let licence_allotted = Family::<LicenceLabels, Gauge<f64, AtomicU64>>::default();
        let licence_cap = Family::<LicenceLabels, Gauge<f64, AtomicU64>>::default();
        let mut registry = Registry::default();
        {
            let operator = registry.sub_registry_with_prefix("cx_operator");
            operator.register("reconciles", "Reconciles started", reconciles.clone());
            operator.register("reconcile_errors", "Reconcile errors by reason", errors.clone());
            operator.register("reconcile_duration_seconds", "Reconcile duration", duration.clone());
            operator.register("leader", "1 while this instance holds the leader lease", leader.clone());
            operator.register("reconciles_in_flight", "Reconciles running now", in_flight.clone());
            operator.register("last_reconcile_timestamp_seconds", "When the controller last finished a reconcile", last_reconcile.clone());
            operator.register("queue_depth", "Objects queued for the controller and not taken yet", queue_depth.clone());
            operator.register("queue_wait_seconds", "How long the oldest queued object has waited for the controller", queue_wait.clone());
        }
        // The capability gauges are named for the product, as dashboards query them.
        registry.register("cx_capability_used", "Measured use of a capability by a tenant", capability_used.clone());
        registry.register("cx_capability_limit", "Effective limit of a capability for a tenant", capability_limit.clone());
        registry.register("cx_licence_allotted", "Sum of the tenants' limits of a licensed capability", licence_allotted.clone());
        registry.register("cx_licence_cap", "Licence cap of a capability", licence_cap.clone());
        Self {
            registry: Arc::new(registry),
            reconciles,
            errors,
            duration,
            leader,
            in_flight,
            last_reconcile,
            queue_depth,
            queue_wait,
            capability_used,
            capability_limit,
            licence_allotted,
            licence_cap,
        }
    }
}

impl Metrics {
    /// Counts a reconcile and returns a guard that records its end when dropped: its
    /// duration, the time of the controller's last finished reconcile, the reconciles
    /// in flight.
    pub fn reconcile_started(&self, controller: &str) -> DurationGuard {
        let labels = ControllerLabels { controller: controller.to_string() };
        self.reconciles.get_or_create(&labels).inc();
        let in_flight = self.in_flight.get_or_create(&labels).clone();
        in_flight.inc();
        DurationGuard {
            histogram: self.duration.get_or_create(&labels).clone(),
            last: self.last_reconcile.get_or_create(&labels).clone(),
            in_flight,
            start: std::time::Instant::now(),
        }
    }

    /// Publishes the state of a controller's queue.
    pub fn set_queue(&self, controller: &str, depth: usize, wait: std::time::Duration) {
        let labels = ControllerLabels { controller: controller.to_string() };
        self.queue_depth.get_or_create(&labels).set(i64::try_from(depth).unwrap_or(i64::MAX));
        self.queue_wait.get_or_create(&labels).set(wait.as_secs_f64());
    }

    /// Counts a reconcile error.
    pub fn reconcile_failed(&self, controller: &str, reason: &str) {
        self.errors.get_or_create(&ErrorLabels { controller: controller.into(), reason: reason.into() }).inc();
    }

    /// Publishes a tenant's use and limit of a capability; a capability without a
    /// measurement or a limit is removed rather than shown as 0.
    pub fn set_capability(&self, tenant: &str, capability: &str, used: Option<f64>, limit: Option<f64>) {
        let labels = CapabilityLabels { tenant: tenant.into(), capability: capability.into() };
        for (family, value) in [(&self.capability_used, used), (&self.capability_limit, limit)] {
            match value {
                Some(v) => {
                    family.get_or_create(&labels).set(v);
                }
                None => {
                    family.remove(&labels);
                }
            }
        }
    }

    /// Publishes the licence use of one capability.
    pub fn set_licence(&self, capability: &str, allotted: f64, cap: f64) {
        let labels = LicenceLabels { capability: capability.into() };
        self.licence_allotted.get_or_create(&labels).set(allotted);
        self.licence_cap.get_or_create(&labels).set(cap);
    }

    /// Reconciles started by a controller so far.
    pub fn reconcile_count(&self, controller: &str) -> u64 {
        self.reconciles.get_or_create(&ControllerLabels { controller: controller.into() }).get()
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Records a reconcile's end when dropped.
pub struct DurationGuard {
    histogram: Histogram,
    last: Gauge<f64, AtomicU64>,
    in_flight: Gauge,
    start: std::time::Instant,
}

impl Drop for DurationGuard {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
        self.in_flight.dec();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.last.set(now.as_secs_f64());
    }
}
