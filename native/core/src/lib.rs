//! Pure-Rust core of agent_runtime's hot paths. No pyo3 here: the binding crate
//! (`native/python`) only converts arguments and releases the GIL.

pub mod tokens;
pub mod sse;
pub mod partial_json;
pub mod textdiff;
pub mod merge;
pub mod history;
