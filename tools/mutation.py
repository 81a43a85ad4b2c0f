"""Mutation testing: mutmut over the Python rule modules, cargo-mutants over core_rs, one score.

    python tools/mutation.py                 # the `rules` scope (what `make mutation` runs)
    python tools/mutation.py --scope full    # every rule module and every core_rs file (hours)
    python tools/mutation.py --report-only   # re-read the last results, run nothing

Prints one line per module, then as its last line `mutation: K killed of N (P%)`. N counts every
mutant that is not proven equivalent (docs/testing.md lists those, each with its reason); a
mutant the tests time out on counts as killed, a Rust mutant that does not compile (cargo-mutants'
"unviable") is not a program and is not counted. Settings mutmut reads are in setup.cfg; results
stay in mutants/ and target/mutation/mutants.out/ (both git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTMUT_DIR = ROOT / "mutants"
CARGO_OUTPUT = ROOT / "target" / "mutation"
CARGO_RESULTS = CARGO_OUTPUT / "mutants.out" / "outcomes.json"
#: Rust builds of the mutants share one target directory, so dependencies are built once.
CARGO_TARGET = ROOT / "target" / "mutants-build"
EQUIVALENT_DOC = ROOT / "docs" / "testing.md"
RUST_TIMEOUT_S = 300

#: mutmut mutant-name globs and core_rs files per scope. `rules`: the small rule modules whole, and
#: in the large ones the functions that hold the rules issue 16 lists (so it fits 20 minutes).
SCOPES: dict[str, dict[str, list[str]]] = {
    "rules": {
        "python": [
            "pos_ledger.money.*",
            "pos_ledger.httpsig.*",
            "pos_ledger.audit.*",
            "pos_ledger.catalog.coupons.x_saving*",
            "pos_ledger.catalog.coupons.x_validity_problem*",
            "pos_ledger.catalog.coupons.x_expiry*",
            "pos_ledger.catalog.coupons.x_issue_problem*",
            "pos_ledger.catalog.members.x_best_recharge_rule*",
            "pos_ledger.catalog.payments.x__half_even_div*",
            "pos_ledger.catalog.payments.x_check_refund*",
            "pos_ledger.catalog.payments.x__decide_refund*",
            "pos_ledger.catalog.shifts.x_record_refund*",
            "pos_ledger.ledger.xǁLedgerǁingest*",
            "api.idempotency.xǁIdempotencyMiddlewareǁ_run_and_keep*",
        ],
        "rust": ["core_rs/src/chain.rs", "core_rs/src/fold/scan.rs"],
    },
    "full": {
        "python": ["pos_ledger.*", "api.idempotency.*"],
        "rust": ["core_rs/src/*.rs", "core_rs/src/*/*.rs"],
    },
}

#: mutmut's statuses that mean a test failed because of the mutant.
MUTMUT_KILLED = {"killed", "timeout", "segfault", "caught by type check"}


@dataclass
class Tally:
    killed: int = 0
    total: int = 0
    equivalent: int = 0
    survivors: list[str] = field(default_factory=list)

    def line(self, name: str) -> str:
        percent = 100.0 * self.killed / self.total if self.total else 100.0
        extra = f", {self.equivalent} equivalent not counted" if self.equivalent else ""
        return f"{name}: {self.killed} killed of {self.total} ({percent:.1f}%){extra}"


def equivalent_mutants() -> set[str]:
    """Mutant names listed as equivalent in docs/testing.md: table rows whose first cell is `name`."""
    if not EQUIVALENT_DOC.exists():
        return set()
    names = set()
    for line in EQUIVALENT_DOC.read_text().splitlines():
        found = re.match(r"^\|\s*`([^`]+)`\s*\|", line)
        if found:
            names.add(found[1])
    return names


def run_python(globs: list[str], python: str) -> None:
    shutil.rmtree(MUTMUT_DIR, ignore_errors=True)  # a fresh run: no result is carried over
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([python, "-m", "mutmut", "run", *globs], cwd=ROOT, env=env, check=False)


def python_results(globs: list[str], python: str, equivalent: set[str]) -> dict[str, Tally]:
    answer = subprocess.run([python, "-m", "mutmut", "results", "--all", "true"], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    tallies: dict[str, Tally] = defaultdict(Tally)
    patterns = [re.compile(re.escape(g).replace(r"\*", ".*") + "$") for g in globs]
    for line in answer.stdout.splitlines():
        found = re.match(r"^\s*(\S+): (.+)$", line)
        if not found or not any(p.match(found[1]) for p in patterns):
            continue
        name, status = found[1], found[2].strip()
        if status == "not checked":
            continue
        module = name.split(".x_")[0].split(".xǁ")[0]
        tally = tallies[module]
        if status in MUTMUT_KILLED:
            tally.killed += 1
        elif name in equivalent:
            tally.equivalent += 1
            continue
        else:
            tally.survivors.append(f"{name}: {status}")
        tally.total += 1
    return tallies


def rust_test_filters(files: list[str]) -> list[str]:
    """`fold::` for core_rs/src/fold.rs and core_rs/src/fold/scan.rs: the unit tests of those modules."""
    names = set()
    for pattern in files:
        for path in ROOT.glob(pattern):
            relative = path.relative_to(ROOT / "core_rs" / "src")
            names.add(relative.parts[0].removesuffix(".rs"))
    return sorted(f"{name}::" for name in names if name not in ("lib", "py"))


def start_rust(files: list[str], full: bool) -> subprocess.Popen[bytes]:
    """cargo-mutants in the background (it builds and tests each mutant in a copy of the tree)."""
    shutil.rmtree(CARGO_OUTPUT, ignore_errors=True)
    CARGO_OUTPUT.mkdir(parents=True)
    command = ["cargo", "mutants", "--manifest-path", "core_rs/Cargo.toml", "--jobs", "1",
               "--timeout", str(RUST_TIMEOUT_S), "--output", str(CARGO_OUTPUT), "--no-shuffle"]
    for pattern in files:
        command += ["--file", pattern]
    command += ["--", "--lib"]
    if not full:
        command += ["--", *rust_test_filters(files)]
    env = {**os.environ, "CARGO_TARGET_DIR": str(CARGO_TARGET)}
    log = (CARGO_OUTPUT / "cargo-mutants.log").open("wb")
    print(f"cargo-mutants running in the background, log: {CARGO_OUTPUT / 'cargo-mutants.log'}", flush=True)
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def rust_results(equivalent: set[str]) -> dict[str, Tally]:
    tallies: dict[str, Tally] = defaultdict(Tally)
    if not CARGO_RESULTS.exists():
        return tallies
    for outcome in json.loads(CARGO_RESULTS.read_text())["outcomes"]:
        scenario = outcome["scenario"]
        if not isinstance(scenario, dict):
            continue  # the unmutated baseline
        mutant = scenario["Mutant"]
        summary = outcome["summary"]
        if summary == "Unviable":
            continue
        tally = tallies[mutant["file"]]
        if summary in ("CaughtMutant", "Timeout"):
            tally.killed += 1
        elif mutant["name"] in equivalent:
            tally.equivalent += 1
            continue
        else:
            tally.survivors.append(f"{mutant['name']}: {summary}")
        tally.total += 1
    return tallies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scope", choices=sorted(SCOPES), default="rules")
    parser.add_argument("--report-only", action="store_true", help="read the last results, run nothing")
    parser.add_argument("--skip-python", action="store_true")
    parser.add_argument("--skip-rust", action="store_true")
    parser.add_argument("--survivors", action="store_true", help="also list every surviving mutant")
    arguments = parser.parse_args()
    scope = SCOPES[arguments.scope]
    python = sys.executable
    if not arguments.report_only:
        rust = None if arguments.skip_rust else start_rust(scope["rust"], arguments.scope == "full")
        if not arguments.skip_python:
            run_python(scope["python"], python)
        if rust is not None:
            rust.wait()
            print(f"cargo-mutants finished (exit {rust.returncode})", flush=True)
    equivalent = equivalent_mutants()
    tallies: dict[str, Tally] = {}
    if not arguments.skip_python:
        tallies.update(python_results(scope["python"], python, equivalent))
    if not arguments.skip_rust:
        tallies.update(rust_results(equivalent))
    overall = Tally()
    statuses: Counter[str] = Counter()
    for name in sorted(tallies):
        tally = tallies[name]
        print(tally.line(name))
        overall.killed += tally.killed
        overall.total += tally.total
        overall.equivalent += tally.equivalent
        for survivor in tally.survivors:
            statuses[survivor.rsplit(": ", 1)[1]] += 1
            if arguments.survivors:
                print(f"    survived: {survivor}")
    if statuses:
        print("not killed: " + ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())))
    percent = 100.0 * overall.killed / overall.total if overall.total else 0.0
    print(f"mutation: {overall.killed} killed of {overall.total} ({percent:.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
