"""Benchmark of the chunking stage, printed as tables in one run.

    python bench/chunking.py            # a 50 MB zh+en corpus from the toy world, both tokenizers
    python bench/chunking.py --mb 10    # quicker

Two tokenizers: the world tokenizer (byte-level BPE, 1,359 ids) and a LLaMA-design SentencePiece tokenizer, Mistral-7B's
32k model (`tokenizer.model.v1`, shipped in the `mistral-common` wheel) converted to `tokenizer.json` by transformers.
Its extra packages are bench-only:  pip install sentencepiece protobuf && pip install --no-deps mistral-common
(without them the LLaMA-style rows are skipped and say so). The bench checks the conversion against SentencePiece itself.

Measures, as medians of --runs rounds (each round runs every measurement once, so drift hits them alike):
  floor        : tokenize only: HF `tokenizers` encode_batch (+ ids) of the texts already in memory, in the same 1 MB
                 batches, on every core (the Rust default); also with one thread, to show what the cores give
  full-1 @ W   : `chunk_corpus` from the .jsonl file to the .bin/.idx pair with 1 worker at window W (--windows)
  full-2       : the same with 2 worker processes at the largest window
Every run happens in a fresh subprocess that reports its own peak RSS (VmHWM; and its workers'). Then: a run on the first half
of the corpus (does peak RSS grow with the corpus?), 10k random reads from the index, single documents of 1, 4 and
16 MB (--scaling-mb; time and peak RSS must not grow faster than the document), and on the English documents the
share where our sentence splitter and punkt could differ (KnowLM split English with punkt, which cannot be
installed offline).
"""
import argparse, importlib.util, json, os, re, shutil, subprocess, sys, tempfile
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
def peak_mb():  # this process's own peak (VmHWM): ru_maxrss would also count the parent's RSS at fork, carried over the exec
    try: return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))/1024
    except (OSError, StopIteration): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024
print(json.dumps({'seconds': dt, 'rss_self_mb': peak_mb(),
                  'rss_children_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024,
                  'chunks': s['chunks'], 'tokens': s['tokens'], 'documents': s['documents'], 'fill_ratio': s['fill_ratio']}))
'''

FLOOR = r'''
import json, sys, time
from tokenizers import Tokenizer
a = json.loads(sys.argv[1])
tok = Tokenizer.from_file(a['tokenizer'] + '/tokenizer.json')
batches, cur, nb = [], [], 0
with open(a['input'], encoding='utf-8') as f:  # read and batched beforehand: not timed
    for line in f:
        cur.append(json.loads(line)['text']); nb += len(line)
        if nb >= 1 << 20: batches.append(cur); cur, nb = [], 0
