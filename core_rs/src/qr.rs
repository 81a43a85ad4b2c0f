//! QR codes for screens and receipt printers: the module matrix, SVG, PNG and ESC/POS raster.
//!
//! The matrix comes from Nayuki's `qrcodegen` (`QrCode::encode_text`: numeric, alphanumeric or
//! UTF-8 byte mode chosen automatically, error correction boosted when it fits in the same
//! version, mask chosen automatically), the same algorithm as the PyPI `qrcodegen` package the
//! pure-Python twin (`pos_ledger/reference/qr.py`) uses, so both give identical matrices.

use miniz_oxide::deflate::compress_to_vec_zlib;
use qrcodegen::{Mask, QrCode, QrCodeEcc, QrSegment, Version};

use crate::error::CoreError;

mod mask;

/// The most any QR code holds: 7089 digits (version 40, ecc L); longer text is refused at once.
pub const TEXT_BYTES_MAX: usize = 7089;
/// Quiet zone limit, in modules (the standard asks for 4).
pub const BORDER_MAX: usize = 16;
/// Pixels per module in a PNG; a version 40 code at the maximum is (177 + 32) * 32 = 6688 px wide.
pub const PNG_SCALE_MAX: usize = 32;
/// zlib level for PNGs (zlib's default): with repeated rows filtered to zeros, as small as 9 and
/// faster; level 1 is ~40% faster again but ~70% larger.
const PNG_DEFLATE_LEVEL: u8 = 6;
/// Dots per module on a receipt printer.
pub const ESCPOS_SCALE_MAX: usize = 16;
/// An 80 mm printhead is 576 dots wide (72 bytes).
pub const ESCPOS_WIDTH_DOTS_MAX: usize = 576;

fn too_long(text: &str) -> CoreError {
    CoreError::invalid(format!(
        "text too long for a QR code at this ecc ({} UTF-8 bytes)",
        text.len()
    ))
}

/// "L", "M", "Q" or "H".
pub fn parse_ecc(ecc: &str) -> Result<QrCodeEcc, CoreError> {
    match ecc {
        "L" => Ok(QrCodeEcc::Low),
        "M" => Ok(QrCodeEcc::Medium),
        "Q" => Ok(QrCodeEcc::Quartile),
        "H" => Ok(QrCodeEcc::High),
        other => Err(CoreError::invalid(format!(
            "ecc is one of 'L', 'M', 'Q', 'H', got '{other}'"
        ))),
    }
}

/// The module matrix: (size, size * size bytes row by row, 1 = dark).
///
/// Identical to `QrCode::encode_text(text, ecc)`, mask choice included, several times faster:
/// the code is built once with mask 0 and `mask` picks the crate's own choice on bitsets.
pub fn matrix(text: &str, ecc: &str) -> Result<(usize, Vec<u8>), CoreError> {
    let ecl = parse_ecc(ecc)?;
    if text.len() > TEXT_BYTES_MAX {
        // Refused before segmenting: qrcodegen spends a byte per bit of input.
        return Err(too_long(text));
    }
    let segments = QrSegment::make_segments(text);
    let code = QrCode::encode_segments_advanced(
        &segments,
        ecl,
        Version::MIN,
        Version::MAX,
        Some(Mask::new(0)),
        true,
    )
    .map_err(|_| too_long(text))?;
    Ok(mask::best_masked(&code))
}

fn check_range(name: &str, value: usize, low: usize, high: usize) -> Result<(), CoreError> {
    match (low..=high).contains(&value) {
        true => Ok(()),
        false => Err(CoreError::invalid(format!(
            "{name} is {low}..={high}, got {value}"
        ))),
    }
}

/// A square bitmap with the quiet zone: `side` pixels wide, `dark(x, y)` per pixel.
struct Bitmap {
    size: usize,
    modules: Vec<u8>,
    border: usize,
    scale: usize,
}

impl Bitmap {
    fn new(text: &str, ecc: &str, scale: usize, border: usize) -> Result<Bitmap, CoreError> {
        let (size, modules) = matrix(text, ecc)?;
        Ok(Bitmap {
            size,
            modules,
            border,
            scale,
        })
    }

    fn side(&self) -> usize {
        (self.size + 2 * self.border) * self.scale
    }

