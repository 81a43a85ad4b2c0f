//! PyO3 wrappers: the only module that knows about Python.

use pyo3::create_exception;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::error::CoreError;
use crate::{chain, fold, sig, token};
use crate::{emv, qr};
use pyo3::types::{PyList, PyString, PyTuple};

create_exception!(
    _core,
    TokenError,
    PyValueError,
    "A signed token was refused: bad prefix or encoding, truncated, unknown version, bad signature or wrong key, expired."
);

/// The one `CoreError -> PyErr` conversion.
fn to_py_err(error: CoreError) -> PyErr {
    match error {
        CoreError::Invalid { .. } => PyValueError::new_err(error.to_string()),
        CoreError::Token { .. } => TokenError::new_err(error.to_string()),
        CoreError::Emv { position, .. } => emv_error(error.to_string(), position),
    }
}

/// A tuple of the items of a sequence (the sequence itself when it is a tuple).
///
/// Why a tuple: a caller's list could be changed by another thread while the GIL is released; a
/// tuple cannot, and it keeps every item alive, so `slices` can borrow the buffers of its
/// `bytes` (immutable) for as long as the tuple lives. Passing tuples skips the copy.
fn bytes_items<'py>(items: &Bound<'py, PyAny>, name: &str) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
    match items.cast::<pyo3::types::PyTuple>() {
        Ok(tuple) => Ok(tuple.clone()),
        Err(_) => items
            .cast::<pyo3::types::PySequence>()
            .map_err(|_| PyTypeError::new_err(format!("{name} must be a sequence of bytes")))?
            .to_tuple(),
    }
}

/// The buffers of the tuple's items, each of which must be `bytes`; valid while the tuple lives.
/// One C call per item, which touches the object once (the items are often cold in cache).
fn slices<'a>(tuple: &'a Bound<'_, pyo3::types::PyTuple>, name: &str) -> PyResult<Vec<&'a [u8]>> {
    let mut out = Vec::with_capacity(tuple.len());
    for i in 0..tuple.len() {
        let mut data: *mut std::ffi::c_char = std::ptr::null_mut();
        let mut length: pyo3::ffi::Py_ssize_t = 0;
        // SAFETY: `i` is in bounds and PyTuple_GetItem returns a reference owned by `tuple`;
        // PyBytes_AsStringAndSize refuses anything but bytes (returning -1 with an exception set).
        // A bytes object never changes or moves its buffer, so the slice lives as long as `tuple`.
        let status = unsafe {
            let item = pyo3::ffi::PyTuple_GetItem(tuple.as_ptr(), i as isize);
            pyo3::ffi::PyBytes_AsStringAndSize(item, &mut data, &mut length)
        };
        if status != 0 {
            drop(PyErr::take(tuple.py()));
            return Err(PyTypeError::new_err(format!("{name}[{i}] must be bytes")));
        }
        // SAFETY: see above; `data` points at `length` bytes owned by the item.
        out.push(unsafe { std::slice::from_raw_parts(data as *const u8, length as usize) });
    }
    Ok(out)
}

#[pyfunction]
#[pyo3(signature = (public_keys, messages, signatures, *, threads = None))]
fn ed25519_verify_batch(
    py: Python<'_>,
    public_keys: &Bound<'_, PyAny>,
    messages: &Bound<'_, PyAny>,
    signatures: &Bound<'_, PyAny>,
    threads: Option<usize>,
) -> PyResult<Vec<bool>> {
    let (keys, messages, signatures) = (
        bytes_items(public_keys, "public_keys")?,
        bytes_items(messages, "messages")?,
        bytes_items(signatures, "signatures")?,
    );
    let (keys, messages, signatures) =
        (slices(&keys, "public_keys")?, slices(&messages, "messages")?, slices(&signatures, "signatures")?);
    let threads = threads.unwrap_or_else(sig::default_threads);
    py.detach(|| sig::verify_batch(&keys, &messages, &signatures, threads))
        .map_err(to_py_err)
}

#[pyfunction]
fn ed25519_public_key_is_weak(public_key: &[u8]) -> bool {
    sig::public_key_is_weak(public_key)
}

#[pyfunction]
fn ed25519_sign<'py>(
    py: Python<'py>,
    seed32: &[u8],
    message: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(
        py,
        &sig::sign(seed32, message).map_err(to_py_err)?,
    ))
}

#[pyfunction]
fn ed25519_public_key<'py>(py: Python<'py>, seed32: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(
        py,
        &sig::public_key(seed32).map_err(to_py_err)?,
    ))
}

