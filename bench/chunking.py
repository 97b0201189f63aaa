"""Benchmark of the chunking stage, printed as one table in one run.

    python bench/chunking.py            # >= 50 MB zh+en corpus from the toy world
    python bench/chunking.py --mb 10    # quicker

Measures, as medians of --runs runs (rounds interleave the three timings so drift hits them alike):
  floor  : tokenize only: HF `tokenizers` encode_batch (+ ids) of the in-memory texts, in the same 1 MB batches
  full-1 : `chunk_corpus` from the .jsonl file to the .bin/.idx pair with 1 worker (read, split, tokenize, pack, write)
  full-2 : the same with 2 worker processes
Each full run happens in a fresh subprocess, which reports its peak RSS (and its workers'); a run on half the
corpus shows whether peak RSS depends on corpus size. Then 10k random reads from the index, and single-document
scaling: one document of 1, 4 and 16 MB (--scaling-mb) chunked with 1 worker (time must grow linearly).
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np

CHILD = r'''
import json, resource, sys, time
from knowlm_nb.chunking import chunk_corpus, ChunkConfig
a = json.loads(sys.argv[1])
t0 = time.perf_counter()
s = chunk_corpus([a['input']], a['tokenizer'], a['out'], ChunkConfig(max_len=a['max_len']), workers=a['workers'],
                 source_field='lang', progress=False)
dt = time.perf_counter() - t0
print(json.dumps({'seconds': dt, 'rss_self_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024,
                  'rss_children_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024,
                  'chunks': s['chunks'], 'tokens': s['tokens'], 'documents': s['documents'], 'fill_ratio': s['fill_ratio']}))
'''

def make_corpus(path, mb, seed=0):
    "World articles (20 paragraphs each, zh and en), repeated until the file holds >= `mb` MB."
    from knowlm_nb.world import WorldConfig, make_world
    from knowlm_nb.chunking import world_articles
    world = make_world(WorldConfig(seed=seed, n_people=2000, n_orgs=200, n_inventions=120, collaborations=800, doc_repeats=4))
    lines = [json.dumps(a, ensure_ascii=False) + '\n' for a in world_articles(world, per_article=20)]
    block = ''.join(lines).encode('utf-8')
    reps = -(-int(mb * 1e6) // len(block))
    with open(path, 'wb') as f:
        for _ in range(reps): f.write(block)
    return path.stat().st_size, len(lines) * reps

def floor_run(tokenizer_dir, path, batch_bytes=1 << 20):
    "Tokenize-only: the texts are read and batched beforehand (not timed); time encode_batch + ids."
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(Path(tokenizer_dir)/'tokenizer.json'))
    batches, cur, nb = [], [], 0
    with open(path, encoding='utf-8') as f:
        for line in f:
            cur.append(json.loads(line)['text']); nb += len(line)
            if nb >= batch_bytes: batches.append(cur); cur, nb = [], 0
    if cur: batches.append(cur)
    t0 = time.perf_counter(); n = 0
    for b in batches: n += sum(len(e.ids) for e in tok.encode_batch(b, add_special_tokens=False))
    return time.perf_counter() - t0, n

def full_run(tokenizer_dir, path, out, workers, max_len):
    arg = json.dumps({'input': str(path), 'tokenizer': str(tokenizer_dir), 'out': str(out), 'workers': workers, 'max_len': max_len})
    r = subprocess.run([sys.executable, '-c', CHILD, arg], capture_output=True, text=True)
    if r.returncode: sys.exit(f"full run failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def single_document(path, mb):
    "One JSONL record holding >= `mb` MB of world paragraphs (zh and en) as a single document."
    from knowlm_nb.world import make_world, ie_examples
    unit = ' '.join(e['text'] for e in ie_examples(make_world()))
    text = unit * -(-int(mb * 1e6) // len(unit.encode('utf-8')))
    path.write_text(json.dumps({'text': text, 'lang': 'mixed'}, ensure_ascii=False) + '\n', encoding='utf-8')
    return path.stat().st_size

def random_reads(prefix, n=10_000, seed=0):
    from knowlm_nb.chunking import IndexedDataset
    ds = IndexedDataset(prefix)
    idx = np.random.default_rng(seed).integers(0, len(ds), n).tolist()
    t0 = time.perf_counter(); s = 0
    for i in idx: s += len(ds[i])
    return n / (time.perf_counter() - t0), len(ds)

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--mb', type=float, default=50, help='corpus size in MB (default 50)')
    p.add_argument('--runs', type=int, default=3, help='runs per measurement (default 3)')
    p.add_argument('--max-len', type=int, default=1024)
    p.add_argument('--scaling-mb', type=float, nargs='*', default=[1, 4, 16], help='single-document sizes in MB (default 1 4 16; none: skip)')
    a = p.parse_args()
    from knowlm_nb.models import world_tokenizer
    tok_dir = Path(world_tokenizer().name_or_path)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        size, ndocs = make_corpus(d/'corpus.jsonl', a.mb)
        half, _ = make_corpus(d/'half.jsonl', a.mb / 2)
        print(f"corpus: {size/1e6:.1f} MB, {ndocs:,} zh+en articles of 20 world paragraphs; tokenizer {tok_dir.name} "
              f"(byte-level BPE, {world_tokenizer().__len__()} ids); max_len {a.max_len}; {os.cpu_count()} CPU cores; "
              f"python {sys.version.split()[0]}", flush=True)
        T = {'floor': [], 'full-1': [], 'full-2': []}; info = {}
        for r in range(a.runs):
            t, ntok = floor_run(tok_dir, d/'corpus.jsonl'); T['floor'].append(t)
            for w in (1, 2):
                res = full_run(tok_dir, d/'corpus.jsonl', d/f'out{w}', w, a.max_len); T[f'full-{w}'].append(res['seconds']); info[w] = res
            print(f"  round {r + 1}: floor {T['floor'][-1]:.2f}s, full-1 {T['full-1'][-1]:.2f}s, full-2 {T['full-2'][-1]:.2f}s", flush=True)
        same = (d/'out1.bin').read_bytes() == (d/'out2.bin').read_bytes() and (d/'out1.idx').read_bytes() == (d/'out2.idx').read_bytes()
        halfres = full_run(tok_dir, d/'half.jsonl', d/'outh', 1, a.max_len)
        reads = [random_reads(d/'out1', seed=s) for s in range(a.runs)]
        med = {k: float(np.median(v)) for k, v in T.items()}
        floor = med['floor']
        print()
        print(f"| measurement | median of {a.runs} (s) | MB/s | tokens/s | x floor | peak RSS (MB) |")
        print("|---|---|---|---|---|---|")
        print(f"| tokenize only (floor) | {floor:.2f} | {size/1e6/floor:.2f} | {ntok/floor:,.0f} | 1.00 | - |")
        for w in (1, 2):
            m = med[f'full-{w}']; r = info[w]
            rss = f"{r['rss_self_mb']:.0f}" + (f" (+ workers {r['rss_children_mb']:.0f} each)" if w > 1 else '')
            print(f"| chunk + index, {w} worker{'s' if w > 1 else ''} | {m:.2f} | {size/1e6/m:.2f} | {r['tokens']/m:,.0f} | {m/floor:.2f} | {rss} |")
        print(f"| chunk + index, 1 worker, half corpus ({half/1e6:.1f} MB, 1 run) | {halfres['seconds']:.2f} | {half/1e6/halfres['seconds']:.2f} | "
              f"{halfres['tokens']/halfres['seconds']:,.0f} | - | {halfres['rss_self_mb']:.0f} |")
        rr = float(np.median([x[0] for x in reads]))
        print()
        print(f"index: {info[1]['chunks']:,} chunks, {info[1]['tokens']:,} tokens (BOS/EOS included), fill ratio {info[1]['fill_ratio']:.3f}; "
              f"1 and 2 workers byte-identical: {same}")
        print(f"random reads: {rr:,.0f} samples/s (median of {a.runs} x 10,000 uniform random indices, ds[i] as a numpy view)")
        scaling = []
        for mb in a.scaling_mb:
            sz = single_document(d/f'single{mb}.jsonl', mb)
            res = full_run(tok_dir, d/f'single{mb}.jsonl', d/f'outs{mb}', 1, a.max_len)
            scaling.append({'mb': round(sz/1e6, 1), 'seconds': round(res['seconds'], 2), 's_per_mb': round(res['seconds']/(sz/1e6), 3),
                            'peak_rss_mb': round(res['rss_self_mb']), 'tokens': res['tokens']})
        if scaling:
            print()
            print("| one document of | seconds (1 worker, 1 run) | s per MB | peak RSS (MB) |")
            print("|---|---|---|---|")
            for r in scaling: print(f"| {r['mb']} MB | {r['seconds']:.2f} | {r['s_per_mb']:.3f} | {r['peak_rss_mb']} |")
            print(f"s per MB, largest / smallest document: {scaling[-1]['s_per_mb']/scaling[0]['s_per_mb']:.2f} (1.00 = linear)")
        from results_io import write_results
        write_results('chunking', {'corpus_mb': round(size/1e6, 1), 'runs': a.runs, 'max_len': a.max_len, 'floor_seconds': round(floor, 2),
                                   'x_floor': {f'{w}_worker{"s" if w > 1 else ""}': round(med[f"full-{w}"]/floor, 2) for w in (1, 2)},
                                   'peak_rss_mb': round(info[1]['rss_self_mb']), 'peak_rss_half_corpus_mb': round(halfres['rss_self_mb']),
                                   'random_reads_per_s': round(rr), 'byte_identical_1_vs_2_workers': same, 'fill_ratio': round(info[1]['fill_ratio'], 3),
                                   'single_document': scaling,
                                   'single_document_s_per_mb_ratio': round(scaling[-1]['s_per_mb']/scaling[0]['s_per_mb'], 2) if scaling else None})

if __name__ == '__main__':
    main()
