//! Test support: a fake Kubernetes API server, a CRD schema validator, and the
//! harness that runs the operator against either the fake or a real cluster.
#![allow(dead_code)]

pub mod cluster;
pub mod fake_apiserver;
pub mod fake_grafana;
pub mod fake_keycloak;

pub mod recording_provider;
pub mod redis_server;
pub mod schema;
pub mod tenant_status;
pub mod webhook_receiver;