#[pyfunction]
fn chain_extend<'py>(
    py: Python<'py>,
    head: &[u8],
    bodies: &Bound<'py, PyAny>,
    sigs: &Bound<'py, PyAny>,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let (bodies, sigs) = (bytes_items(bodies, "bodies")?, bytes_items(sigs, "sigs")?);
    let (bodies, sigs) = (slices(&bodies, "bodies")?, slices(&sigs, "sigs")?);
    let hashes = py
        .detach(|| chain::extend(head, &bodies, &sigs))
        .map_err(to_py_err)?;
    Ok(hashes.iter().map(|h| PyBytes::new(py, h)).collect())
}

#[pyfunction]
fn chain_verify<'py>(
    py: Python<'py>,
    head: &[u8],
    bodies: &Bound<'py, PyAny>,
    sigs: &Bound<'py, PyAny>,
    hashes: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyBytes>, Option<usize>)> {
    let (bodies, sigs, hashes) = (
        bytes_items(bodies, "bodies")?,
        bytes_items(sigs, "sigs")?,
        bytes_items(hashes, "hashes")?,
    );
    let (bodies, sigs, hashes) = (slices(&bodies, "bodies")?, slices(&sigs, "sigs")?, slices(&hashes, "hashes")?);
    let (last, mismatch) = py
        .detach(|| chain::verify(head, &bodies, &sigs, &hashes))
        .map_err(to_py_err)?;
    Ok((PyBytes::new(py, &last), mismatch))
}

/// Streaming auditor fold; see `fold.rs` for the postings grammar and the checks.
#[pyclass(name = "LedgerFolder", module = "pos_ledger._core")]
struct LedgerFolder {
    inner: fold::Folder,
}

#[pymethods]
impl LedgerFolder {
    #[new]
    #[pyo3(signature = (head = &[0u8; chain::HASH_BYTES][..], position = 0, *, threads = None))]
    fn new(head: &[u8], position: u64, threads: Option<usize>) -> PyResult<Self> {
        let mut inner = fold::Folder::new(head, position).map_err(to_py_err)?;
        if let Some(threads) = threads {
            inner.set_threads(threads);
        }
        Ok(LedgerFolder { inner })
    }

    fn feed(
        &mut self,
        py: Python<'_>,
        bodies: &Bound<'_, PyAny>,
        sigs: &Bound<'_, PyAny>,
        hashes: &Bound<'_, PyAny>,
        postings: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let (bodies, sigs) = (bytes_items(bodies, "bodies")?, bytes_items(sigs, "sigs")?);
        let (hashes, postings) = (
            bytes_items(hashes, "hashes")?,
            bytes_items(postings, "postings")?,
        );
        let (bodies, sigs, hashes, postings) = (
            slices(&bodies, "bodies")?,
            slices(&sigs, "sigs")?,
            slices(&hashes, "hashes")?,
            slices(&postings, "postings")?,
        );
        let inner = &mut self.inner;
        py.detach(|| inner.feed(&bodies, &sigs, &hashes, &postings))
            .map_err(to_py_err)
    }

    fn feed_packed(&mut self, py: Python<'_>, buffer: &[u8]) -> PyResult<()> {
        let inner = &mut self.inner;
        py.detach(|| inner.feed_packed(buffer)).map_err(to_py_err)
    }

    #[getter]
    fn head<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.head)
    }

    #[getter]
    fn position(&self) -> u64 {
        self.inner.position
    }

    #[getter]
    fn first_error(&self) -> Option<(u64, &'static str)> {
        self.inner
            .first_error
            .map(|(position, error)| (position, error.reason()))
    }

    fn balances<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (key, value) in self.inner.balances() {
            dict.set_item(key, value)?;
        }
        Ok(dict)
    }
}

#[pyfunction]
#[pyo3(signature = (seed32, kind, expires_at, token_id, payload = &b""[..]))]
fn token_sign(
    seed32: &[u8],
    kind: i64,
    expires_at: i64,
    token_id: &[u8],
    payload: &[u8],
) -> PyResult<String> {
    let kind = u8::try_from(kind)
        .map_err(|_| PyValueError::new_err(format!("token kind is 1..=255, got {kind}")))?;
    let expires_at = u32::try_from(expires_at).map_err(|_| {
        PyValueError::new_err(format!(
            "expires_at is 0..=4294967295 unix seconds, got {expires_at}"
        ))
    })?;
    let id: [u8; token::ID_BYTES] = token_id.try_into().map_err(|_| {
        PyValueError::new_err(format!(
            "token_id has {} bytes, got {}",
            token::ID_BYTES,
            token_id.len()
        ))
    })?;
    let token = token::Token {
        kind,
        expires_at,
        id,
        payload: payload.to_vec(),
    };
    token::sign(seed32, &token).map_err(to_py_err)
}

