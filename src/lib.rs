//! cx-operator: the tenant control plane of a multi-tenant customer-experience platform.
//!
//! Layout: [`api`] holds the custom resource types, [`config`] the operator
//! configuration, [`controller`] one reconciler per kind, [`provider`] one module per
//! external system behind a small trait, [`telemetry`] logs and metrics, [`webhook`]
//! the validating admission webhook and [`licence`] the platform licence arithmetic.

pub mod api;
pub mod config;
pub mod controller;
pub mod labels;
pub mod licence;
pub mod operator;
pub mod plan;
pub mod provider;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod webhook;
