//! qrcodegen's automatic mask choice, computed on bitsets.
//!
//! The crate re-masks and re-scores its own code once per mask, module by module, which is
//! about 95% of its encoding time. Here the code is built once with mask 0; its rows and columns
//! become bitsets, and each of the 8 candidates is `data ^ (pattern & !function)` word by word,
//! scored with the crate's exact penalty rules (N1 runs, N2 2x2 blocks, N3 finder-like runs
//! with light borders, N4 balance) walked run by run. Ties keep the lowest mask, as the crate
//! does, so the matrix is identical to `QrCode::encode_text`'s (tests compare the two).

use qrcodegen::{QrCode, QrCodeEcc};

/// 64-bit words per line: version 40 is 177 modules.
const WORDS: usize = 3;
type Line = [u64; WORDS];

const PENALTY_N1: i32 = 3;
const PENALTY_N2: i32 = 3;
const PENALTY_N3: i32 = 40;
const PENALTY_N4: i32 = 10;

// The formulas as the QR standard (and qrcodegen) write them.
#[allow(clippy::manual_is_multiple_of)]
const fn mask_bit(mask: usize, x: usize, y: usize) -> bool {
    match mask {
        0 => (x + y) % 2 == 0,
        1 => y % 2 == 0,
        2 => x % 3 == 0,
        3 => (x + y) % 3 == 0,
        4 => (x / 3 + y / 2) % 2 == 0,
        5 => x * y % 2 + x * y % 3 == 0,
        6 => (x * y % 2 + x * y % 3) % 2 == 0,
        _ => ((x + y) % 2 + x * y % 3) % 2 == 0,
    }
}

/// Mask patterns repeat every 12 rows and every 12 columns: `ROWS[mask][y % 12]` is row y,
/// `COLUMNS[mask][x % 12]` column x (bit i = module i along the line).
const fn patterns(columns: bool) -> [[Line; 12]; 8] {
    let mut table = [[[0u64; WORDS]; 12]; 8];
    let mut mask = 0;
    while mask < 8 {
        let mut line = 0;
        while line < 12 {
            let mut i = 0;
            while i < WORDS * 64 {
                let (x, y) = if columns { (line, i) } else { (i, line) };
                if mask_bit(mask, x, y) {
                    table[mask][line][i / 64] |= 1 << (i % 64);
                }
                i += 1;
            }
            line += 1;
        }
        mask += 1;
    }
    table
}

const ROWS: [[Line; 12]; 8] = patterns(false);
const COLUMNS: [[Line; 12]; 8] = patterns(true);

/// The modules of one candidate, by rows and by columns.
#[derive(Clone)]
struct Grid {
    size: usize,
    rows: Vec<Line>,
    columns: Vec<Line>,
}

impl Grid {
    fn new(size: usize) -> Grid {
        Grid {
            size,
            rows: vec![[0; WORDS]; size],
            columns: vec![[0; WORDS]; size],
        }
    }

    fn set(&mut self, x: usize, y: usize, dark: bool) {
        let (row_bit, column_bit) = (1u64 << (x % 64), 1u64 << (y % 64));
        let (row, column) = (&mut self.rows[y][x / 64], &mut self.columns[x][y / 64]);
        *row = (*row & !row_bit) | if dark { row_bit } else { 0 };
        *column = (*column & !column_bit) | if dark { column_bit } else { 0 };
    }

    fn get(&self, x: usize, y: usize) -> bool {
        self.rows[y][x / 64] >> (x % 64) & 1 == 1
    }

    /// `self ^ (pattern & light)`, where `light` marks the data modules.
    fn masked(&self, light: &Grid, mask: usize) -> Grid {
        let xor = |lines: &[Line], light: &[Line], table: &[Line; 12]| -> Vec<Line> {
            (lines.iter().zip(light).enumerate())
                .map(|(i, (line, free))| {
                    std::array::from_fn(|w| line[w] ^ (table[i % 12][w] & free[w]))
                })
                .collect()
        };
        Grid {
            size: self.size,
            rows: xor(&self.rows, &light.rows, &ROWS[mask]),
            columns: xor(&self.columns, &light.columns, &COLUMNS[mask]),
        }
    }
}

