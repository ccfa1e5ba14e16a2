//! Server-sent events: `SseParser`, `SseEvent`, `SseBufferOverflow`, `ParserClosedError` (binding
//! of `agent_native_core::sse`).

use agent_native_core::sse::{self, SseError};
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyList;

use crate::DETACH_BYTES;

create_exception!(_native, SseBufferOverflow, PyValueError, "More incomplete SSE input was buffered than max_buffer allows.");
create_exception!(_native, ParserClosedError, PyRuntimeError, "Input fed to a parser after finish() or after an error.");

#[pyclass(module = "agent_runtime._native", frozen, eq)]
#[derive(PartialEq)]
pub(crate) struct SseEvent {
    #[pyo3(get)]
    event: String,
    #[pyo3(get)]
    data: String,
    #[pyo3(get)]
    id: String,
    #[pyo3(get)]
    retry: Option<u64>,
}

#[pymethods]
impl SseEvent {
    #[new]
    #[pyo3(signature = (data, event = "message".to_string(), id = String::new(), retry = None))]
    fn new(data: String, event: String, id: String, retry: Option<u64>) -> Self {
        Self { event, data, id, retry }
    }

    fn __repr__(&self) -> String {
        let retry = self.retry.map_or_else(|| "None".to_string(), |r| r.to_string());
        format!("SseEvent(event={:?}, data={:?}, id={:?}, retry={retry})", self.event, self.data, self.id)
    }
}

fn sse_err(e: SseError) -> PyErr {
    match e {
        SseError::BufferOverflow { .. } => SseBufferOverflow::new_err(e.to_string()),
        SseError::Closed => ParserClosedError::new_err(e.to_string()),
    }
}

#[pyclass(module = "agent_runtime._native")]
pub(crate) struct SseParser {
    inner: sse::SseParser,
}

#[pymethods]
impl SseParser {
    #[new]
    #[pyo3(signature = (max_buffer = sse::DEFAULT_MAX_BUFFER))]
    fn new(max_buffer: usize) -> Self {
        Self { inner: sse::SseParser::new(max_buffer) }
    }

    fn feed<'py>(&mut self, py: Python<'py>, data: PyBackedBytes) -> PyResult<Bound<'py, PyList>> {
        let mut out = Vec::new();
        let mut chunk: &[u8] = &data;
        let inner = &mut self.inner;
        let r = if chunk.len() < DETACH_BYTES {
            inner.feed_into(&mut chunk, &mut out)
        } else {
            py.detach(|| inner.feed_into(&mut chunk, &mut out))
        };
        r.map_err(sse_err)?;
        let list = PyList::empty(py);
        for e in out {
            list.append(Bound::new(py, SseEvent { event: e.event, data: e.data, id: e.id, retry: e.retry })?)?;
        }
        Ok(list)
    }

    /// End of stream; returns True if an incomplete event was discarded (per the spec).
    fn finish(&mut self) -> bool {
        self.inner.finish()
    }

    #[getter]
    fn retry(&self) -> Option<u64> {
        self.inner.retry()
    }

    #[getter]
    fn last_event_id(&self) -> &str {
        self.inner.last_event_id()
    }

    #[getter]
    fn buffered(&self) -> usize {
        self.inner.buffered()
    }

    #[getter]
    fn max_buffer(&self) -> usize {
        self.inner.max_buffer()
    }
}
