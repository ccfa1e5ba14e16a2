//! Thin pyo3 binding: convert arguments, release the GIL (`py.detach`), map errors.

use agent_native_core::tokens::{self, Encoding};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

fn encoding(name: &str) -> PyResult<Encoding> {
    Encoding::from_name(name)
        .ok_or_else(|| PyValueError::new_err(format!("unknown encoding {name:?}: expected 'o200k_base' or 'cl100k_base'")))
}

/// Exact token count of `text` under `encoding` (tiktoken-equal).
#[pyfunction]
#[pyo3(signature = (text, encoding = "o200k_base"))]
fn count_tokens(py: Python<'_>, text: &str, encoding: &str) -> PyResult<usize> {
    let enc = self::encoding(encoding)?;
    Ok(py.detach(|| tokens::count(enc, text)))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(count_tokens, m)?)?;
    Ok(())
}
