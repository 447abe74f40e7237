"""Replay every fuzz corpus (seeds and committed crash regressions) through its harness.

Runs without atheris' instrumentation: each input goes through the harness's TestOneInput;
an exception other than those the harness tolerates fails the test.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
HARNESSES = sorted(FUZZ.glob("fuzz_*.py"))


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"_xproto_fuzz_{path.stem}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fn = getattr(mod, "TestOneInput", None) or getattr(mod, "test_one_input", None)
    assert fn is not None, f"{path.name} defines no TestOneInput"
    return fn


@pytest.mark.parametrize("harness", HARNESSES, ids=lambda p: p.stem)
def test_corpus_replays_clean(harness: Path) -> None:
    pytest.importorskip("atheris")
    fn = _load(harness)
    name = harness.stem[len("fuzz_"):]
    corpus = FUZZ / "corpus" / name
    inputs = sorted(p for p in corpus.rglob("*") if p.is_file()) if corpus.is_dir() else []
    assert inputs, f"fuzz/corpus/{name}/ is empty: seed it from fixtures/"
    for p in inputs:
        fn(p.read_bytes())
