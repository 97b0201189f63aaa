"""Foundation benchmark: toy-world generation time and tokenizer training time.

Run: `python bench/foundation.py` (prints a table; median of N runs each).
"""
import argparse, os, platform, statistics, tempfile, time

def median_time(fn, n):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts), ts

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0]); p.add_argument('--runs', type=int, default=3)
    a = p.parse_args()
    from knowlm_nb.world import WorldConfig, make_world, generate_datasets, write_world, pretrain_documents
    from knowlm_nb.models import train_tokenizer
    rows = []
    for label, cfg in [('default', WorldConfig()),
                       ('4x', WorldConfig(n_countries=16, cities_per_country=8, n_people=400, n_orgs=80, n_inventions=110, collaborations=160))]:
        w = make_world(cfg)
        t, _ = median_time(lambda: make_world(cfg), a.runs)
        rows.append((f'make_world ({label}: {len(w.entities)} entities, {len(w.facts)} facts)', t, ''))
        data = generate_datasets(w); n = sum(len(v) for v in data.values())
        t, _ = median_time(lambda: generate_datasets(make_world(cfg)), a.runs)
        rows.append((f'world + all datasets ({label}: {n} records)', t, f'{n/t:,.0f} records/s'))
        with tempfile.TemporaryDirectory() as d:
            t, _ = median_time(lambda: write_world(d, cfg), a.runs)
        rows.append((f'write_world incl. validation ({label})', t, ''))
        texts = [x['text'] for x in pretrain_documents(w)]
        mb = sum(len(x.encode('utf-8')) for x in texts)/1e6
        t, _ = median_time(lambda: train_tokenizer(texts, vocab_size=4096), a.runs)
        rows.append((f'train_tokenizer vocab 4096 ({label}: {len(texts)} docs, {mb:.2f} MB)', t, f'{mb/t:.2f} MB/s'))
    print(f"knowlm_nb foundation bench — python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, median of {a.runs}")
    print(f"{'what':<72} {'seconds':>9}  rate")
    for what, t, rate in rows: print(f"{what:<72} {t:>9.3f}  {rate}")
    from results_io import write_results
    write_results('foundation', {'runs': a.runs, 'rows': [{'what': w_, 'seconds': round(t_, 4), 'rate': r_} for w_, t_, r_ in rows],
                                 'default_world': {'entities': len(make_world().entities), 'facts': len(make_world().facts)}})

if __name__ == '__main__': main()
