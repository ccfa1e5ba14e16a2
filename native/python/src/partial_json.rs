//! Partial JSON: `PartialJsonParser`, `JsonEvent`, `JsonParseError` (binding of
//! `agent_native_core::partial_json`), and the conversion of its values to Python objects.

use agent_native_core::partial_json::{self, JsonError, PathItem, Value};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::DETACH_BYTES;

create_exception!(_native, JsonParseError, PyValueError, "Malformed JSON in PartialJsonParser; `offset` is the byte offset.");

fn to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => pyo3::types::PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(raw) => {
            if raw.bytes().any(|c| matches!(c, b'.' | b'e' | b'E')) {
                raw.parse::<f64>().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            } else if let Ok(i) = raw.parse::<i64>() {
                i.into_pyobject(py)?.into_any()
            } else {
                py.get_type::<pyo3::types::PyInt>().call1((raw.as_str(),))?
            }
        }
        Value::Str(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for it in items {
                list.append(to_py(py, it)?)?;
            }
            list.into_any()
        }
        Value::Object(pairs) => {
            let d = PyDict::new(py);
            for (k, it) in pairs {
                d.set_item(k, to_py(py, it)?)?;
            }
            d.into_any()
        }
    })
}

#[pyclass(module = "agent_runtime._native", frozen)]
pub(crate) struct JsonEvent {
    #[pyo3(get)]
    path: Py<PyTuple>,
    #[pyo3(get)]
    value: Py<PyAny>,
    #[pyo3(get)]
    done: bool,
}

#[pymethods]
impl JsonEvent {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("JsonEvent(path={}, done={})", self.path.bind(py).repr()?, if self.done { "True" } else { "False" }))
    }
}

fn json_err(py: Python<'_>, e: JsonError) -> PyErr {
    let err = JsonParseError::new_err(e.to_string());
    let _ = err.value(py).setattr("offset", e.offset);
    err
}

fn events_to_py<'py>(py: Python<'py>, events: Vec<partial_json::JsonEvent>) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for e in events {
        let path: Vec<Bound<'py, PyAny>> = e
            .path
            .iter()
            .map(|p| match p {
                PathItem::Key(k) => pyo3::types::PyString::new(py, k).into_any(),
                PathItem::Index(i) => pyo3::types::PyInt::new(py, *i).into_any(),
            })
            .collect();
        let ev = JsonEvent { path: PyTuple::new(py, path)?.unbind(), value: to_py(py, &e.value)?.unbind(), done: e.done };
        list.append(Bound::new(py, ev)?)?;
    }
    Ok(list)
}

#[pyclass(module = "agent_runtime._native")]
pub(crate) struct PartialJsonParser {
    inner: partial_json::PartialJsonParser,
}

#[pymethods]
impl PartialJsonParser {
    #[new]
    #[pyo3(signature = (max_event_depth = 1))]
    fn new(max_event_depth: usize) -> Self {
        Self { inner: partial_json::PartialJsonParser::new(max_event_depth) }
    }

    fn feed<'py>(&mut self, py: Python<'py>, fragment: &str) -> PyResult<Bound<'py, PyList>> {
        let mut events = Vec::new();
        let inner = &mut self.inner;
        let r = if fragment.len() < DETACH_BYTES {
            inner.feed_into(fragment, &mut events)
        } else {
            py.detach(|| inner.feed_into(fragment, &mut events))
        };
        r.map_err(|e| json_err(py, e))?;
        events_to_py(py, events)
    }

    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let events = self.inner.finish().map_err(|e| json_err(py, e))?;
        events_to_py(py, events)
    }

    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.inner.snapshot() {
            Some(v) => to_py(py, &v),
            None => Ok(py.None().into_bound(py)),
        }
    }

    #[getter]
    fn done(&self) -> bool {
        self.inner.is_done()
    }

    #[getter]
    fn offset(&self) -> usize {
        self.inner.offset()
    }
}
