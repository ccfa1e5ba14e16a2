//! Line diff: `diff`, `apply_diff`, `Diff`, `Hunk`, `PatchError` (binding of
//! `agent_native_core::textdiff`).

use agent_native_core::textdiff;
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::PyString;

create_exception!(_native, PatchError, PyValueError, "A diff or unified patch does not apply to the given text.");

#[pyclass(module = "agent_runtime._native", frozen, eq)]
#[derive(PartialEq)]
pub(crate) struct Hunk {
    #[pyo3(get)]
    old_start: usize,
    #[pyo3(get)]
    old_end: usize,
    #[pyo3(get)]
    new_start: usize,
    #[pyo3(get)]
    new_end: usize,
    #[pyo3(get)]
    removed: Vec<String>,
    #[pyo3(get)]
    added: Vec<String>,
}

#[pymethods]
impl Hunk {
    fn __repr__(&self) -> String {
        format!(
            "Hunk(old={}..{}, new={}..{}, removed={}, added={})",
            self.old_start,
            self.old_end,
            self.new_start,
            self.new_end,
            self.removed.len(),
            self.added.len()
        )
    }
}

#[pyclass(module = "agent_runtime._native", frozen)]
pub(crate) struct Diff {
    /// The two texts, kept as the caller's str objects (no copy).
    #[pyo3(get)]
    old: Py<PyString>,
    #[pyo3(get)]
    new: Py<PyString>,
    old_lines: textdiff::LineTable,
    new_lines: textdiff::LineTable,
    hunks: Vec<textdiff::Hunk>,
}

impl Diff {
    fn texts<'a>(&'a self, py: Python<'_>) -> PyResult<(&'a str, &'a str)> {
        Ok((self.old.to_str(py)?, self.new.to_str(py)?))
    }
}

#[pymethods]
impl Diff {
    #[getter]
    fn hunks(&self, py: Python<'_>) -> PyResult<Vec<Hunk>> {
        let (old, new) = self.texts(py)?;
        let (ot, nt) = (&self.old_lines, &self.new_lines);
        Ok(self
            .hunks
            .iter()
            .map(|h| Hunk {
                old_start: h.old_start,
                old_end: h.old_end,
                new_start: h.new_start,
                new_end: h.new_end,
                removed: (h.old_start..h.old_end).map(|k| ot.line(old, k).to_string()).collect(),
                added: (h.new_start..h.new_end).map(|k| nt.line(new, k).to_string()).collect(),
            })
            .collect())
    }

    #[pyo3(signature = (context = 3, from_file = "a", to_file = "b"))]
    fn unified(&self, py: Python<'_>, context: usize, from_file: &str, to_file: &str) -> PyResult<String> {
        let (old, new) = self.texts(py)?;
        let (ot, nt) = (&self.old_lines, &self.new_lines);
        Ok(py.detach(|| textdiff::unified_tables(old, ot, new, nt, &self.hunks, context, from_file, to_file)))
    }

    fn __len__(&self) -> usize {
        self.hunks.len()
    }

    fn __repr__(&self) -> String {
        format!("Diff(hunks={})", self.hunks.len())
    }
}

#[pyfunction]
pub(crate) fn diff(py: Python<'_>, a: Bound<'_, PyString>, b: Bound<'_, PyString>) -> PyResult<Diff> {
    let (sa, sb) = (a.to_str()?, b.to_str()?);
    let (old_lines, new_lines, hunks) = py.detach(|| textdiff::diff_with_tables(sa, sb));
    Ok(Diff { old: a.unbind(), new: b.unbind(), old_lines, new_lines, hunks })
}

#[pyfunction]
pub(crate) fn apply_diff(py: Python<'_>, patch: &Bound<'_, PyAny>, a: &str) -> PyResult<String> {
    let result = if let Ok(d) = patch.cast::<Diff>() {
        let d = d.get();
        let (old, new) = d.texts(py)?;
        let (ol, nl) = (textdiff::split_lines(old), textdiff::split_lines(new));
        let hunks = textdiff::patch_hunks(&ol, &nl, &d.hunks);
        py.detach(|| textdiff::apply(&hunks, a))
    } else if let Ok(text) = patch.extract::<PyBackedStr>() {
        py.detach(|| textdiff::parse_unified(&text).and_then(|h| textdiff::apply(&h, a)))
    } else {
        return Err(pyo3::exceptions::PyTypeError::new_err("patch must be a Diff or unified diff text (str)"));
    };
    result.map_err(|e| PatchError::new_err(e.message))
}