/// Data modules (not function patterns), as qrcodegen's `draw_function_patterns` leaves them.
fn data_modules(size: usize, version: u8) -> Grid {
    let mut function = Grid::new(size);
    let mut mark = |x: usize, y: usize| function.set(x, y, true);
    for i in 0..size {
        mark(6, i);
        mark(i, 6);
    }
    for y in 0..9 {
        for x in 0..9 {
            mark(x, y); // top-left finder, separator and format area
            mark(size - 8 + x.min(7), y); // top-right finder and format area
            mark(x, size - 8 + y.min(7)); // bottom-left finder, format area and dark module
        }
    }
    let positions = alignment_positions(size, version);
    let last = positions.len().saturating_sub(1);
    for (i, &cy) in positions.iter().enumerate() {
        for (j, &cx) in positions.iter().enumerate() {
            if [(0, 0), (0, last), (last, 0)].contains(&(i, j)) {
                continue;
            }
            for y in cy - 2..=cy + 2 {
                for x in cx - 2..=cx + 2 {
                    mark(x, y);
                }
            }
        }
    }
    if version >= 7 {
        for i in 0..18 {
            let (a, b) = (size - 11 + i % 3, i / 3);
            mark(a, b);
            mark(b, a);
        }
    }
    let inside = within(size);
    let invert = |lines: &[Line]| {
        lines
            .iter()
            .map(|l| std::array::from_fn(|w| !l[w] & inside[w]))
            .collect()
    };
    Grid {
        size,
        rows: invert(&function.rows),
        columns: invert(&function.columns),
    }
}

fn alignment_positions(size: usize, version: u8) -> Vec<usize> {
    if version == 1 {
        return Vec::new();
    }
    let version = usize::from(version);
    let count = version / 7 + 2;
    let step = if version == 32 {
        26
    } else {
        (version * 4 + count * 2 + 1) / (count * 2 - 2) * 2
    };
    let mut positions: Vec<usize> = (0..count - 1).map(|i| size - 7 - i * step).collect();
    positions.push(6);
    positions.reverse();
    positions
}

/// Bits 0..n set.
fn within(n: usize) -> Line {
    std::array::from_fn(|w| match n.saturating_sub(w * 64) {
        0 => 0,
        bits if bits >= 64 => u64::MAX,
        bits => (1u64 << bits) - 1,
    })
}

fn draw_format_bits(grid: &mut Grid, format_ecl: u32, mask: usize) {
    let data = format_ecl << 3 | mask as u32;
    let mut rem = data;
    for _ in 0..10 {
        rem = (rem << 1) ^ ((rem >> 9) * 0x537);
    }
    let bits = (data << 10 | rem) ^ 0x5412;
    let bit = |i: usize| (bits >> i) & 1 == 1;
    let size = grid.size;
    for i in 0..6 {
        grid.set(8, i, bit(i));
    }
    grid.set(8, 7, bit(6));
    grid.set(8, 8, bit(7));
    grid.set(7, 8, bit(8));
    for i in 9..15 {
        grid.set(14 - i, 8, bit(i));
    }
    for i in 0..8 {
        grid.set(size - 1 - i, 8, bit(i));
    }
    for i in 8..15 {
        grid.set(8, size - 15 + i, bit(i));
    }
    grid.set(8, size - 8, true);
}

/// qrcodegen's `FinderPenalty`: the last 7 run lengths, newest first, 16 bits each (a run is at
/// most 3 * 177 modules with its borders) in one register; an array here cost a store-forwarding
/// stall per run, most of the encoder's time.
struct History {
    runs: u128,
    size: i32,
}

impl History {
    fn run(&self, k: u32) -> i32 {
        (self.runs >> (16 * k)) as i32 & 0xFFFF
    }

    fn push(&mut self, mut run: i32) {
        if self.run(0) == 0 {
            run += self.size; // light border before the line
        }
        self.runs = self.runs << 16 | run as u128;
    }