    /// Pixel rows packed 8 pixels a byte, most significant bit leftmost, bit set = dark: one
    /// per module row (quiet zone included); pixel row y is `rows[y / scale]`.
    fn packed_rows(&self) -> Vec<Vec<u8>> {
        let width_bytes = self.side().div_ceil(8);
        let blank = vec![0u8; width_bytes];
        let mut rows = vec![blank.clone(); self.border];
        for modules in self.modules.chunks_exact(self.size) {
            let mut row = blank.clone();
            for (mx, _) in modules.iter().enumerate().filter(|(_, &m)| m == 1) {
                let left = (mx + self.border) * self.scale;
                for x in left..left + self.scale {
                    row[x / 8] |= 0x80 >> (x % 8);
                }
            }
            rows.push(row);
        }
        rows.resize(self.size + 2 * self.border, blank);
        rows
    }
}

/// A scalable SVG: one white rectangle and one path of horizontal runs, 1 unit per module.
pub fn svg(text: &str, ecc: &str, border: usize) -> Result<String, CoreError> {
    check_range("border", border, 0, BORDER_MAX)?;
    let (size, modules) = matrix(text, ecc)?;
    let side = size + 2 * border;
    let mut path = String::with_capacity(size * size);
    for y in 0..size {
        let row = &modules[y * size..(y + 1) * size];
        let mut x = 0;
        while x < size {
            if row[x] == 0 {
                x += 1;
                continue;
            }
            let run = row[x..].iter().take_while(|&&m| m == 1).count();
            // "M{x},{y}h{run}v1h-{run}z", without the formatting machinery (half the time).
            path.push('M');
            push_decimal(&mut path, x + border);
            path.push(',');
            push_decimal(&mut path, y + border);
            path.push('h');
            push_decimal(&mut path, run);
            path.push_str("v1h-");
            push_decimal(&mut path, run);
            path.push('z');
            x += run;
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {side} {side}\" shape-rendering=\"crispEdges\">\
<rect width=\"{side}\" height=\"{side}\" fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>\n"
    ))
}

/// Coordinates and runs are below 1000 (at most 177 modules + 2 * 16 of border).
fn push_decimal(out: &mut String, n: usize) {
    debug_assert!(n < 1000);
    if n >= 100 {
        out.push(char::from(b'0' + (n / 100 % 10) as u8));
    }
    if n >= 10 {
        out.push(char::from(b'0' + (n / 10 % 10) as u8));
    }
    out.push(char::from(b'0' + (n % 10) as u8));
}

