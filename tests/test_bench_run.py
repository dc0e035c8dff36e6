"""`make bench`'s own behaviour (its figures are not checked: they go to BENCHMARKS.md)."""

from bench.run import measured


def test_a_late_section_that_fails_is_reported_and_the_sections_before_it_are_kept(capsys):
    assert measured("Scale", lambda: ["", "## Scale", "| 1,000 | exact |"]) == ["", "## Scale", "| 1,000 | exact |"]

    def cluster() -> list[str]:
        raise RuntimeError("http://127.0.0.1:8081/healthz did not become healthy in 300 s")

    lines = measured("Cluster", cluster)
    assert lines == ["", "## Cluster", "",
                     "Not measured in this run: RuntimeError: http://127.0.0.1:8081/healthz did not become healthy "
                     "in 300 s"]
    assert "Traceback" in capsys.readouterr().err


def test_rerunning_one_back_ends_build_keeps_the_other_back_ends_rows(tmp_path, monkeypatch):
    from bench import run

    written = tmp_path / "BENCHMARKS.md"
    written.write_text("\n".join(["# Benchmarks", *run.build_section(["| onnx | 53 | old |", "| torch | 53 | old |"]),
                                  "", "## Scale", "", "rows"]), encoding="utf-8")
    monkeypatch.setattr(run, "first_document_instance", lambda folder, models, backend: folder)
    monkeypatch.setattr(run, "bench_build", lambda instance, backend: [f"| {backend} | 53 | new |"])
    lines = run.build_step(tmp_path, ["onnx"], written)
    assert lines[-2:] == ["| onnx | 53 | new |", "| torch | 53 | old |"]