    fn patterns(&self) -> i32 {
        let n = self.run(1);
        let core = n > 0
            && self.run(2) == n
            && self.run(3) == n * 3
            && self.run(4) == n
            && self.run(5) == n;
        let (first, last) = (self.run(0), self.run(6));
        i32::from(core && first >= n * 4 && last >= n)
            + i32::from(core && last >= n * 4 && first >= n)
    }
}

/// N1 and N3 along one line, walking runs: boundaries are where a module differs from the one
/// before it (the module before the first counts as light).
fn line_penalty(line: &Line, size: usize) -> i32 {
    let inside = within(size);
    let mut result = 0;
    let mut history = History {
        runs: 0,
        size: size as i32,
    };
    let (mut start, mut index) = (0usize, 0usize);
    for w in 0..WORDS {
        let carry = if w > 0 { line[w - 1] >> 63 } else { 0 };
        let mut boundaries = (line[w] ^ (line[w] << 1 | carry)) & inside[w];
        while boundaries != 0 {
            let at = w * 64 + boundaries.trailing_zeros() as usize;
            boundaries &= boundaries - 1;
            let run = (at - start) as i32;
            if run >= 5 {
                result += PENALTY_N1 + run - 5;
            }
            history.push(run);
            if index % 2 == 0 {
                result += history.patterns() * PENALTY_N3; // a light run just ended
            }
            (start, index) = (at, index + 1);
        }
    }
    let run = (size - start) as i32;
    if run >= 5 {
        result += PENALTY_N1 + run - 5;
    }
    if index % 2 == 1 {
        history.push(run); // the line ends dark: then the light border
        history.push(size as i32);
    } else {
        history.push(run + size as i32);
    }
    result + history.patterns() * PENALTY_N3
}

fn penalty(grid: &Grid) -> i32 {
    let size = grid.size;
    let mut result: i32 = grid
        .rows
        .iter()
        .chain(&grid.columns)
        .map(|line| line_penalty(line, size))
        .sum();
    let pairs = within(size - 1);
    let next = |l: &Line, w: usize| l[w] >> 1 | if w + 1 < WORDS { l[w + 1] << 63 } else { 0 };
    for (top, bottom) in grid.rows.iter().zip(&grid.rows[1..]) {
        for w in 0..WORDS {
            let differ =
                (top[w] ^ next(top, w)) | (bottom[w] ^ next(bottom, w)) | (top[w] ^ bottom[w]);
            result += PENALTY_N2 * (!differ & pairs[w]).count_ones() as i32;
        }
    }
    let dark = grid
        .rows
        .iter()
        .flatten()
        .map(|w| w.count_ones() as i32)
        .sum::<i32>();
    let total = (size * size) as i32;
    let k = ((dark * 20 - total * 10).abs() + total - 1) / total - 1;
    result + k * PENALTY_N4
}

/// The matrix of `code` (built with mask 0) under the mask qrcodegen would choose itself,
/// row by row, 1 = dark.
pub(super) fn best_masked(code: &QrCode) -> (usize, Vec<u8>) {
    let size = code.size() as usize;
    let free = data_modules(size, code.version().value());
    let mut grid = Grid::new(size);
    for y in 0..size {
        for x in 0..size {
            if code.get_module(x as i32, y as i32) {
                grid.set(x, y, true);
            }
        }
    }
    let data = grid.masked(&free, 0); // undo mask 0
    let format_ecl = match code.error_correction_level() {
        QrCodeEcc::Low => 1,
        QrCodeEcc::Medium => 0,
        QrCodeEcc::Quartile => 3,
        QrCodeEcc::High => 2,
    };
    let mut best: Option<(i32, Grid)> = None;
    for mask in 0..8 {
        let mut candidate = data.masked(&free, mask);
        draw_format_bits(&mut candidate, format_ecl, mask);
        let score = penalty(&candidate);
        if best.as_ref().is_none_or(|(lowest, _)| score < *lowest) {
            best = Some((score, candidate));
        }
    }
    let (_, grid) = best.expect("8 candidates");
    let mut modules = Vec::with_capacity(size * size);
    for y in 0..size {
        modules.extend((0..size).map(|x| u8::from(grid.get(x, y))));
    }
    (size, modules)
}
