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
