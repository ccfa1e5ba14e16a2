//! Thin pyo3 binding of `agent-native-core`: convert arguments, release the GIL (`py.detach`)
//! around the work, map errors to Python exceptions. No logic lives here.

use agent_native_core::history::{self, TokenCache as CoreTokenCache};
use agent_native_core::merge;
use agent_native_core::partial_json::{self, JsonError, PathItem, Value};
use agent_native_core::sse::{self, SseError};
use agent_native_core::textdiff;
use agent_native_core::tokens::{self, Encoding, Provider};
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

create_exception!(_native, SseBufferOverflow, PyValueError, "More incomplete SSE input was buffered than max_buffer allows.");
create_exception!(_native, ParserClosedError, PyRuntimeError, "Input fed to a parser after finish() or after an error.");
create_exception!(_native, JsonParseError, PyValueError, "Malformed JSON in PartialJsonParser; `offset` is the byte offset.");
create_exception!(_native, PatchError, PyValueError, "A diff or unified patch does not apply to the given text.");

/// Inputs at least this large are processed with the GIL released.
const DETACH_BYTES: usize = 4096;

fn encoding(name: &str) -> PyResult<Encoding> {
    Encoding::from_name(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown encoding {name:?}: expected one of {}",
            tokens::ENCODING_NAMES.map(|n| format!("'{n}'")).join(", ")
        ))
    })
}

// ---------------------------------------------------------------- tokens

/// Exact token count of `text` under `encoding` (tiktoken-equal).
#[pyfunction]
#[pyo3(signature = (text, encoding = "o200k_base"))]
fn count_tokens(py: Python<'_>, text: &str, encoding: &str) -> PyResult<usize> {
    let enc = self::encoding(encoding)?;
    if text.len() < DETACH_BYTES {
        return Ok(tokens::count(enc, text));
    }
    Ok(py.detach(|| tokens::count(enc, text)))
}

#[pyfunction]
#[pyo3(signature = (texts, encoding = "o200k_base"))]
fn count_tokens_many(py: Python<'_>, texts: Vec<PyBackedStr>, encoding: &str) -> PyResult<Vec<usize>> {
    let enc = self::encoding(encoding)?;
    Ok(py.detach(|| tokens::count_many(enc, &texts)))
}

#[pyfunction]
#[pyo3(signature = (text, provider, factor = None))]
fn estimate_tokens(py: Python<'_>, text: &str, provider: &str, factor: Option<f64>) -> PyResult<usize> {
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
fn estimate_factor(provider: &str) -> PyResult<f64> {
    Provider::from_name(provider)
        .map(Provider::factor)
        .ok_or_else(|| PyValueError::new_err(format!("unknown provider {provider:?}: expected 'anthropic' or 'gemini'")))
}

#[pyclass(module = "agent_runtime._native")]
struct IncrementalCounter {
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

#[pyclass(module = "agent_runtime._native")]
struct TokenCache {
    inner: CoreTokenCache,
    encoding: Encoding,
}

#[pymethods]
impl TokenCache {
    #[new]
    #[pyo3(signature = (encoding = "o200k_base"))]
    fn new(encoding: &str) -> PyResult<Self> {
        Ok(Self { inner: CoreTokenCache::new(), encoding: self::encoding(encoding)? })
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

// ---------------------------------------------------------------- diff / merge

#[pyclass(module = "agent_runtime._native", frozen, eq)]
#[derive(PartialEq)]
struct Hunk {
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
struct Diff {
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
fn diff(py: Python<'_>, a: Bound<'_, PyString>, b: Bound<'_, PyString>) -> PyResult<Diff> {
    let (sa, sb) = (a.to_str()?, b.to_str()?);
    let (old_lines, new_lines, hunks) = py.detach(|| textdiff::diff_with_tables(sa, sb));
    Ok(Diff { old: a.unbind(), new: b.unbind(), old_lines, new_lines, hunks })
}

#[pyfunction]
fn apply_diff(py: Python<'_>, patch: &Bound<'_, PyAny>, a: &str) -> PyResult<String> {
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

#[pyclass(module = "agent_runtime._native", frozen, eq)]
#[derive(PartialEq)]
struct ConflictRegion {
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
struct MergeResult {
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
fn merge3(py: Python<'_>, base: &str, ours: &str, theirs: &str, labels: (String, String)) -> PyResult<MergeResult> {
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

// ---------------------------------------------------------------- SSE

#[pyclass(module = "agent_runtime._native", frozen, eq)]
#[derive(PartialEq)]
struct SseEvent {
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
struct SseParser {
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

// ---------------------------------------------------------------- partial JSON

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
struct JsonEvent {
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
struct PartialJsonParser {
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

// ---------------------------------------------------------------- history

#[pyclass(module = "agent_runtime._native", frozen)]
struct HistoryReport {
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
fn analyze_history(
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

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(count_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(count_tokens_many, m)?)?;
    m.add_function(wrap_pyfunction!(estimate_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(estimate_factor, m)?)?;
    m.add_class::<IncrementalCounter>()?;
    m.add_class::<TokenCache>()?;
    m.add_function(wrap_pyfunction!(diff, m)?)?;
    m.add_function(wrap_pyfunction!(apply_diff, m)?)?;
    m.add_class::<Diff>()?;
    m.add_class::<Hunk>()?;
    m.add_function(wrap_pyfunction!(merge3, m)?)?;
    m.add_class::<MergeResult>()?;
    m.add_class::<ConflictRegion>()?;
    m.add_class::<SseParser>()?;
    m.add_class::<SseEvent>()?;
    m.add_class::<PartialJsonParser>()?;
    m.add_class::<JsonEvent>()?;
    m.add_function(wrap_pyfunction!(analyze_history, m)?)?;
    m.add_class::<HistoryReport>()?;
    let jpe = py.get_type::<JsonParseError>();
    jpe.setattr("offset", -1)?;
    m.add("JsonParseError", jpe)?;
    m.add("SseBufferOverflow", py.get_type::<SseBufferOverflow>())?;
    m.add("ParserClosedError", py.get_type::<ParserClosedError>())?;
    m.add("PatchError", py.get_type::<PatchError>())?;
    m.add("MAX_JSON_DEPTH", partial_json::MAX_DEPTH)?;
    Ok(())
}
