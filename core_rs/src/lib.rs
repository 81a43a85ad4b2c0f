//! pos-ledger's hot path, exposed to Python as `pos_ledger._core`.
//!
//! Table of contents: every module but `py` is pure Rust and knows nothing of Python.
//! `py` holds the `#[pyfunction]` wrappers and the one `CoreError -> PyErr` conversion.

pub mod chain;
pub mod emv;
pub mod error;
pub mod fold;
pub mod qr;
pub mod sig;
pub mod token;
mod py;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    py::register(m)
}
