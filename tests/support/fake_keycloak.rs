//! Fake Keycloak: being written.
