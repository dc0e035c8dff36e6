"""Curation figures for `make bench`: sensitive-word matching at 10,000 words, and what the official-answer
lookup adds to `/api/ask` with 1,000 pairs.

    .venv/bin/python -m bench.curation          # prints the section (bench.run writes it to BENCHMARKS.md)
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = 10_000
REPLY_CHARS = 500
PAIRS = 1_000
ROUNDS = 5


def sensitive_words_ms(words: int = WORDS, chars: int = REPLY_CHARS, runs: int = 2000) -> dict:
    """Median and p99 ms of masking a ``chars``-character reply against ``words`` listed words."""
    from bot.curation.sensitive import SensitiveWords

    rng = random.Random(12)
    common = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种"
              "面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本"
              "去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比"
              "或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总"
              "次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做"
              "必战先回则任取据处理府研质")  # frequent characters
    vocabulary = {"".join(rng.choice(common) for _ in range(rng.randint(2, 4))) for _ in range(words * 2)}
    listed = sorted(vocabulary)[:words]
    matcher = SensitiveWords([(i, w, "mask" if i % 2 else "block") for i, w in enumerate(listed)])
    corpus = "".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "corpus").glob("*.txt")))
    reply = corpus[1000:1000 + chars]
    matcher.mask(reply)
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        masked, found = matcher.mask(reply)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {"words": matcher.size, "chars": len(reply), "found": len(found),
            "p50": statistics.median(timings), "p99": timings[int(0.99 * (len(timings) - 1))]}


def faq_lookup_ms(instance: Path, rounds: int = ROUNDS) -> dict:
    """``/api/ask`` p50 over the dev questions with and without the official-answer responder, 1,000
    pairs stored, interleaved per question; and the lookup alone."""
    from bench.run import SHARED
    from bot.curation.store import Faq
    from server import create_app

    app = create_app({"INSTANCE_PATH": str(instance), "PRELOAD": True})
    client = app.test_client()
    curation = app.extensions["curation"]
    pipeline = app.extensions["pipeline"]
    questions = [json.loads(line)["q"] for line in (SHARED / "eval" / "dev.jsonl").read_text("utf-8").splitlines()]
    # pairs worded like the documents: sentences of the corpus turned into questions (they share bigrams
    # with members' questions, so the close-match path runs, but none is a paraphrase of one)
    with app.app_context():
        chunks = curation._index().chunks
    sentences = [s.strip() for c in chunks for s in c.text.replace("？", "。").split("。") if 8 <= len(s.strip()) <= 40]
    rng = random.Random(7)
    pairs = []
    for i in range(PAIRS):
        s = sentences[i % len(sentences)]
        pairs.append(Faq(id=0, question=f"{s}是什么意思？" if i % 2 else f"关于{s}有什么规定？",
                         alternatives=[f"{rng.choice(sentences)}怎么理解"], answer=f"官方答复 {i}"))
    started = time.perf_counter()
    with app.app_context():
        curation.store.add_faqs(curation.embed_faqs(pairs), "bench", replace_all=True)
        curation.refresh()
    embed_s = time.perf_counter() - started
    full = list(pipeline.responders)
    without = [(n, r) for n, r in full if n != "faq"]
    with_ms, without_ms, lookup_ms, sources = [], [], [], {"faq": 0, "other": 0}
    for q in questions:  # warm up: every question embedded and searched once
        client.post("/api/ask", json={"q": q})
    for _ in range(rounds):
        for q in questions:
            for responders, out in ((without, without_ms), (full, with_ms)):
                pipeline.responders = responders
                t0 = time.perf_counter()
                r = client.post("/api/ask", json={"q": q})
                out.append((time.perf_counter() - t0) * 1000)
                if responders is full:
                    sources["faq" if r.get_json()["source"] == "faq" else "other"] += 1
            with app.app_context():
                t0 = time.perf_counter()
                curation.faqs.match(" ".join(q.split())[:200], lambda q=q: curation.question_vector(q))
                lookup_ms.append((time.perf_counter() - t0) * 1000)
    pipeline.responders = full
    p50_with, p50_without = statistics.median(with_ms), statistics.median(without_ms)
    return {"pairs": len(curation.faqs), "questions": len(questions), "rounds": rounds, "embed_s": embed_s,
            "p50_without": p50_without, "p50_with": p50_with, "added": p50_with - p50_without,
            "lookup_p50": statistics.median(lookup_ms), "lookup_max": max(lookup_ms),
            "answered_by_faq": sources["faq"]}


def markdown(instance: Path) -> list[str]:
    s = sensitive_words_ms()
    f = faq_lookup_ms(instance)
    return [
        "", "## Curation: sensitive words and official answers", "",
        f"Sensitive words (Aho-Corasick, pyahocorasick): {s['words']:,} words against a {s['chars']}-character "
        f"reply ({s['found']} occurrences masked): **p50 {s['p50']:.3f} ms**, p99 {s['p99']:.3f} ms (target ≤ 1 ms).",
        "",
        f"Official answers: {f['pairs']:,} pairs stored (embedding them took {f['embed_s']:.1f} s). `/api/ask` "
        f"(Flask test client, one thread) over the {f['questions']} dev questions × {f['rounds']}, interleaved: "
        f"p50 {f['p50_without']:.1f} ms without the lookup, {f['p50_with']:.1f} ms with it — "
        f"**{f['added']:+.2f} ms** (target ≤ 2 ms). The lookup alone: p50 {f['lookup_p50']:.3f} ms, "
        f"max {f['lookup_max']:.2f} ms (the question's embedding is shared with the search that follows). "
        f"Questions answered by a pair: {f['answered_by_faq']}.",
    ]


def main() -> None:
    from bench.run import first_document_instance

    if "--instance" in sys.argv:  # a built scratch instance (1,000 pairs are added to it)
        lines = markdown(Path(sys.argv[sys.argv.index("--instance") + 1]))
    else:
        models = ROOT / "instance" / "models"
        models.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            lines = markdown(first_document_instance(Path(tmp), models, "onnx"))
    print("\n".join(lines))
    if "--write" in sys.argv:
        from bench.run import write_section

        write_section(ROOT / "BENCHMARKS.md", lines)


if __name__ == "__main__":
    main()
