//! Three-way merge: `merge3`, `MergeResult`, `ConflictRegion` (binding of `agent_native_core::merge`).

use agent_native_core::merge;
use pyo3::prelude::*;

#[pyclass(module = "agent_runtime._native", frozen, eq)]
#[derive(PartialEq)]
pub(crate) struct ConflictRegion {
    #[pyo3(get)]
    base_start: usize,
    #[pyo3(get)]
    base_end: usize,
    #[pyo3(get)]
    ours_start: usize,
    #[pyo3(get)]
    ours_end: usize,
    #[pyo3(get)]
    theirs_start: usize,
    #[pyo3(get)]
    theirs_end: usize,
    #[pyo3(get)]
    base: String,
    #[pyo3(get)]
    ours: String,
    #[pyo3(get)]
    theirs: String,
}

#[pymethods]
impl ConflictRegion {
    fn __repr__(&self) -> String {
        format!(
            "ConflictRegion(base={}..{}, ours={}..{}, theirs={}..{})",
            self.base_start, self.base_end, self.ours_start, self.ours_end, self.theirs_start, self.theirs_end
        )
    }
}

#[pyclass(module = "agent_runtime._native", frozen)]
pub(crate) struct MergeResult {
    /// Merged text with git-style conflict markers around each conflict.
    #[pyo3(get)]
    text: String,
    #[pyo3(get)]
    conflicts: Vec<Py<ConflictRegion>>,
}

#[pymethods]
impl MergeResult {
    #[getter]
    fn clean(&self) -> bool {
        self.conflicts.is_empty()
    }

    #[getter]
    fn merged(&self) -> Option<&str> {
        self.conflicts.is_empty().then_some(self.text.as_str())
    }

    fn __repr__(&self) -> String {
        format!("MergeResult(clean={}, conflicts={})", if self.conflicts.is_empty() { "True" } else { "False" }, self.conflicts.len())
    }
}

#[pyfunction]
#[pyo3(signature = (base, ours, theirs, labels = ("ours".to_string(), "theirs".to_string())))]
pub(crate) fn merge3(py: Python<'_>, base: &str, ours: &str, theirs: &str, labels: (String, String)) -> PyResult<MergeResult> {
    let out = py.detach(|| merge::merge3(base, ours, theirs, (&labels.0, &labels.1)));
    let conflicts = out
        .conflicts
        .into_iter()
        .map(|c| {
            Py::new(
                py,
                ConflictRegion {
                    base_start: c.region.base.0,
                    base_end: c.region.base.1,
                    ours_start: c.region.ours.0,
                    ours_end: c.region.ours.1,
                    theirs_start: c.region.theirs.0,
                    theirs_end: c.region.theirs.1,
                    base: c.base,
                    ours: c.ours,
                    theirs: c.theirs,
                },
            )
        })
        .collect::<PyResult<_>>()?;
    Ok(MergeResult { text: out.text, conflicts })
}
