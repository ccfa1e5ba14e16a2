//! Token counting: `count_tokens`, `count_tokens_many`, `estimate_tokens`, `estimate_factor`,
//! `IncrementalCounter` (binding of `agent_native_core::tokens`), and the encoding-name check the
//! token cache shares.

use agent_native_core::tokens::{self, Encoding, Provider};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;

use crate::DETACH_BYTES;

/// The encoding named `name`; `ValueError` naming the known ones otherwise.
pub(crate) fn encoding(name: &str) -> PyResult<Encoding> {
    Encoding::from_name(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown encoding {name:?}: expected one of {}",
            tokens::ENCODING_NAMES.map(|n| format!("'{n}'")).join(", ")
        ))
    })
}

/// Exact token count of `text` under `encoding` (tiktoken-equal).
#[pyfunction]
#[pyo3(signature = (text, encoding = "o200k_base"))]
pub(crate) fn count_tokens(py: Python<'_>, text: &str, encoding: &str) -> PyResult<usize> {
    let enc = self::encoding(encoding)?;
    if text.len() < DETACH_BYTES {
        return Ok(tokens::count(enc, text));
    }
    Ok(py.detach(|| tokens::count(enc, text)))
}

#[pyfunction]
#[pyo3(signature = (texts, encoding = "o200k_base"))]
pub(crate) fn count_tokens_many(py: Python<'_>, texts: Vec<PyBackedStr>, encoding: &str) -> PyResult<Vec<usize>> {
    let enc = self::encoding(encoding)?;
    Ok(py.detach(|| tokens::count_many(enc, &texts)))
}

#[pyfunction]
#[pyo3(signature = (text, provider, factor = None))]
pub(crate) fn estimate_tokens(py: Python<'_>, text: &str, provider: &str, factor: Option<f64>) -> PyResult<usize> {
    let p = Provider::from_name(provider).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown provider {provider:?}: expected one of {}",
            tokens::PROVIDER_NAMES.map(|n| format!("'{n}'")).join(", ")
        ))
    })?;
    if let Some(f) = factor {
        if !(f.is_finite() && f > 0.0) {
            return Err(PyValueError::new_err(format!("factor must be a positive finite number, got {f}")));
        }
    }
    Ok(py.detach(|| tokens::estimate(p, text, factor)))
}

#[pyfunction]
pub(crate) fn estimate_factor(provider: &str) -> PyResult<f64> {
    Provider::from_name(provider)
        .map(Provider::factor)
        .ok_or_else(|| PyValueError::new_err(format!("unknown provider {provider:?}: expected 'anthropic' or 'gemini'")))
}

#[pyclass(module = "agent_runtime._native")]
pub(crate) struct IncrementalCounter {
    inner: tokens::IncrementalCounter,
}

#[pymethods]
impl IncrementalCounter {
    #[new]
    #[pyo3(signature = (encoding = "o200k_base"))]
    fn new(encoding: &str) -> PyResult<Self> {
        Ok(Self { inner: tokens::IncrementalCounter::new(self::encoding(encoding)?) })
    }

    fn append(&mut self, py: Python<'_>, piece: &str) -> usize {
        if piece.len() < DETACH_BYTES {
            return self.inner.append(piece);
        }
        let inner = &mut self.inner;
        py.detach(|| inner.append(piece))
    }

    #[getter]
    fn total(&self) -> usize {
        self.inner.total()
    }

    #[getter]
    fn encoding(&self) -> &'static str {
        self.inner.encoding().name()
    }

    #[getter]
    fn text(&self) -> &str {
        self.inner.text()
    }

    fn __repr__(&self) -> String {
        format!("IncrementalCounter(encoding={:?}, total={})", self.inner.encoding().name(), self.inner.total())
    }
}