fn crc32(chunks: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for &byte in chunks.iter().flat_map(|c| c.iter()) {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
}

/// A 1-bit grayscale PNG (bit set = white, as PNG grayscale reads), `scale` pixels per module.
/// A row equal to the one above uses filter "Up" (all zeros), any other row filter "None".
pub fn png(text: &str, ecc: &str, scale: usize, border: usize) -> Result<Vec<u8>, CoreError> {
    check_range("scale", scale, 1, PNG_SCALE_MAX)?;
    check_range("border", border, 0, BORDER_MAX)?;
    let bitmap = Bitmap::new(text, ecc, scale, border)?;
    let side = bitmap.side();
    let width_bytes = side.div_ceil(8);
    let mut raw = Vec::with_capacity((width_bytes + 1) * side);
    let rows = bitmap.packed_rows();
    for y in 0..side {
        let row = &rows[y / scale];
        if y > 0 && rows[(y - 1) / scale] == *row {
            // Filter "Up": a repeated row (each module is `scale` rows tall) becomes zeros,
            // which deflate squeezes to almost nothing, quickly.
            raw.push(2);
            raw.resize(raw.len() + width_bytes, 0);
        } else {
            raw.push(0); // filter "None"; PNG grayscale reads a set bit as white
            raw.extend(row.iter().map(|b| !b));
        }
    }
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&(side as u32).to_be_bytes());
    header.extend_from_slice(&(side as u32).to_be_bytes());
    header.extend_from_slice(&[1, 0, 0, 0, 0]); // bit depth 1, grayscale, deflate, no filter, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut out, b"IHDR", &header);
    png_chunk(
        &mut out,
        b"IDAT",
        &compress_to_vec_zlib(&raw, PNG_DEFLATE_LEVEL),
    );
    png_chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

/// ESC/POS `GS v 0` raster bit image (mode 0): `1D 76 30 00 xL xH yL yH` then rows of
/// ceil(width / 8) bytes, most significant bit leftmost, bit set = black.
pub fn escpos_raster(
    text: &str,
    ecc: &str,
    scale: usize,
    border: usize,
) -> Result<Vec<u8>, CoreError> {
    check_range("scale", scale, 1, ESCPOS_SCALE_MAX)?;
    check_range("border", border, 0, BORDER_MAX)?;
    let bitmap = Bitmap::new(text, ecc, scale, border)?;
    let side = bitmap.side();
    if side > ESCPOS_WIDTH_DOTS_MAX {
        return Err(CoreError::invalid(format!(
            "QR code is {side} dots wide, wider than the {ESCPOS_WIDTH_DOTS_MAX}-dot printhead; use a smaller scale"
        )));
    }
    let width_bytes = side.div_ceil(8);
    let mut out = Vec::with_capacity(8 + width_bytes * side);
    out.extend_from_slice(&[0x1D, 0x76, 0x30, 0x00]);
    out.extend_from_slice(&(width_bytes as u16).to_le_bytes());
    out.extend_from_slice(&(side as u16).to_le_bytes());
    for row in bitmap.packed_rows() {
        for _ in 0..scale {
            out.extend_from_slice(&row);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_has_finder_patterns() {
        let (size, modules) = matrix("HELLO WORLD", "Q").unwrap();
        assert_eq!(size, 21);
        assert_eq!(modules.len(), 21 * 21);
        // top-left finder: a 7x7 dark ring with a light ring inside
        assert!((0..7).all(|i| modules[i] == 1 && modules[6 * size + i] == 1));
        assert_eq!(modules[size + 1], 0);
        assert_eq!(modules[3 * size + 3], 1);
    }

    /// Texts of every mode whose codes span versions 1..=40 at every ecc.
    fn sample_texts() -> Vec<String> {
        let mut state = 0x2545_F491_u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        let mut texts = Vec::new();
        for length in [
            0, 1, 7, 20, 41, 77, 120, 200, 300, 450, 640, 900, 1200, 1600, 2100, 2900,
        ] {
            texts.push(
                (0..length)
                    .map(|_| char::from(b'0' + (next() % 10) as u8))
                    .collect(),
            );
            texts.push(
                (0..length)
                    .map(|_| char::from(b"ABC $%*+-./:XYZ"[(next() % 15) as usize]))
                    .collect(),
            );
            texts.push(
                (0..length / 3)
                    .map(|_| ['a', '北', '¥', '~', '7'][(next() % 5) as usize])
                    .collect(),
            );
        }
        texts
    }

    #[test]
    fn mask_choice_matches_the_crate() {
        let mut sizes = std::collections::BTreeSet::new();
        for text in sample_texts() {
            for (ecc, ecl) in [
                ("L", QrCodeEcc::Low),
                ("M", QrCodeEcc::Medium),
                ("Q", QrCodeEcc::Quartile),
                ("H", QrCodeEcc::High),
            ] {
                let Ok(code) = QrCode::encode_text(&text, ecl) else {
                    assert!(matrix(&text, ecc).is_err());
                    continue;
                };
                let (size, modules) = matrix(&text, ecc).unwrap();
                assert_eq!(size as i32, code.size());
                sizes.insert(size);
                let expected: Vec<u8> = (0..code.size())
                    .flat_map(|y| (0..code.size()).map(move |x| (x, y)))
                    .map(|(x, y)| u8::from(code.get_module(x, y)))
                    .collect();
                assert_eq!(
                    modules,
                    expected,
                    "text of {} chars at {ecc}",
                    text.chars().count()
                );
            }
        }
        assert!(sizes.len() >= 30, "versions covered: {}", sizes.len());
    }

    #[test]
    fn errors_are_invalid_input() {
        assert!(matches!(matrix("x", "X"), Err(CoreError::Invalid { .. })));
        assert!(matches!(
            matrix(&"a".repeat(3000), "H"),
            Err(CoreError::Invalid { .. })
        ));
        assert!(svg("x", "M", 17).is_err());
        assert!(png("x", "M", 0, 4).is_err());
        assert!(escpos_raster(&"a".repeat(1000), "M", 6, 2).is_err());
    }

    #[test]
    fn png_has_signature_header_and_crc() {
        let png = png("hi", "M", 2, 1).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(
            u32::from_be_bytes(png[16..20].try_into().unwrap()),
            (21 + 2) * 2
        );
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
    }

    #[test]
    fn raster_header_and_rows() {
        let raster = escpos_raster("hi", "M", 3, 2).unwrap();
        let side: usize = (21 + 4) * 3;
        let width_bytes = side.div_ceil(8);
        assert_eq!(&raster[..4], &[0x1D, 0x76, 0x30, 0]);
        assert_eq!(
            usize::from(u16::from_le_bytes([raster[4], raster[5]])),
            width_bytes
        );
        assert_eq!(
            usize::from(u16::from_le_bytes([raster[6], raster[7]])),
            side
        );
        assert_eq!(raster.len(), 8 + width_bytes * side);
        // first dark pixel: top-left finder corner at (2*3, 2*3)
        assert_eq!(raster[8 + 6 * width_bytes], 0b0000_0011);
    }
}
