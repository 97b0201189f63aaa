"""Throughput of the rhyme scorer on 唐诗三百首 + the 全唐诗 sample, beside pingshui_rhyme's own checker.

Run: `.venv/bin/python bench/rhyme.py [--repeats 5] [--data ../shared/data/poetry]`. One process, one core.
Prints a table: what was measured, on how many poems, the median of N runs (poems/s), and the ratio to
pingshui_rhyme's `PoemStructureChecker` (check_poem_rhyming + check_poem_pingze_meter) on the same poems.
Every timed run is a cold pass for knowlm_nb: `clear_caches()` empties the per-line caches (tone-code fits,
word classes) before each run, so a repeat is no cheaper than the first. What persists across runs is loaded
once per process: the 平水韵 table (with the variants learnt on the untimed warm-up pass) and jieba's lexicon;
the warm-up pass (OpenCC look-ups of unknown variants included) is printed too.
Two clocks: wall (perf_counter) and CPU time of this process (process_time, one thread). On a machine shared
with other jobs the wall figure shrinks by the share of the core the process got; the CPU figure is the
throughput of one core while it ran. The load average is printed so the two can be read together.
"""
import argparse, os, platform, statistics, sys, time, types
from pathlib import Path


def _shim_pkg_resources():
    "pingshui_rhyme imports pkg_resources (gone from setuptools >= 81) only for `resource_filename`: provide that one function."
    try:
        import pkg_resources  # noqa: F401
        return False
    except ImportError:
        import importlib.resources
        mod = types.ModuleType('pkg_resources')
        mod.resource_filename = lambda pkg, name: str(importlib.resources.files(pkg.rpartition('.')[0] or pkg)/name)
        sys.modules['pkg_resources'] = mod
        return True


def timed(fn, items, repeats, reset=None):
    "(median wall poems/s, median CPU poems/s) of `fn` over `items`, `repeats` runs; `reset()` (untimed) before each run."
    wall, cpu = [], []
    for _ in range(repeats):
        if reset: reset()
        t0, c0 = time.perf_counter(), time.process_time()
        for x in items: fn(x)
        wall.append(len(items) / (time.perf_counter() - t0)); cpu.append(len(items) / (time.process_time() - c0))
    return statistics.median(wall), statistics.median(cpu)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--data', default=None, help='chinese-poetry directory (default: ../shared/data/poetry)')
    a = p.parse_args(argv)
    if a.repeats < 3: p.error('--repeats must be at least 3 (the figure is a median)')
    t0 = time.perf_counter()
    import knowlm_nb.rhyme as R
    t_import = time.perf_counter() - t0
    torch_loaded = 'torch' in sys.modules
    root = R.find_poetry_dir(a.data or Path(__file__).resolve().parents[2]/'shared'/'data'/'poetry')
    if root is None:
        print('bench/rhyme.py: no chinese-poetry data (../shared/data/poetry); nothing to measure'); return 0
    poems = R.load_poems(root/'tangshi300_quantangshi.json'); n_ts = len(poems)
    poems += [q for f in sorted((root/'quantangshi_sample').glob('poet.tang.*.json')) for q in R.load_poems(f)]
    texts = ['\n'.join(q['paragraphs']) for q in poems]
    t0 = time.perf_counter(); R.pingshui_table(); R.word_classes(); t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    for t in texts: R.score_poem(t)  # warm-up: variants learnt into the table (OpenCC), code paths warmed
    first = len(texts) / (time.perf_counter() - t0)
    full = timed(lambda t: R.score_poem(t), texts, a.repeats, R.clear_caches)
    struct = timed(lambda t: R.score_poem(t, antithesis=False), texts, a.repeats, R.clear_caches)
    shim = _shim_pkg_resources()
    try:
        from pingshui_rhyme import PoemStructureChecker
        chk = PoemStructureChecker()
        errors = []
        def theirs(t):
            try: chk.check_poem_rhyming(t); chk.check_poem_pingze_meter(t)
            except Exception as e: errors.append(type(e).__name__)  # it raises on some real poems (e.g. IndexError on short lines)
        ref = timed(theirs, texts, a.repeats)
        if errors: print(f"note: pingshui_rhyme raised on {len(errors) // a.repeats} of {len(texts)} poems (timed all the same)")
    except Exception as e:  # the reference is optional: report why it is missing
        ref = (None, None); print(f"pingshui_rhyme checker unavailable: {type(e).__name__}: {e}")
    rows = [('knowlm_nb score_poem, full (4 dims + total)', full), ('knowlm_nb score_poem, structure only (tones+rhymes+length)', struct),
            ('pingshui_rhyme PoemStructureChecker (rhyming + pingze meter)', ref)]
    print(f"rhyme bench: {len(texts)} poems (唐诗三百首 {n_ts} + 全唐诗 sample {len(poems) - n_ts}), "
          f"median of {a.repeats} runs, one process on {platform.processor() or platform.machine()} ({os.cpu_count()} cores visible), python {platform.python_version()}")
    print(f"{'measured':<64} {'wall poems/s':>13} {'CPU poems/s':>12} {'vs pingshui_rhyme (CPU)':>24}")
    for name, (w, c) in rows:
        if w is None: print(f"{name:<64} {'n/a':>13} {'n/a':>12}"); continue
        print(f"{name:<64} {w:>13,.0f} {c:>12,.0f} {('%.2fx' % (c / ref[1])) if ref[1] else 'n/a':>24}")
    print(f"knowlm_nb caches cleared before every timed run (each is a cold pass); the untimed warm-up pass, which also learns "
          f"variants through OpenCC, ran at {first:,.0f} poems/s (full)")
    met = lambda v, t: 'MET' if v >= t else 'NOT MET'
    load = ' / '.join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, 'getloadavg') else 'n/a'
    print(f"targets (one core): full >= 10,000/s: CPU {met(full[1], 10000)}, wall {met(full[0], 10000)}; "
          f"structure only >= 30,000/s: CPU {met(struct[1], 30000)}, wall {met(struct[0], 30000)}; load average {load}")
    print(f"import knowlm_nb.rhyme: {t_import*1000:.0f} ms, torch imported: {torch_loaded}; first table + lexicon load: {t_load:.2f} s"
          + ("; pkg_resources shimmed for pingshui_rhyme" if shim else ''))
    t0 = time.perf_counter()
    corpus = R.evaluate_corpus(root)  # the corpus table and the card-protocol hypotheses the notebook quotes
    protocols = R.card_protocol_rows(root)
    print(f"corpus table and {len(R.PROTOCOLS)} card-protocol hypotheses scored in {time.perf_counter() - t0:.1f} s:")
    for r in corpus + protocols:
        print('  ' + ' | '.join(str(r.get(k, '')) for k in ('dataset', 'protocol', 'poems', 'tones', 'rhymes', 'antithesis', 'length', 'total', 'within ±3 of the card')))
    from results_io import write_results
    write_results('rhyme', {'poems': len(texts), 'repeats': a.repeats,
                            'poems_per_s': {name: {'wall': None if w is None else round(w), 'cpu': None if c is None else round(c)} for name, (w, c) in rows},
                            'import_ms': round(t_import*1000), 'torch_imported': torch_loaded,
                            'corpus': corpus, 'card_protocols': protocols})
    return 0


if __name__ == '__main__':
    sys.exit(main())
