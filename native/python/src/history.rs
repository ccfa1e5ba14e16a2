//! History analysis: `analyze_history`, `HistoryReport`, and `TokenCache`, the content-hash token
//! cache it counts through (binding of `agent_native_core::history`).

use agent_native_core::history::{self, TokenCache as CoreTokenCache};
use agent_native_core::tokens::Encoding;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;

#[pyclass(module = "agent_runtime._native")]
pub(crate) struct TokenCache {
    inner: CoreTokenCache,
    encoding: Encoding,
}

#[pymethods]
impl TokenCache {
    #[new]
    #[pyo3(signature = (encoding = "o200k_base"))]
    fn new(encoding: &str) -> PyResult<Self> {
        Ok(Self { inner: CoreTokenCache::new(), encoding: crate::tokens::encoding(encoding)? })
    }

    fn count(&mut self, py: Python<'_>, text: &str) -> usize {
        let (inner, enc) = (&mut self.inner, self.encoding);
        py.detach(|| inner.count(enc, text))
    }

    fn count_many(&mut self, py: Python<'_>, texts: Vec<PyBackedStr>) -> Vec<usize> {
        let (inner, enc) = (&mut self.inner, self.encoding);
        py.detach(|| texts.iter().map(|t| inner.count(enc, t)).collect())
    }

    #[getter]
    fn encoding(&self) -> &'static str {
        self.encoding.name()
    }

    #[getter]
    fn hits(&self) -> u64 {
        self.inner.hits
    }

    #[getter]
    fn misses(&self) -> u64 {
        self.inner.misses
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

#[pyclass(module = "agent_runtime._native", frozen)]
pub(crate) struct HistoryReport {
    #[pyo3(get)]
    exact_duplicates: Vec<(usize, usize)>,
    #[pyo3(get)]
    near_duplicates: Vec<(usize, usize, f64)>,
    #[pyo3(get)]
    superseded: Vec<(usize, usize)>,
    #[pyo3(get)]
    token_counts: Vec<usize>,
}

#[pyfunction]
#[pyo3(signature = (outputs, paths = None, threshold = 0.8, cache = None))]
pub(crate) fn analyze_history(
    py: Python<'_>,
    outputs: Vec<PyBackedStr>,
    paths: Option<Vec<Option<PyBackedStr>>>,
    threshold: f64,
    cache: Option<&Bound<'_, TokenCache>>,
) -> PyResult<HistoryReport> {
    if !(0.0..=1.0).contains(&threshold) {
        return Err(PyValueError::new_err(format!("threshold must be within [0, 1], got {threshold}")));
    }
    if let Some(p) = &paths {
        if p.len() != outputs.len() {
            return Err(PyValueError::new_err(format!(
                "paths has {} entries but outputs has {}",
                p.len(),
                outputs.len()
            )));
        }
    }
    let mut guard = cache.map(|c| c.try_borrow_mut()).transpose()?;
    let counts = guard.as_deref_mut().map(|g| {
        let enc = g.encoding;
        (&mut g.inner, enc)
    });
    let report = py.detach(|| history::analyze(&outputs, paths.as_deref(), threshold, counts));
    Ok(HistoryReport {
        exact_duplicates: report.exact_duplicates,
        near_duplicates: report.near_duplicates,
        superseded: report.superseded,
        token_counts: report.token_counts,
    })
}