#[pyfunction]
fn token_verify<'py>(
    py: Python<'py>,
    public_key: &[u8],
    token: &str,
    now: i64,
) -> PyResult<(u8, u32, Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let token = token::verify(public_key, token, now).map_err(to_py_err)?;
    Ok((
        token.kind,
        token.expires_at,
        PyBytes::new(py, &token.id),
        PyBytes::new(py, &token.payload),
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    register_sig_chain_fold_token(m)?;
    register_emv_qr(m)?;
    Ok(())
}

/// Signatures, chain, fold and tokens.
fn register_sig_chain_fold_token(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("TokenError", m.py().get_type::<TokenError>())?;
    m.add_function(wrap_pyfunction!(ed25519_verify_batch, m)?)?;
    m.add_function(wrap_pyfunction!(ed25519_public_key_is_weak, m)?)?;
    m.add_function(wrap_pyfunction!(ed25519_sign, m)?)?;
    m.add_function(wrap_pyfunction!(ed25519_public_key, m)?)?;
    m.add_function(wrap_pyfunction!(chain_extend, m)?)?;
    m.add_function(wrap_pyfunction!(chain_verify, m)?)?;
    m.add_class::<LedgerFolder>()?;
    m.add_function(wrap_pyfunction!(token_sign, m)?)?;
    m.add_function(wrap_pyfunction!(token_verify, m)?)?;
    Ok(())
}

// --- EMV payloads and QR rendering (emv.rs, qr.rs) -------------------------------------------

create_exception!(
    _core,
    EmvError,
    PyValueError,
    "An EMV payload or field list breaks the format or a scheme's rules; `position` is the 0-based character position where the problem starts (None for a bad argument)."
);

fn emv_error(message: String, position: Option<usize>) -> PyErr {
    Python::attach(|py| {
        let error = EmvError::new_err(message);
        // The message names the position too, so a failed setattr loses nothing essential.
        let _ = error.value(py).setattr("position", position);
        error
    })
}

/// "00".."99" made once: every field id is one of them, so decoding allocates no id strings.
fn emv_id<'py>(py: Python<'py>, id: &str) -> Bound<'py, PyString> {
    static IDS: pyo3::sync::PyOnceLock<Vec<Py<PyString>>> = pyo3::sync::PyOnceLock::new();
    let ids = IDS.get_or_init(py, || {
        (0..100)
            .map(|n| PyString::intern(py, &format!("{n:02}")).unbind())
            .collect()
    });
    match id.as_bytes() {
        [a @ b'0'..=b'9', b @ b'0'..=b'9'] => {
            ids[usize::from(a - b'0') * 10 + usize::from(b - b'0')].bind(py).clone()
        }
        _ => PyString::new(py, id),
    }
}

fn emv_fields_to_py<'py>(
    py: Python<'py>,
    fields: &[emv::Field<&str>],
) -> PyResult<Bound<'py, PyList>> {
    let mut items = Vec::with_capacity(fields.len());
    for (id, value) in fields {
        let value = match value {
            emv::Value::Text(text) => PyString::new(py, text).into_any(),
            emv::Value::Template(subfields) => {
                let subfields = subfields.iter().map(|(sub_id, text)| {
                    PyTuple::new(py, [emv_id(py, sub_id), PyString::new(py, text)])
                });
                PyList::new(py, subfields.collect::<PyResult<Vec<_>>>()?)?.into_any()
            }
        };
        items.push(PyTuple::new(py, [emv_id(py, id).into_any(), value])?);
    }
    PyList::new(py, items)
}

/// The Python strings of a field list, held so their text can be borrowed without copying.
type HeldFields<'py> = Vec<(Bound<'py, PyString>, emv::Value<Bound<'py, PyString>>)>;

/// `[(id, str | [(id, str), ...]), ...]`, tuples and strings only, as `emv_decode` returns.
fn emv_fields_from_py<'py>(fields: &Bound<'py, PyAny>) -> PyResult<HeldFields<'py>> {
    let mut out = Vec::with_capacity(fields.len().unwrap_or(0));
    for item in fields.try_iter()? {
        let (id, value): (Bound<'py, PyString>, Bound<'py, PyAny>) = item?.extract()?;
        let value = match value.cast_into::<PyString>() {
            Ok(text) => emv::Value::Text(text),
            Err(error) => emv::Value::Template(error.into_inner().extract()?),
        };
        out.push((id, value));
    }
    Ok(out)
}

