//! Thin pyo3 binding of `agent-native-core`: convert arguments, release the GIL (`py.detach`)
//! around the work, map errors to Python exceptions. No logic lives here.
//!
//! One module per core module (`tokens`, `textdiff`, `merge`, `sse`, `partial_json`, `history`);
//! this file only registers what they define as `agent_runtime._native` (typed in
//! `agent_runtime/_native.pyi`).

use pyo3::prelude::*;

mod history;
mod merge;
mod partial_json;
mod sse;
mod textdiff;
mod tokens;

/// Inputs at least this large are processed with the GIL released.
const DETACH_BYTES: usize = 4096;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(tokens::count_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(tokens::count_tokens_many, m)?)?;
    m.add_function(wrap_pyfunction!(tokens::estimate_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(tokens::estimate_factor, m)?)?;
    m.add_class::<tokens::IncrementalCounter>()?;
    m.add_class::<history::TokenCache>()?;
    m.add_function(wrap_pyfunction!(textdiff::diff, m)?)?;
    m.add_function(wrap_pyfunction!(textdiff::apply_diff, m)?)?;
    m.add_class::<textdiff::Diff>()?;
    m.add_class::<textdiff::Hunk>()?;
    m.add_function(wrap_pyfunction!(merge::merge3, m)?)?;
    m.add_class::<merge::MergeResult>()?;
    m.add_class::<merge::ConflictRegion>()?;
    m.add_class::<sse::SseParser>()?;
    m.add_class::<sse::SseEvent>()?;
    m.add_class::<partial_json::PartialJsonParser>()?;
    m.add_class::<partial_json::JsonEvent>()?;
    m.add_function(wrap_pyfunction!(history::analyze_history, m)?)?;
    m.add_class::<history::HistoryReport>()?;
    let jpe = py.get_type::<partial_json::JsonParseError>();
    jpe.setattr("offset", -1)?;
    m.add("JsonParseError", jpe)?;
    m.add("SseBufferOverflow", py.get_type::<sse::SseBufferOverflow>())?;
    m.add("ParserClosedError", py.get_type::<sse::ParserClosedError>())?;
    m.add("PatchError", py.get_type::<textdiff::PatchError>())?;
    m.add("MAX_JSON_DEPTH", agent_native_core::partial_json::MAX_DEPTH)?;
    Ok(())
}
