//! The Kubernetes executor (DESIGN §6): workers as Pods of Jobs in one or many clusters.

pub mod manifest;
#[cfg(test)]
mod manifest_tests;