fn emv_borrow<'a>(held: &'a HeldFields<'_>) -> PyResult<Vec<emv::Field<&'a str>>> {
    let mut out = Vec::with_capacity(held.len());
    for (id, value) in held {
        let value = match value {
            emv::Value::Text(text) => emv::Value::Text(text.to_str()?),
            emv::Value::Template(subfields) => emv::Value::Template(
                subfields
                    .iter()
                    .map(|(sub_id, text)| Ok((sub_id.to_str()?, text.to_str()?)))
                    .collect::<PyResult<_>>()?,
            ),
        };
        out.push((id.to_str()?, value));
    }
    Ok(out)
}

#[pyfunction]
fn emv_decode<'py>(py: Python<'py>, payload: &str) -> PyResult<Bound<'py, PyList>> {
    let fields = emv::decode(payload).map_err(to_py_err)?;
    emv_fields_to_py(py, &fields)
}

#[pyfunction]
fn emv_encode(fields: &Bound<'_, PyAny>) -> PyResult<String> {
    let held = emv_fields_from_py(fields)?;
    emv::encode(&emv_borrow(&held)?).map_err(to_py_err)
}

#[pyfunction]
#[pyo3(signature = (fields, scheme = None))]
fn emv_validate(fields: &Bound<'_, PyAny>, scheme: Option<&str>) -> PyResult<()> {
    let held = emv_fields_from_py(fields)?;
    emv::validate(&emv_borrow(&held)?, scheme).map_err(to_py_err)
}

#[pyfunction]
#[pyo3(signature = (
    *, merchant_account, mcc, currency_numeric, amount_minor, currency_exponent, country,
    merchant_name, merchant_city, reference_label, merchant_account_tag = "26"
))]
#[allow(clippy::too_many_arguments)]
fn emv_payment_payload(
    merchant_account: Vec<(String, String)>,
    mcc: &str,
    currency_numeric: &str,
    amount_minor: i64,
    currency_exponent: i64,
    country: &str,
    merchant_name: &str,
    merchant_city: &str,
    reference_label: &str,
    merchant_account_tag: &str,
) -> PyResult<String> {
    let account: Vec<(&str, &str)> = merchant_account
        .iter()
        .map(|(i, v)| (i.as_str(), v.as_str()))
        .collect();
    let request = emv::PaymentRequest {
        merchant_account_id: merchant_account_tag,
        merchant_account: &account,
        mcc,
        currency_numeric,
        currency_exponent,
        amount_minor,
        country,
        merchant_name,
        merchant_city,
        reference_label,
    };
    emv::payment_payload(&request).map_err(to_py_err)
}

#[pyfunction]
#[pyo3(signature = (text, ecc = "M"))]
fn qr_matrix<'py>(
    py: Python<'py>,
    text: &str,
    ecc: &str,
) -> PyResult<(usize, Bound<'py, PyBytes>)> {
    let (size, modules) = py.detach(|| qr::matrix(text, ecc)).map_err(to_py_err)?;
    Ok((size, PyBytes::new(py, &modules)))
}

#[pyfunction]
#[pyo3(signature = (text, ecc = "M", border = 4))]
fn qr_svg(py: Python<'_>, text: &str, ecc: &str, border: usize) -> PyResult<String> {
    py.detach(|| qr::svg(text, ecc, border)).map_err(to_py_err)
}

#[pyfunction]
#[pyo3(signature = (text, ecc = "M", scale = 8, border = 4))]
fn qr_png<'py>(
    py: Python<'py>,
    text: &str,
    ecc: &str,
    scale: usize,
    border: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let png = py
        .detach(|| qr::png(text, ecc, scale, border))
        .map_err(to_py_err)?;
    Ok(PyBytes::new(py, &png))
}

#[pyfunction]
#[pyo3(signature = (text, ecc = "M", scale = 6, border = 2))]
fn qr_escpos_raster<'py>(
    py: Python<'py>,
    text: &str,
    ecc: &str,
    scale: usize,
    border: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let raster = py
        .detach(|| qr::escpos_raster(text, ecc, scale, border))
        .map_err(to_py_err)?;
    Ok(PyBytes::new(py, &raster))
}

/// EMV payloads and QR rendering.
fn register_emv_qr(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("EmvError", m.py().get_type::<EmvError>())?;
    m.add_function(wrap_pyfunction!(emv_decode, m)?)?;
    m.add_function(wrap_pyfunction!(emv_encode, m)?)?;
    m.add_function(wrap_pyfunction!(emv_validate, m)?)?;
    m.add_function(wrap_pyfunction!(emv_payment_payload, m)?)?;
    m.add_function(wrap_pyfunction!(qr_matrix, m)?)?;
    m.add_function(wrap_pyfunction!(qr_svg, m)?)?;
    m.add_function(wrap_pyfunction!(qr_png, m)?)?;
    m.add_function(wrap_pyfunction!(qr_escpos_raster, m)?)?;
    Ok(())
}