if cur: batches.append(cur)
t0 = time.perf_counter(); n = 0
for b in batches: n += sum(len(e.ids) for e in tok.encode_batch(b, add_special_tokens=False))
print(json.dumps({'seconds': time.perf_counter() - t0, 'tokens': n}))
'''

def make_corpus(path, mb, seed=0):
    "World articles (20 paragraphs each, zh and en), repeated line by line until the file first holds >= `mb` MB."
    from knowlm_nb.world import WorldConfig, make_world
    from knowlm_nb.chunking import world_articles
    world = make_world(WorldConfig(seed=seed, n_people=2000, n_orgs=200, n_inventions=120, collaborations=800, doc_repeats=4))
    arts = world_articles(world, per_article=20)
    by = [[a for a in arts if a['lang'] == lang] for lang in ('zh', 'en')]
    mixed = [a for pair in zip(*by) for a in pair] + by[0][len(by[1]):] + by[1][len(by[0]):]  # zh and en alternate
    lines = [(json.dumps(a, ensure_ascii=False) + '\n').encode('utf-8') for a in mixed]
    size, n, target = 0, 0, int(mb * 1e6)
    with open(path, 'wb') as f:
        while size < target:
            line = lines[n % len(lines)]
            f.write(line)
            size += len(line)
            n += 1
    return size, n

def first_half(src, dst):
    "The first lines of `src` holding half its bytes (to the nearest line)."
    data = Path(src).read_bytes()
    cut = data.index(b'\n', len(data) // 2) + 1
    Path(dst).write_bytes(data[:cut])
    return cut

def llama_style_tokenizer(out_dir):
    "Mistral-7B's SentencePiece model from the mistral-common wheel, converted to tokenizer.json; (directory, note) or (None, why not)."
    spec = importlib.util.find_spec('mistral_common')
    if spec is None or importlib.util.find_spec('sentencepiece') is None:
        return None, "skipped: pip install sentencepiece protobuf && pip install --no-deps mistral-common"
    model = Path(spec.submodule_search_locations[0])/'data'/'tokenizer.model.v1'
    if not model.exists(): return None, f"skipped: {model} not in this mistral-common version"
    src = Path(out_dir)/'spm'
    src.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, src/'tokenizer.model')
    from transformers import LlamaTokenizer
    LlamaTokenizer.from_pretrained(str(src)).save_pretrained(str(Path(out_dir)/'hf'))
    return Path(out_dir)/'hf', str(model)

def sentencepiece_parity(hf_dir, model, path, n=2000):
    "Share of the corpus's first `n` documents that the converted tokenizer encodes exactly as SentencePiece does."
    import sentencepiece as spm
    from tokenizers import Tokenizer
    sp, hf = spm.SentencePieceProcessor(model_file=str(model)), Tokenizer.from_file(str(hf_dir/'tokenizer.json'))
    with open(path, encoding='utf-8') as f: texts = [json.loads(line)['text'] for line, _ in zip(f, range(n))]
    same = sum(sp.encode(t) == e.ids for t, e in zip(texts, hf.encode_batch(texts, add_special_tokens=False)))
    return same / len(texts)

def floor_run(tokenizer_dir, path, threads=None):
    env = dict(os.environ, **({'RAYON_NUM_THREADS': str(threads)} if threads else {}))
    r = subprocess.run([sys.executable, '-c', FLOOR, json.dumps({'input': str(path), 'tokenizer': str(tokenizer_dir)})],
                       capture_output=True, text=True, env=env)
    if r.returncode: sys.exit(f"floor run failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])

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
    import time
    from knowlm_nb.chunking import IndexedDataset
    ds = IndexedDataset(prefix)
    idx = np.random.default_rng(seed).integers(0, len(ds), n).tolist()
    t0 = time.perf_counter(); s = 0
    for i in idx: s += len(ds[i])
    return n / (time.perf_counter() - t0), len(ds)

_CANDIDATE = re.compile(r'([.!?]["\')\]]*)\s+(?=[A-Z])')  # where any splitter would consider a sentence end

def splitter_disagreements(path):
    "English documents where our splitter's choice is one punkt could make differently: a split at a line break without "
    "an end mark (punkt does not split there), or a period before a capital that we keep (an abbreviation or initial: "
    "punkt decides from what it learned). Returns (documents, documents with either)."
    from knowlm_nb.chunking import sentence_bounds
    docs = hits = 0
    with open(path, encoding='utf-8') as f:
        seen = set()
        for line in f:
            r = json.loads(line)
            if r['lang'] != 'en' or r['text'] in seen: continue  # the corpus repeats its articles: count each once
            seen.add(r['text'])
            t, docs = r['text'], docs + 1
            b = set(sentence_bounds(t, 'en'))
            at_break = any(t[k] == '\n' and not re.search(r'[.!?]["\')\]]*[ \t]*$', t[max(0, k - 8):k]) for k in b if k)
            kept = any(m.end(1) not in b for m in _CANDIDATE.finditer(t))
            hits += at_break or kept
    return docs, hits

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--mb', type=float, default=50, help='corpus size in MB (default 50)')
    p.add_argument('--runs', type=int, default=3, help='rounds (default 3)')
    p.add_argument('--windows', type=int, nargs='+', default=[256, 1024], help='max_len values for 1 worker (default 256 1024)')
    p.add_argument('--scaling-mb', type=float, nargs='*', default=[1, 4, 16], help='single-document sizes in MB (default 1 4 16; none: skip)')
    a = p.parse_args()
    from knowlm_nb.models import world_tokenizer
    W2 = max(a.windows)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        toks = {'world': Path(world_tokenizer().name_or_path)}
        llama, note = llama_style_tokenizer(d/'llama')
        if llama is not None: toks['llama-style'] = llama
        size, ndocs = make_corpus(d/'corpus.jsonl', a.mb)
        half = first_half(d/'corpus.jsonl', d/'half.jsonl')
        parity = sentencepiece_parity(llama, note, d/'corpus.jsonl') if llama is not None else None
        print(f"corpus: {size/1e6:.1f} MB ({ndocs:,} zh+en articles of 20 world paragraphs), half {half/1e6:.1f} MB; "
              f"{os.cpu_count()} CPU cores; python {sys.version.split()[0]}")
        print(f"tokenizers: world (byte-level BPE, {len(world_tokenizer())} ids); llama-style: "
              + (f"Mistral-7B 32k SentencePiece ({note}), converted; same ids as SentencePiece on {parity:.1%} of the first 2,000 documents"
                 if llama is not None else note), flush=True)
        T, info = {}, {}
        for r in range(a.runs):
            line = []
            for name, td in toks.items():
                for key, fn in [('floor', lambda: floor_run(td, d/'corpus.jsonl')), ('floor-1thread', lambda: floor_run(td, d/'corpus.jsonl', 1))]:
                    res = fn()
                    T.setdefault((name, key), []).append(res['seconds'])
                    info[(name, key)] = res
                for w in a.windows:
                    res = full_run(td, d/'corpus.jsonl', d/f'{name}-{w}-1', 1, w)
                    T.setdefault((name, f'full-1@{w}'), []).append(res['seconds'])
                    info[(name, f'full-1@{w}')] = res
                res = full_run(td, d/'corpus.jsonl', d/f'{name}-{W2}-2', 2, W2)
                T.setdefault((name, f'full-2@{W2}'), []).append(res['seconds'])
                info[(name, f'full-2@{W2}')] = res
                line.append(f"{name}: floor {T[(name, 'floor')][-1]:.2f}s " + ' '.join(f"{k.split('@')[0]}@{k.split('@')[1]} {v[-1]:.2f}s"
                                                                                     for (n_, k), v in T.items() if n_ == name and '@' in k))
            print(f"  round {r + 1}: " + '; '.join(line), flush=True)
        med = {k: float(np.median(v)) for k, v in T.items()}
        figures = {}
        print()
        print(f"| tokenizer | measurement | median of {a.runs} (s) | MB/s | tokens/s | x floor | peak RSS (MB) |")
        print("|---|---|---|---|---|---|---|")
        for name in toks:
            floor = med[(name, 'floor')]
            ntok = info[(name, 'floor')]['tokens']
            f = figures[name] = {'floor_seconds': round(floor, 2), 'floor_1_thread_seconds': round(med[(name, 'floor-1thread')], 2),
                                 'tokens': ntok, 'x_floor': {}}
            print(f"| {name} | tokenize only, all cores (floor) | {floor:.2f} | {size/1e6/floor:.2f} | {ntok/floor:,.0f} | 1.00 | - |")
            f1 = med[(name, 'floor-1thread')]
            print(f"| {name} | tokenize only, 1 thread | {f1:.2f} | {size/1e6/f1:.2f} | {ntok/f1:,.0f} | {f1/floor:.2f} | - |")
            for key in [f'full-1@{w}' for w in a.windows] + [f'full-2@{W2}']:
                m, res = med[(name, key)], info[(name, key)]
                wk, win = key.split('@')
                workers = int(wk[-1])
                rss = f"{res['rss_self_mb']:.0f}" + (f" (+ workers {res['rss_children_mb']:.0f} each)" if workers > 1 else '')
                print(f"| {name} | chunk + index, window {win}, {workers} worker{'s' if workers > 1 else ''} | {m:.2f} | {size/1e6/m:.2f} | "
                      f"{res['tokens']/m:,.0f} | {m/floor:.2f} | {rss} |")
                f['x_floor'][f"{workers}_worker{'s' if workers > 1 else ''}_window_{win}"] = round(m/floor, 2)
                f.setdefault('fill_ratio', {})[f'window_{win}'] = res['fill_ratio']
            f['peak_rss_mb'] = round(info[(name, f'full-1@{W2}')]['rss_self_mb'])
        same = all((d/f'{n}-{W2}-1.bin').read_bytes() == (d/f'{n}-{W2}-2.bin').read_bytes() and
                   (d/f'{n}-{W2}-1.idx').read_bytes() == (d/f'{n}-{W2}-2.idx').read_bytes() for n in toks)
        halfres = full_run(toks['world'], d/'half.jsonl', d/'half', 1, W2)
        reads = [random_reads(d/f'world-{W2}-1', seed=s) for s in range(a.runs)]
        rr = float(np.median([x[0] for x in reads]))
        print()
        print(f"1 and 2 workers byte-identical (both tokenizers, window {W2}): {same}")
        print(f"peak RSS, world tokenizer, window {W2}: {figures['world']['peak_rss_mb']} MB on the corpus, "
              f"{halfres['rss_self_mb']:.0f} MB on its first half")
        print(f"random reads: {rr:,.0f} samples/s (median of {a.runs} x 10,000 uniform random indices, ds[i] as a numpy view)")
        scaling = []
        for mb in a.scaling_mb:
            sz = single_document(d/f'single{mb}.jsonl', mb)
            res = full_run(toks['world'], d/f'single{mb}.jsonl', d/f'outs{mb}', 1, W2)
            scaling.append({'mb': round(sz/1e6, 1), 'seconds': round(res['seconds'], 2), 's_per_mb': round(res['seconds']/(sz/1e6), 3),
                            'peak_rss_mb': round(res['rss_self_mb']), 'tokens': res['tokens']})
        if scaling:
            print()
            print(f"| one document of | seconds (world tokenizer, window {W2}, 1 worker, 1 run) | s per MB | peak RSS (MB) |")
            print("|---|---|---|---|")
            for r in scaling: print(f"| {r['mb']} MB | {r['seconds']:.2f} | {r['s_per_mb']:.3f} | {r['peak_rss_mb']} |")
            print(f"s per MB, largest / smallest document: {scaling[-1]['s_per_mb']/scaling[0]['s_per_mb']:.2f} (1.00 = linear)")
        en_docs, en_hits = splitter_disagreements(d/'corpus.jsonl')
        print()
        print(f"English documents where punkt could split differently from us: {en_hits} of {en_docs} distinct ones")
        from results_io import write_results
        write_results('chunking', {'corpus_mb': round(size/1e6, 1), 'half_corpus_mb': round(half/1e6, 1), 'runs': a.runs, 'windows': a.windows,
                                   'tokenizers': figures, 'llama_style_tokenizer': note,
                                   'sentencepiece_parity': None if parity is None else round(parity, 4),
                                   'peak_rss_half_corpus_mb': round(halfres['rss_self_mb']),
                                   'random_reads_per_s': round(rr), 'byte_identical_1_vs_2_workers': same,
                                   'single_document': scaling,
                                   'single_document_s_per_mb_ratio': round(scaling[-1]['s_per_mb']/scaling[0]['s_per_mb'], 2) if scaling else None,
                                   'english_documents': en_docs, 'english_documents_punkt_may_differ': en_hits})

if __name__ == '__main__':
    main()
