"""Speed of the IE parser and scorer: model outputs parsed and scored per second, strict and repaired.

Run: `.venv/bin/python bench/ie.py [--n 20000] [--repeats 3]`. One process pinned to one core.
The outputs answer the world's NER and RE test prompts and come in five kinds, the same every run:
exact answers, answers with a missing label, single-quoted (repairable) JSON, JSON inside prose, and
plain text (unreadable). Each run parses and scores all of them with `score_records` (prompts merged
per text, IEPile's tuples and multiset matching); outputs per second, median of `--repeats` runs.
Target (issue #13): >= 20,000 outputs/s parsed + scored on one core.
"""
import argparse, json, os, random, statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_results


def outputs(task:str, n:int, seed:int=0)->list:
    from knowlm_nb.ie import world_ie_records, answer_for
    recs = world_ie_records(task, splits=('train', 'validation', 'test'))
    rng = random.Random(seed)
    out = []
    for k in range(n):
        r = rng.choice(recs)
        ans = answer_for(task, json.loads(r['instruction'])['schema'], json.loads(r['label']))
        kind = k % 5
        if kind == 1: ans = dict(list(ans.items())[1:])
        text = json.dumps(ans, ensure_ascii=False)
        if kind == 2: text = text.replace('"', "'")
        elif kind == 3: text = f"Here is the answer: {text} Done."
        elif kind == 4: text = 'I could not find anything.'
        out.append({**r, 'output': text})
    return out


def rate(recs, task, mode, repeats):
    from knowlm_nb.ie import score_records
    score_records(recs[:200], task, mode)  # warm-up (json-repair import)
    def one():
        t0 = time.perf_counter()
        score_records(recs, task, mode)
        return len(recs) / (time.perf_counter() - t0)
    return round(statistics.median(one() for _ in range(repeats)), 1)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=20000)
    ap.add_argument('--repeats', type=int, default=3)
    a = ap.parse_args()
    if hasattr(os, 'sched_setaffinity'): os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    res = {}
    for task in ('NER', 'RE'):
        recs = outputs(task, a.n)
        res[task] = {mode: rate(recs, task, mode, a.repeats) for mode in ('strict', 'repaired')}
        print(f"{task}: strict {res[task]['strict']:,.0f} outputs/s, repaired {res[task]['repaired']:,.0f} outputs/s ({a.n} outputs, five kinds)")
    worst = min(v for r in res.values() for v in r.values())
    print(f"target >= 20,000 outputs/s on one core: {'met' if worst >= 20000 else 'NOT met'} (slowest {worst:,.0f})")
    write_results('ie', {'outputs_per_second': res, 'n_outputs': a.n, 'repeats': a.repeats, 'kinds': 5})
