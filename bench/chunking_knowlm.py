"""knowlm mode beside KnowLM's own preprocessing script, on the same Chinese documents and the same SentencePiece model.

    python bench/chunking_knowlm.py --knowlm-script ../KnowLM/pretrain/preprocess.py

KnowLM's `pretrain/preprocess.py` (not shipped here: pass a checkout's copy) runs in its Chinese mode
(`--language chinese --do_split_sentences --do_keep_newlines`, one process) with Mistral-7B's 32k SentencePiece model
from the `mistral-common` wheel; `knowlm-nb chunk --mode knowlm --lang zh` runs on the same file with that model
converted to tokenizer.json. Both indexes are read back and compared chunk by chunk, at several windows.
Needs, for this bench only: pip install sentencepiece protobuf nltk && pip install --no-deps mistral-common
(KnowLM's script imports nltk and torch at the top even in Chinese mode; punkt's data is not needed there).

Documents: the world's Chinese articles (20 paragraphs each), the Tang poems in ../shared/data/poetry when present
(title and lines, one poem per document), and generated documents with the corner cases of KnowLM's splitter:
ASCII ;!? in Chinese text, runs of delimiters, a lone bracket between two delimiters, blank lines, and sentences
longer than the window (re-encoded from character slices).
"""
import argparse, json, random, subprocess, sys, tempfile
from difflib import SequenceMatcher
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

def documents(seed=0):
    "Chinese documents: world articles, Tang poems (if ../shared is there) and generated corner cases."
    from knowlm_nb.world import make_world
    from knowlm_nb.chunking import world_articles
    docs = [a['text'] for a in world_articles(make_world(), per_article=20) if a['lang'] == 'zh']
    shared = Path(__file__).resolve().parents[2]/'shared'/'data'/'poetry'/'tangshi300_quantangshi.json'
    poems = 0
    if shared.exists():
        for p in json.loads(shared.read_text(encoding='utf-8')):
            docs.append(p['title'] + '\n' + '\n'.join(p['paragraphs']))
            poems += 1
    rng = random.Random(seed)
    parts = ['卡洛·仁米出生于萨托城', '他发明了蒸汽织机', '乔兰亚人说乔兰语', 'Kalo Renmi was born in Sator', '“走吧', '1890年']
    ends = ['。', '！', '？', '；', ';', '!', '?', '。。', '！？', '。”', ';(;', '\n', '\n\n', '', '，']
    for _ in range(300):
        doc = ''.join(rng.choice(parts) * rng.randint(1, 12) + rng.choice(ends) for _ in range(rng.randint(1, 30)))
        if doc.strip(): docs.append(doc)
    return docs, poems

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--knowlm-script', required=True, help="KnowLM's pretrain/preprocess.py")
    p.add_argument('--windows', type=int, nargs='+', default=[32, 64, 256, 1024])
    a = p.parse_args()
    from chunking import llama_style_tokenizer
    from knowlm_nb.chunking import ChunkConfig, IndexedDataset, chunk_corpus, read_knowlm_legacy
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        hf, model = llama_style_tokenizer(d/'tok')
        if hf is None: sys.exit(model)
        docs, poems = documents()
        corpus = d/'zh.jsonl'
        corpus.write_text(''.join(json.dumps({'text': t}, ensure_ascii=False) + '\n' for t in docs), encoding='utf-8')
        print(f"{len(docs)} Chinese documents ({poems} Tang poems), {corpus.stat().st_size/1e6:.2f} MB; tokenizer {model}")
        print()
        print("| window | KnowLM's chunks | ours | identical to KnowLM's as its loader reads them (aligned in order) | KnowLM's tokens stored | read by its loader | ours | KnowLM's chunks longer than the window |")
        print("|---|---|---|---|---|---|---|---|")
        for w in a.windows:
            out = d/f'k{w}'
            out.mkdir()
            r = subprocess.run([sys.executable, str(Path(a.knowlm_script).resolve()), '--mode', 'write', '--language', 'chinese',
                                '--do_split_sentences', '--do_keep_newlines', '--file_path', str(corpus), '--tokenizer_path', str(model),
                                '--save_prefix', 'zh', '--save_path', f'{out}/', '--seq_length', str(w), '--num_workers', '1'],
                               capture_output=True, text=True, cwd=out)
            if r.returncode: sys.exit(f"KnowLM's script failed:\n{r.stderr[-3000:]}")
            ref = read_knowlm_legacy(out/'zh', verify=False)
            chunk_corpus([corpus], hf, d/f'o{w}', ChunkConfig(max_len=w, mode='knowlm', lang='zh'), progress=False)
            ours = IndexedDataset(d/f'o{w}')
            R, O = [ref[i].tolist() for i in range(len(ref))], [ours[i].tolist() for i in range(len(ours))]
            read = [x[:w] for x in R]  # what KnowLM's loader read: a stored chunk longer than the window was truncated
            blocks = SequenceMatcher(None, [tuple(x) for x in read], [tuple(x) for x in O], autojunk=False).get_matching_blocks()
            same = sum(b.size for b in blocks)  # chunks identical in both, in the same order (an alignment)
            rows.append({'window': w, 'knowlm_chunks': len(R), 'our_chunks': len(O), 'identical_in_order': same,
                         'knowlm_tokens': sum(map(len, R)), 'knowlm_tokens_read': sum(map(len, read)), 'our_tokens': sum(map(len, O)),
                         'knowlm_chunks_longer_than_window': sum(len(x) > w for x in R)})
            print(f"| {w} | {len(R):,} | {len(O):,} | {same:,} | {rows[-1]['knowlm_tokens']:,} | {rows[-1]['knowlm_tokens_read']:,} | {rows[-1]['our_tokens']:,} | {rows[-1]['knowlm_chunks_longer_than_window']:,} |", flush=True)
        from results_io import write_results
        write_results('chunking_knowlm', {'documents': len(docs), 'tang_poems': poems, 'tokenizer': model, 'windows': rows})

if __name__ == '__main__':
    main()
