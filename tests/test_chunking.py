"Tests of the chunking stage: splitter, packing (with a brute-force check of minimality), index writer/reader, legacy layout, CLI."
import json, os, pickle, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from knowlm_nb.core import DataFormatError
from knowlm_nb.chunking import (ChunkConfig, IndexedDataset, IndexedDatasetWriter, IndexFormatError, OverlongSentenceError,
                                as_tokenizer, chunk_corpus, chunk_document, chunk_texts, cli_chunk, index_dtype, merge_indexed,
                                min_chunks_bruteforce, mixture_indices, pack_sentences, read_knowlm_legacy, sentence_bounds,
                                split_sentences, token_bounds, write_knowlm_legacy)
from knowlm_nb.chunking import _whole_char_cut

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope='session')
def tk():
    from knowlm_nb.models import world_tokenizer
    return as_tokenizer(world_tokenizer().name_or_path)  # the cached directory, loaded without transformers


# ---------------------------------------------------------------- random zh/en documents
ZH = ['卡洛·仁米出生于萨托城', '他发明了蒸汽织机', '乔兰亚人说乔兰语', '赞纳城地处乔兰亚', '“走吧', '他说：“好', '1890年', '萨托研究所']
EN = ['Kalo Renmi was born in Sator', 'Dr. Renmi founded the Sator Institute', 'Pi is about 3.14', 'He paused',
      '"Go home', 'The U.S. Army', 'Wait... what', 'Xanna is located in Jolania']
ENDS_ZH = ['。', '！', '？', '；', '。”', '']
ENDS_EN = ['.', '!', '?', '."', '...', '']
SEPS = ['', ' ', '  ', '\n', '\n\n', ' \n ']

@st.composite
def documents(draw, max_sentences=12):
    n = draw(st.integers(1, max_sentences))
    parts = []
    for _ in range(n):
        if draw(st.booleans()): parts.append(draw(st.sampled_from(ZH)) * draw(st.integers(1, 3)) + draw(st.sampled_from(ENDS_ZH)))
        else: parts.append(' '.join([draw(st.sampled_from(EN))] * draw(st.integers(1, 3))) + draw(st.sampled_from(ENDS_EN)))
        parts.append(draw(st.sampled_from(SEPS)))
    text = ''.join(parts)
    return text if text.strip() else 'x.'


# ---------------------------------------------------------------- splitter
@settings(max_examples=300, **SETTINGS)
@given(documents(), st.sampled_from(['auto', 'zh', 'en']))
def test_split_keeps_every_character(text, lang):
    sents = split_sentences(text, lang)
    assert ''.join(sents) == text
    assert all(s for s in sents)
    b = sentence_bounds(text, lang)
    assert b[0] == 0 and b == sorted(set(b))
    assert all(not s.isspace() for s in sents) or len(sents) == 1


@settings(max_examples=200, **SETTINGS)
@given(st.text(max_size=200))
def test_split_any_unicode(text):
    assert ''.join(split_sentences(text)) == text


@pytest.mark.parametrize('text,expected', [
    ('他说：“走吧。”我们走了。', ['他说：“走吧。”', '我们走了。']),
    ('Mr. Smith left. He came back.', ['Mr. Smith left.', ' He came back.']),
    ('It is 3.14 m. Next one.', ['It is 3.14 m.', ' Next one.']),
    ('e.g. this stays. Two.', ['e.g. this stays.', ' Two.']),
    ('Really?! Yes.', ['Really?!', ' Yes.']),
    ('甲;乙', ['甲;', '乙']),
    ('a;b', ['a;b']),
    ('标题\n正文。', ['标题', '\n正文。']),
    ('He said "Go." Then he left.', ['He said "Go."', ' Then he left.']),
    ('Born in Sator.卡洛出生了。', ['Born in Sator.', '卡洛出生了。']),
])
def test_split_cases(text, expected):
    assert split_sentences(text) == expected


def test_split_bad_lang():
    with pytest.raises(ValueError, match='lang must be'): split_sentences('x', lang='fr')


# ---------------------------------------------------------------- packing on lengths
def allowed_cuts(lengths, max_len):
    starts = np.cumsum([0] + lengths).tolist()
    ok = set(starts)
    for s, L in zip(starts, lengths):
        if L > max_len: ok.update(range(s, s + L))
    return ok


@settings(max_examples=400, **SETTINGS)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=10), st.integers(1, 25))
def test_greedy_is_valid_exact_and_minimal(lengths, max_len):
    spans = pack_sentences(lengths, max_len)
    total = sum(lengths)
    assert spans[0][0] == 0 and spans[-1][1] == total
    assert all(b1 == a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))  # exact cover, no overlap
    assert all(0 < b - a <= max_len for a, b in spans)
    ok = allowed_cuts(lengths, max_len)
    assert all(b in ok for _, b in spans)  # sentence boundaries respected except inside over-long sentences
    assert len(spans) == min_chunks_bruteforce(lengths, max_len)


def test_bruteforce_is_independent_of_greedy():
    # hand-checked: [6, 6, 6] with window 12 needs 2 chunks; [7, 7, 7] needs 3; an over-long sentence tops up the chunk before it
    assert min_chunks_bruteforce([6, 6, 6], 12) == 2
    assert min_chunks_bruteforce([7, 7, 7], 12) == 3
    assert min_chunks_bruteforce([3, 25, 2], 10) == 3
    assert min_chunks_bruteforce([], 10) == 0


@settings(max_examples=200, **SETTINGS)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=10), st.integers(1, 25))
def test_overlong_drop_and_error(lengths, max_len):
    long = [L > max_len for L in lengths]
    if any(long):
        with pytest.raises(OverlongSentenceError, match='more than max_len'): pack_sentences(lengths, max_len, overlong='error')
    spans = pack_sentences(lengths, max_len, overlong='drop')
    starts = np.cumsum([0] + lengths)
    covered = sum(b - a for a, b in spans)
    assert covered == sum(L for L, x in zip(lengths, long) if not x)
    for a, b in spans:  # no chunk contains (part of) a dropped sentence
        assert all(not (a < starts[i + 1] and starts[i] < b) for i, x in enumerate(long) if x)


@settings(max_examples=300, **SETTINGS)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=12), st.integers(2, 25))
def test_knowlm_mode(lengths, max_len):
    spans = pack_sentences(lengths, max_len, mode='knowlm', zh=[i % 2 == 0 for i in range(len(lengths))])
    total = sum(lengths)
    assert all(0 < b - a <= max_len for a, b in spans)
    assert spans[-1][1] == total
    covered = set()
    for a, b in spans: covered.update(range(a, b))
    assert covered == set(range(total))  # knowlm overlaps, but before the length filter it also loses nothing
    assert all(a2 >= a1 for (a1, _), (a2, _) in zip(spans, spans[1:]))


def test_knowlm_overlaps_and_fills():
    assert pack_sentences([5, 3, 4, 6, 2, 9, 1], 10, mode='knowlm') == [(0, 8), (8, 18), (12, 20), (20, 30)]
    assert pack_sentences([25], 10, mode='knowlm', zh=[True]) == [(0, 9), (9, 17), (17, 25)]  # ceil(25/10)=3 equal pieces
    assert pack_sentences([25], 10, mode='knowlm', zh=[False]) == [(0, 10), (10, 20), (20, 25)]


def test_pack_bad_arguments():
    with pytest.raises(ValueError, match='max_len'): pack_sentences([3], 0)
    with pytest.raises(ValueError, match='mode'): pack_sentences([3], 5, mode='fast')
    assert pack_sentences([], 5) == []


# ---------------------------------------------------------------- chunking real text with the world tokenizer
@settings(max_examples=120, **SETTINGS)
@given(documents(max_sentences=16), st.integers(3, 60), st.booleans(), st.booleans())
def test_chunk_document_properties(tk, text, max_len, bos, eos):
    if max_len < bos + eos + 1: return
    cfg = ChunkConfig(max_len=max_len, bos=bos, eos=eos)
    chunks = chunk_document(text, tk, cfg)
    full = ([tk.bos_id] if bos else []) + tk.encode(text) + ([tk.eos_id] if eos else [])
    assert all(1 <= len(c) <= max_len for c in chunks)
    assert np.concatenate(chunks).tolist() == full  # exact cover of the document's own tokenization
    # sentence boundaries in tokens
    enc = tk.backend.encode(text, add_special_tokens=False)
    nb = int(bos)
    tb = [0] + [t + nb for t in token_bounds(enc, sentence_bounds(text))[1:]]
    lens = [b - a for a, b in zip(tb, tb[1:] + [len(full)])]
    ok = allowed_cuts(lens, max_len)
    cuts = np.cumsum([len(c) for c in chunks]).tolist()
    assert all(c in ok for c in cuts)
    whole = _whole_char_cut(enc, nb)
    if max_len >= 6:  # room to move a cut back past a character (<= 4 tokens) and off EOS; tinier windows may have to split one
        assert len(chunks) == min_chunks_bruteforce(lens, max_len, whole)  # fewest, among cuts that keep characters whole
        assert all(whole(c) for c in cuts)  # no character split between two chunks
        assert not (eos and len(chunks) > 1 and chunks[-1].tolist() == [tk.eos_id])  # no chunk of EOS alone
    else: assert len(chunks) >= min_chunks_bruteforce(lens, max_len)


@settings(max_examples=200, **SETTINGS)
@given(documents(max_sentences=16), st.integers(3, 60), st.booleans(), st.booleans())
def test_cut_lookups_equal_full_path(tk, text, max_len, bos, eos):
    "The default mode looks up sentence starts only around cuts; spans and over-long counts equal the full computation."
    from knowlm_nb.chunking import _greedy_spans, _plan
    if max_len < bos + eos + 1: return
    cfg = ChunkConfig(max_len=max_len, bos=bos, eos=eos)
    enc = tk.backend.encode(text, add_special_tokens=False)
    cb = sentence_bounds(text)
    n = len(enc.ids) + bos + eos
    if n <= max_len: return
    spans, lens = _plan(text, enc, cb, tk, cfg)
    assert _greedy_spans(enc, cb, int(bos), n, max_len, int(eos)) == (spans, sum(L > max_len for L in lens))


@settings(max_examples=150, **SETTINGS)
@given(documents(max_sentences=10), st.integers(3, 30), st.booleans(), st.booleans())
def test_knowlm_mode_reencodes_chinese_and_loses_nothing(tk, text, max_len, bos, eos):
    "knowlm mode: pieces (Chinese over-long sentences re-encoded from character slices) still decode to the document, chunks fit."
    from knowlm_nb.chunking import _spans, _union
    if max_len < bos + eos + 1: return
    cfg = ChunkConfig(max_len=max_len, bos=bos, eos=eos, mode='knowlm', tokenize='document')
    enc = tk.backend.encode(text, add_special_tokens=False)
    spans, n_long, stream = _spans(text, enc, sentence_bounds(text), tk, cfg)
    if stream is None: stream = ([tk.bos_id] if bos else []) + enc.ids + ([tk.eos_id] if eos else [])
    assert all(0 < b - a <= max_len for a, b in spans)
    assert _union(spans) == len(stream)  # before the length filter every token of the stream is in some chunk
    assert (stream[0] == tk.bos_id) == bos and (stream[-1] == tk.eos_id) == eos
    assert tk.decode(stream[int(bos):len(stream) - int(eos)]) == text  # slices re-encoded, nothing lost or changed


def test_token_bounds_match_sentences(tk):
    text = 'Kalo Renmi was born in Sator. She stayed.\n\n卡洛·仁米出生于萨托城。他走了。'
    enc = tk.backend.encode(text, add_special_tokens=False)
    tb = token_bounds(enc, sentence_bounds(text))
    pieces = [tk.decode(enc.ids[a:b]) for a, b in zip(tb, tb[1:] + [len(enc.ids)])]
    assert pieces == split_sentences(text)


def test_chunk_texts_stats(tk):
    texts = ['Kalo Renmi was born in Sator. He later invented the portable steam loom in 1850. ' * 10, '卡洛出生于萨托城。' * 30, 'Short.']
    tokens, lengths, doc_of, s = chunk_texts(texts, tk, ChunkConfig(max_len=32))
    assert s['documents'] == 3 and s['tokens'] == s['doc_tokens'] == len(tokens) == lengths.sum()
    assert s['dropped_tokens'] == s['duplicated_tokens'] == 0
    assert doc_of.tolist() == sorted(doc_of.tolist()) and set(doc_of.tolist()) == {0, 1, 2}
    _, _, _, k = chunk_texts(texts, tk, ChunkConfig(max_len=45, mode='knowlm'))
    assert k['duplicated_tokens'] > 0 and k['dropped_chunks'] >= 1  # 'Short.' (4 tokens) is under KnowLM's 21-token floor


def test_overlong_sentence_is_counted(tk):
    text = 'a' * 0 + ' '.join(['word'] * 200) + '. Short one.'
    _, lengths, _, s = chunk_texts([text], tk, ChunkConfig(max_len=50))
    assert s['overlong_sentences'] == 1 and lengths.max() <= 50
    with pytest.raises(OverlongSentenceError): chunk_texts([text], tk, ChunkConfig(max_len=50, overlong='error'))


def test_config_errors():
    with pytest.raises(ValueError, match='smaller than BOS\\+EOS'): ChunkConfig(max_len=2)
    with pytest.raises(ValueError, match='max_len'): ChunkConfig(max_len=0)
    with pytest.raises(ValueError, match='overlong'): ChunkConfig(overlong='cut')
    with pytest.raises(ValueError, match='min_len'): ChunkConfig(min_len=-1)


def test_tokenizer_without_bos(tk, tmp_path):
    from tokenizers import Tokenizer
    bare = Tokenizer.from_str(tk.backend.to_str())
    t = as_tokenizer(bare)
    assert t.bos_id == tk.bos_id  # found by name
    from knowlm_nb.chunking import ChunkTokenizer
    nobos = ChunkTokenizer(bare, None, tk.eos_id, tk.vocab_size, 'nobos')
    with pytest.raises(ValueError, match='no BOS'): chunk_texts(['Hi.'], nobos, ChunkConfig())
    assert chunk_texts(['Hi.'], nobos, ChunkConfig(bos=False))[1].tolist() == [len(tk.encode('Hi.')) + 1]


# ---------------------------------------------------------------- index: writer -> reader
@settings(max_examples=60, **SETTINGS)
@given(st.lists(st.lists(st.integers(0, 69999), min_size=1, max_size=40), min_size=0, max_size=30),
       st.sampled_from([100, 65536, 70000]), st.lists(st.sampled_from(['zh', 'en', 'code']), min_size=30, max_size=30))
def test_writer_reader_roundtrip(tmp_path, samples, vocab, srcs):
    samples = [[x % vocab for x in s] for s in samples]
    prefix = tmp_path/f'rt{vocab}_{len(samples)}'
    with IndexedDatasetWriter(prefix, vocab) as w:
        half = len(samples)//2
        for s, src in zip(samples[:half], srcs): w.add(s, source=src)
        rest = samples[half:]
        if rest: w.add_batch(np.concatenate([np.array(s) for s in rest]), [len(s) for s in rest], w.source_id('batch'))
    ds = IndexedDataset(prefix)
    assert len(ds) == len(samples)
    assert [x.tolist() for x in ds] == samples
    assert ds.dtype == index_dtype(vocab) == (np.uint16 if vocab <= 65536 else np.uint32)
    names = [ds.source_names[t] for t in ds.source_ids]
    assert names == list(srcs[:half]) + ['batch'] * len(samples[half:])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(f'.{prefix.name}')) == []  # no temp files left


def test_writer_rejects_bad_samples(tmp_path):
    w = IndexedDatasetWriter(tmp_path/'w', 10)
    with pytest.raises(ValueError, match='outside'): w.add([10])
    with pytest.raises(ValueError, match='between 1'): w.add([])
    with pytest.raises(ValueError, match='lengths sum'): w.add_batch([1, 2], [3])
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_writer_exception_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with IndexedDatasetWriter(tmp_path/'x', 100) as w:
            w.add([1, 2, 3]); raise RuntimeError('boom')
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_index(tmp_path):
    with IndexedDatasetWriter(tmp_path/'s', 1000) as w:
        for i in range(20): w.add(list(range(i, i + 5)), source='a' if i % 2 else 'b')
    return tmp_path/'s'


def test_truncated_bin(small_index):
    with open(f'{small_index}.bin', 'r+b') as f: f.truncate(50)
    with pytest.raises(IndexFormatError, match=r's\.bin: 50 bytes, expected 200.*truncated'): IndexedDataset(small_index)


def test_truncated_idx(small_index):
    size = os.path.getsize(f'{small_index}.idx')
    with open(f'{small_index}.idx', 'r+b') as f: f.truncate(size - 3)
    with pytest.raises(IndexFormatError, match=r'expected \d+ for 20 samples'): IndexedDataset(small_index)
    with open(f'{small_index}.idx', 'r+b') as f: f.truncate(10)
    with pytest.raises(IndexFormatError, match='too short'): IndexedDataset(small_index)


def test_mismatched_pair(small_index, tmp_path):
    with IndexedDatasetWriter(tmp_path/'other', 1000) as w: w.add([1, 2, 3])
    os.replace(tmp_path/'other.bin', f'{small_index}.bin')
    with pytest.raises(IndexFormatError, match='different runs'): IndexedDataset(small_index)


def test_bad_magic_version_and_corrupt_offsets(small_index):
    raw = bytearray(Path(f'{small_index}.idx').read_bytes())
    Path(f'{small_index}.idx').write_bytes(b'XXXXXXXX' + raw[8:])
    with pytest.raises(IndexFormatError, match='magic'): IndexedDataset(small_index)
    bad = raw.copy(); bad[8] = 9
    Path(f'{small_index}.idx').write_bytes(bad)
    with pytest.raises(IndexFormatError, match='version 9'): IndexedDataset(small_index)
    ds = IndexedDataset.__new__(IndexedDataset)
    Path(f'{small_index}.idx').write_bytes(raw)
    ds = IndexedDataset(small_index)
    off = len(raw) - 20*14  # starts begin here: corrupt sample 3's start
    bad = raw.copy(); bad[off + 3*8] += 1
    Path(f'{small_index}.idx').write_bytes(bad)
    with pytest.raises(IndexFormatError, match='sample 2 ends at token 15 but the next starts at 16'): IndexedDataset(small_index)
    assert len(IndexedDataset(small_index, verify=False)) == 20  # opening without the check is possible, on request


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='PREFIX.bin'): IndexedDataset(tmp_path/'none')


def test_random_access_and_torch(small_index):
    ds = IndexedDataset(small_index)
    assert ds[7].tolist() == list(range(7, 12)) and ds[-1].tolist() == list(range(19, 24))
    with pytest.raises(IndexError): ds[20]
    assert not ds[0].flags.writeable
    tds = ds.torch(as_dict=True)
    import torch
    assert isinstance(tds, torch.utils.data.Dataset) and len(tds) == 20
    item = tds[3]
    assert item['input_ids'].dtype == torch.int64 and item['input_ids'].tolist() == list(range(3, 8))
    t2 = pickle.loads(pickle.dumps(ds.torch()))  # DataLoader workers unpickle it by module path
    assert t2[4].tolist() == list(range(4, 9))
    batch = next(iter(torch.utils.data.DataLoader(ds.torch(), batch_size=4)))
    assert batch.shape == (4, 5)


def test_mixture(small_index):
    ds = IndexedDataset(small_index)
    idx = mixture_indices(ds, {'a': 3, 'b': 1}, 400, seed=1)
    names = np.array(ds.source_names)[ds.source_ids[idx]]
    assert (names == 'a').sum() == 300 and (names == 'b').sum() == 100
    counts_a = np.bincount(idx[names == 'a'], minlength=20)[1::2]
    assert counts_a.max() - counts_a.min() <= 1  # epochs: each 'a' sample used 30 times
    assert (mixture_indices(ds, {'a': 3, 'b': 1}, 400, seed=1) == idx).all()
    with pytest.raises(ValueError, match='unknown sources'): mixture_indices(ds, {'zz': 1}, 5)
    with pytest.raises(ValueError, match='positive sum'): mixture_indices(ds, {'a': 0}, 5)


# ---------------------------------------------------------------- legacy layout
@pytest.mark.parametrize('unit', ['tokens', 'bytes'])
def test_legacy_reader(tmp_path, unit):
    samples = [[1, 2, 3], [4], [5, 6], [7, 8, 9, 10]]
    p = tmp_path/'leg'
    (tmp_path/'leg.bin').write_bytes(np.concatenate([np.array(s, np.uint16) for s in samples]).tobytes())
    starts = np.cumsum([0] + [len(s) for s in samples[:-1]]).astype(np.uint64) * (2 if unit == 'bytes' else 1)
    (tmp_path/'leg.idx').write_bytes(starts.tobytes() + np.array([len(s) for s in samples], np.uint16).tobytes())
    ds = read_knowlm_legacy(p)
    assert ds._extra['unit'] == unit and [x.tolist() for x in ds] == samples
    assert pickle.loads(pickle.dumps(ds))[3].tolist() == samples[3]


def test_legacy_dis_file_gives_source_tags(tmp_path):
    "A .dis written by torch.save (as KnowLM did) becomes source tags; reading it never imports torch nor runs pickled code."
    import torch
    samples = [[1, 2], [3], [4, 5, 6], [7], [8, 9]]
    write_knowlm_legacy(tmp_path/'leg', samples)
    torch.save([3, 2], tmp_path/'leg.dis')  # KnowLM's own writer: a list of per-type counts
    code = (f"import sys; from knowlm_nb.chunking import read_knowlm_legacy; ds = read_knowlm_legacy({str(tmp_path/'leg')!r});"
            "print(ds.source_counts(), ds.source_ids.tolist(), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "{'type0': 3, 'type1': 2} [0, 0, 0, 1, 1] False"
    ds = read_knowlm_legacy(tmp_path/'leg', source_names=['zh', 'code'])
    assert pickle.loads(pickle.dumps(ds)).source_counts() == {'zh': 3, 'code': 2}
    torch.save([4, 2], tmp_path/'leg.dis')
    with pytest.raises(IndexFormatError, match=r'leg.dis: its counts \[4, 2\] sum to 6, but .*leg.idx holds 5 samples'): read_knowlm_legacy(tmp_path/'leg')
    torch.save({'a': torch.zeros(2)}, tmp_path/'leg.dis')
    with pytest.raises(IndexFormatError, match='expected a plain list of sample counts'): read_knowlm_legacy(tmp_path/'leg')
    (tmp_path/'leg.dis').write_bytes(pickle.dumps([3, 2]))  # a bare pickle, not torch's zip
    with pytest.raises(IndexFormatError, match='not a torch.save zip archive'): read_knowlm_legacy(tmp_path/'leg')
    (tmp_path/'leg.dis').unlink()
    assert read_knowlm_legacy(tmp_path/'leg').source_counts() == {'default': 5}


def test_legacy_errors(tmp_path):
    write_knowlm_legacy(tmp_path/'l', [[1, 2, 3], [4, 5]])
    with open(tmp_path/'l.bin', 'r+b') as f: f.truncate(6)
    with pytest.raises(IndexFormatError, match='sample 1 ends at token 5 but the .bin holds 3 tokens'): read_knowlm_legacy(tmp_path/'l')
    with open(tmp_path/'l.bin', 'r+b') as f: f.truncate(5)
    with pytest.raises(IndexFormatError, match='odd'): read_knowlm_legacy(tmp_path/'l')
    with open(tmp_path/'l.idx', 'r+b') as f: f.truncate(19)
    with pytest.raises(IndexFormatError, match='not a multiple of 10'): read_knowlm_legacy(tmp_path/'l')
    with pytest.raises(ValueError, match='uint16'): write_knowlm_legacy(tmp_path/'m', [[70000]])


def test_merge_ours_and_legacy(tmp_path, small_index):
    write_knowlm_legacy(tmp_path/'leg', [[9, 9], [8]])
    m = merge_indexed([small_index, tmp_path/'leg'], tmp_path/'merged')
    assert len(m) == 22 and m[20].tolist() == [9, 9] and m.source_counts() == {'b': 10, 'a': 10, 'type0': 2}
    m2 = merge_indexed([small_index, tmp_path/'leg'], tmp_path/'merged2', sources=['web', 'old'])
    assert m2.source_counts() == {'web': 20, 'old': 2}
    assert [x.tolist() for x in m2] == [x.tolist() for x in m]


# ---------------------------------------------------------------- corpus, workers, CLI
@pytest.fixture
def corpus(tmp_path):
    d = tmp_path/'in'; d.mkdir()
    from knowlm_nb.world import make_world
    from knowlm_nb.chunking import world_articles
    with open(d/'docs.jsonl', 'w', encoding='utf-8') as f:
        for a in world_articles(make_world(), per_article=8): f.write(json.dumps(a, ensure_ascii=False) + '\n')
    (d/'book.txt').write_text('第一章。他走了。\n\nChapter one. He left.\n\n\n\nThe end.\n', encoding='utf-8')
    return d


def test_workers_deterministic(tk, corpus, tmp_path):
    ins = [corpus/'docs.jsonl', corpus/'book.txt']
    s1 = chunk_corpus(ins, tk, tmp_path/'w1', ChunkConfig(max_len=64), workers=1, progress=False, batch_bytes=8000)
    s2 = chunk_corpus(ins, tk, tmp_path/'w2', ChunkConfig(max_len=64), workers=2, progress=False, batch_bytes=8000)
    for ext in ('.bin', '.idx'): assert (tmp_path/f'w1{ext}').read_bytes() == (tmp_path/f'w2{ext}').read_bytes()
    n_articles = sum(1 for _ in open(corpus/'docs.jsonl', encoding='utf-8'))
    assert s1['chunks'] == s2['chunks'] and s1['documents'] == n_articles + 3  # book.txt holds 3 blank-line-separated blocks
    ds = IndexedDataset(tmp_path/'w1')
    assert int(ds.lengths.max()) <= 64 and ds.n_tokens == s1['doc_tokens']
    assert json.loads((tmp_path/'w1.summary.json').read_text())['chunks'] == s1['chunks']


def test_cli_help(capsys):
    from dataclasses import fields
    from knowlm_nb.core import config_field_help
    assert cli_chunk(['--help']) == 0
    out = ' '.join(capsys.readouterr().out.split())
    assert 'usage: knowlm-nb chunk' in out
    helps = config_field_help(ChunkConfig)
    assert set(helps) == {f.name for f in fields(ChunkConfig)}, 'every field has a comment'
    for name, comment in helps.items():
        assert '--' + name.replace('_', '-') in out and ' '.join(comment.split()) in out, name
    for flag in ('--tokenizer', '--out', '--workers', '--field', '--source-field', '--errors', '--txt-unit', '--quiet', '--no-bos', '--no-eos',
                 '--config FILE', '--dry-run'):
        assert flag in out, flag


def test_cli_runs(tk, corpus, tmp_path, capsys):
    rc = cli_chunk([str(corpus/'docs.jsonl'), str(corpus/'book.txt'), '--tokenizer', tk.name, '--max-len', '128',
                    '--out', str(tmp_path/'o'), '--quiet', '--source-field', 'lang'])
    out = capsys.readouterr().out
    assert rc == 0
    for word in ('documents', 'sentences', 'chunks', 'tokens', 'fill ratio', 'dropped', 'longer than max_len'): assert word in out
    ds = IndexedDataset(tmp_path/'o')
    assert set(ds.source_names) == {'zh', 'en', 'book'}
    rc = cli_chunk([str(corpus/'docs.jsonl'), '--tokenizer', tk.name, '--max-len', '128', '--out', str(tmp_path/'k'), '--quiet', '--mode', 'knowlm'])
    assert rc == 0 and 'duplicated' in capsys.readouterr().out


def test_cli_bad_inputs(tk, tmp_path, capsys):
    bad = tmp_path/'bad.jsonl'
    bad.write_bytes(b'{"text": "Fine."}\n{"body": "no text"}\n{"text": "bad \xff"}\n{"text": ""}\n')
    rc = cli_chunk([str(bad), '--tokenizer', tk.name, '--out', str(tmp_path/'b'), '--quiet'])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.jsonl:2: missing field 'text'" in err and len(err.splitlines()) == 1
    assert not (tmp_path/'b.idx').exists() and not (tmp_path/'b.bin').exists()
    rc = cli_chunk([str(bad), '--tokenizer', tk.name, '--out', str(tmp_path/'b'), '--quiet', '--errors', 'skip'])
    out = capsys.readouterr().out
    assert rc == 0 and '1 chunked, 1 empty, 2 skipped as bad' in out and 'bad.jsonl:3: not UTF-8 (byte 14 of the line' in out
    rc = cli_chunk([str(bad), '--tokenizer', tk.name, '--out', str(tmp_path/'b'), '--field', 'body', '--quiet'])
    assert rc == 2 and "bad.jsonl:1: missing field 'body'" in capsys.readouterr().err
    txt = tmp_path/'bad.txt'; txt.write_bytes(b'ok line.\n\nbroken \xfe here\n')
    rc = cli_chunk([str(txt), '--tokenizer', tk.name, '--out', str(tmp_path/'t'), '--quiet'])
    assert rc == 2 and 'bad.txt: invalid UTF-8 at byte offset 17' in capsys.readouterr().err
    ws = tmp_path/'ws.txt'; ws.write_text('  \n\n \t\n')
    rc = cli_chunk([str(ws), '--tokenizer', tk.name, '--out', str(tmp_path/'w'), '--quiet'])
    assert rc == 2 and 'no chunks' in capsys.readouterr().err
    rc = cli_chunk([str(ws), str(txt), '--tokenizer', tk.name, '--out', str(tmp_path/'w'), '--quiet', '--errors', 'skip'])
    assert rc == 0 and 'ws.txt: no non-empty documents' in capsys.readouterr().out
    rc = cli_chunk([str(txt), '--tokenizer', tk.name, '--out', str(tmp_path/'w'), '--max-len', '2'])
    assert rc == 2 and 'smaller than BOS+EOS' in capsys.readouterr().err
    rc = cli_chunk([str(txt), '--tokenizer', tk.name, '--out', str(tmp_path/'w'), '--quiet', '--workers', '0'])
    assert rc == 2 and 'workers must be an int >= 1' in capsys.readouterr().err
    rc = cli_chunk([str(txt), '--tokenizer', str(tmp_path/'no-tokenizer'), '--out', str(tmp_path/'w'), '--quiet'])
    assert rc == 2 and 'no-tokenizer' in capsys.readouterr().err
    assert cli_chunk(['--no-such-flag']) == 2 and 'unrecognized arguments: --no-such-flag' in capsys.readouterr().err
    assert cli_chunk([str(txt), '--out', str(tmp_path/'w')]) == 2 and 'required: --tokenizer' in capsys.readouterr().err
    rc = cli_chunk([str(tmp_path/'nope.jsonl'), '--tokenizer', tk.name, '--out', str(tmp_path/'w'), '--quiet'])
    assert rc == 2 and 'does not exist' in capsys.readouterr().err
    (tmp_path/'x.csv').write_text('a')
    rc = cli_chunk([str(tmp_path/'x.csv'), '--tokenizer', tk.name, '--out', str(tmp_path/'w'), '--quiet'])
    assert rc == 2 and 'expected a .txt or .jsonl' in capsys.readouterr().err
    long = tmp_path/'long.txt'; long.write_text(' '.join(['word'] * 300) + '.')
    rc = cli_chunk([str(long), '--tokenizer', tk.name, '--out', str(tmp_path/'w'), '--quiet', '--max-len', '64', '--overlong', 'error'])
    assert rc == 2 and 'more than max_len=64' in capsys.readouterr().err


def test_pipeline_stage(tmp_path):
    from knowlm_nb.core import Report
    from knowlm_nb.chunking import pipeline_chunking
    ctx = {'out': tmp_path, 'seed': 0}
    rep = Report(tmp_path)
    pipeline_chunking(rep, ctx)
    ds = IndexedDataset(ctx['chunks_prefix'])
    assert len(ds) > 0 and set(ds.source_names) == {'zh', 'en'}
    assert rep.metrics['chunking']['chunks'] == len(ds)
    assert (tmp_path/'figures'/'chunk_lengths.png').exists()


def test_cli_lone_surrogate_names_the_line_and_can_be_skipped(tk, tmp_path, capsys):
    "JSON allows a lone surrogate escape (\\ud800); no tokenizer takes it: one line naming file and line, or skipped and counted."
    bad = tmp_path/'sur.jsonl'
    bad.write_text('{"text": "Fine."}\n{"text": "half \\ud800 pair"}\n{"text": "Also fine."}\n', encoding='utf-8')
    rc = cli_chunk([str(bad), '--tokenizer', tk.name, '--out', str(tmp_path/'s'), '--quiet'])
    err = capsys.readouterr().err
    assert rc == 2 and "sur.jsonl:2: field 'text' has a lone surrogate (U+D800 at character 5)" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path/'s.idx').exists()
    rc = cli_chunk([str(bad), '--tokenizer', tk.name, '--out', str(tmp_path/'s'), '--quiet', '--errors', 'skip'])
    assert rc == 0 and '2 chunked' in capsys.readouterr().out and (tmp_path/'s.idx').exists()


def test_verify_checks_token_ids_against_the_vocabulary(tmp_path):
    from knowlm_nb.chunking import IndexedDatasetWriter
    with IndexedDatasetWriter(tmp_path/'v', vocab_size=1000) as w:
        for k in range(5): w.add([1, 2, 3 + k])
    IndexedDataset(tmp_path/'v').verify(tokens=True)  # a sound pair passes
    raw = bytearray((tmp_path/'v.bin').read_bytes())
    raw[-2:] = (1000).to_bytes(2, 'little')
    (tmp_path/'v.bin').write_bytes(bytes(raw))
    with pytest.raises(IndexFormatError, match='token 14 has id 1000, outside the vocabulary of 1000'): IndexedDataset(tmp_path/'v').verify(tokens=True)


def test_legacy_dis_is_what_knowlm_writes(tmp_path):
    write_knowlm_legacy(tmp_path/'l', [[1, 2, 3], [4, 5], [6]])
    from knowlm_nb.chunking import read_knowlm_dis
    import torch
    assert read_knowlm_dis(tmp_path/'l.dis') == [3] == torch.load(tmp_path/'l.dis', weights_only=True)


def test_long_documents_chunk_in_linear_time(tk):
    "One 4 MB document chunks within 3x the time of four 1 MB documents (a char_to_token call per sentence made it quadratic)."
    import time
    from knowlm_nb.chunking import chunk_texts, ChunkConfig
    from knowlm_nb.world import make_world, ie_examples
    unit = ' '.join(e['text'] for e in ie_examples(make_world()))
    one = unit * (1_000_000 // len(unit.encode('utf-8')) + 1)
    def best(texts):
        out = []
        for _ in range(2):
            t0 = time.perf_counter()
            r = chunk_texts(texts, tk, ChunkConfig(max_len=1024))
            out.append(time.perf_counter() - t0)
        return min(out), r
    t_four, (tok4, len4, _, _) = best([one] * 4)
    t_long, (tok1, len1, _, _) = best([one * 4])
    assert len(tok1) >= len(tok4) - 8 and (len1 <= 1024).all()
    assert t_long <= 3 * t_four, f"4 MB in one document: {t_long:.2f}s; four 1 MB documents: {t_four:.2f}s"


@settings(max_examples=100, **SETTINGS)
@given(documents(max_sentences=16), st.integers(3, 60), st.booleans(), st.booleans())
def test_bulk_and_per_call_lookups_agree(tk, text, max_len, bos, eos):
    "Long documents map sentence starts all at once, short ones per call: both give the same spans and token bounds."
    import knowlm_nb.chunking as C
    enc = tk.backend.encode(text, add_special_tokens=False)
    cb = sentence_bounds(text)
    n = len(enc.ids) + bos + eos
    saved = C.BULK_TOKENS
    try:
        C.BULK_TOKENS = 10**12
        per_call = (C._greedy_spans(enc, cb, int(bos), n, max_len), token_bounds(enc, cb))
        C.BULK_TOKENS = 0
        bulk = (C._greedy_spans(enc, cb, int(bos), n, max_len), token_bounds(enc, cb))
    finally: C.BULK_TOKENS = saved
    assert bulk == per_call


# ---------------------------------------------------------------- long documents in windows
@settings(max_examples=80, **SETTINGS)
@given(documents(max_sentences=16), st.integers(1, 6), st.integers(48, 300), st.sampled_from([16, 32, 48]))
def test_windowed_encoding_is_the_whole_encoding(tk, sp_tk, text, reps, window, overlap):
    "Windows stitched where neighbours agree give the whole document's ids and offsets, or None (never a different tokenization)."
    from knowlm_nb.chunking import encode_windowed
    text = text * reps
    for t in (tk, sp_tk):
        whole = t.backend.encode(text, add_special_tokens=False)
        w = encode_windowed(t, text, window=window, overlap=overlap, group=3)
        if w is None: continue
        assert w.ids.tolist() == whole.ids
        assert w.offsets.tolist() == [list(o) for o in whole.offsets]


def test_long_documents_chunk_alike_in_windows(tk, sp_tk, monkeypatch):
    "With windows forced on every document, chunk_texts gives the same chunks as one encode per document."
    import knowlm_nb.chunking as C
    from knowlm_nb.world import make_world, ie_examples
    texts = [' '.join(e['text'] for e in ie_examples(make_world()))[:20000], '卡洛出生于萨托城。' * 500, 'Short.']
    for t in (tk, sp_tk):
        for cfg in (ChunkConfig(max_len=64), ChunkConfig(max_len=256, eos=False), ChunkConfig(max_len=64, mode='knowlm', tokenize='document')):
            ref = chunk_texts(texts, t, cfg)
            monkeypatch.setattr(C, 'STREAM_CHARS', 1000)
            monkeypatch.setattr(C, 'STREAM_OVERLAP', 256)
            encs = C.encode_documents(t, texts)
            assert isinstance(encs[0], C.WindowedEncoding) and isinstance(encs[1], C.WindowedEncoding)
            got = chunk_texts(texts, t, cfg)
            monkeypatch.undo()
            assert got[0].tolist() == ref[0].tolist() and got[1].tolist() == ref[1].tolist() and got[3] == ref[3]


# ---------------------------------------------------------------- a SentencePiece-style tokenizer ("▁" word prefix)
@pytest.fixture(scope='session')
def sp_tk():
    "A small BPE with a Metaspace pre-tokenizer (LLaMA's design: '▁' before words and before the text), trained on world text."
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    from knowlm_nb.world import make_world, pretrain_documents
    tok = Tokenizer(models.BPE(unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement='▁', prepend_scheme='first')
    tok.decoder = decoders.Metaspace(replacement='▁', prepend_scheme='first')
    texts = [d['text'] for d in pretrain_documents(make_world())] + ZH + EN + ENDS_ZH + ENDS_EN + ['；：“”，、（）!?;:.,"\'()…\n']
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=800, special_tokens=['<unk>', '<s>', '</s>'], show_progress=False))
    return as_tokenizer(tok)


def test_sentence_prefix_token(sp_tk, tk):
    from knowlm_nb.chunking import sentence_prefix_id, tokenize_batch
    p = sentence_prefix_id(sp_tk)
    assert p is not None and sp_tk.backend.id_to_token(p) == '▁' and sentence_prefix_id(tk) is None
    text = '卡洛出生于萨托城。他发明了蒸汽织机。乔兰亚人说乔兰语。'
    (sents, ids), = tokenize_batch(sp_tk, [text], ChunkConfig(mode='knowlm'))
    assert sents == ['卡洛出生于萨托城。', '他发明了蒸汽织机。', '乔兰亚人说乔兰语。'] and all(i[0] == p for i in ids)  # one '▁' per sentence
    keep = chunk_texts([text], sp_tk, ChunkConfig(mode='knowlm', min_len=1))
    drop = chunk_texts([text], sp_tk, ChunkConfig(mode='knowlm', min_len=1, sentence_prefix=False))
    assert keep[3]['tokens'] - drop[3]['tokens'] == 2  # the prefixes of sentences 2 and 3 (the first keeps it, as the whole text would)
    whole = chunk_texts([text], sp_tk, ChunkConfig())  # document tokenization: one prefix
    assert whole[3]['tokens'] == drop[3]['tokens']


def knowlm_reference(text, t, L, chinese, prefix):
    "KnowLM's pretrain/preprocess.py dsmt_encode + write, transcribed step by step (our English splitter stands in for punkt)."
    import math, re
    if chinese:
        sents = []
        for item in re.split(r"([;!?；？。！\n])", text):
            if not sents: sents.append(item)
            elif (len(item) == 1 and item in r"([;!?；？。！\n])") or item in ('\n', r'\n', ''): sents[-1] += item
            else: sents.append(item)
    else: sents = [x.strip() for x in split_sentences(text, 'en') if x.strip()]
    toks = []
    for i, snt in enumerate(sents):
        first, last = i == 0, i == len(sents) - 1
        cur = [t.bos_id] * first + t.encode(snt) + [t.eos_id] * last
        if len(cur) <= L:
            toks.append(cur)
            continue
        n_block = math.ceil(len(cur) / L)
        if not chinese:
            toks += [cur[k * L:(k + 1) * L] for k in range(n_block)]
            continue
        if len(cur) % L >= L * 0.8: n_block += 1
        per = math.ceil(len(snt) / n_block)
        for k in range(n_block):
            b = [t.bos_id] * (first and k == 0) + t.encode(snt[k * per:(k + 1) * per]) + [t.eos_id] * (last and k == n_block - 1)
            if b and b[0] == prefix: b = b[1:]
            toks.append(b)
    lens, out, i = [len(x) for x in toks], [], 0
    while i < len(lens):
        total, j = lens[i], i + 1
        while j < len(lens) and total + lens[j] <= L:
            total += lens[j]
            j += 1
        k, j = j, i
        while j - 1 >= 0 and total + lens[j - 1] <= L:
            total += lens[j - 1]
            j -= 1
        out.append([x for piece in toks[j:k] for x in piece])
        i = k
    # KnowLM stored a chunk longer than L whole and its loader read the first L tokens: we store those and the rest apart
    out = [c[x:x + L] for c in out for x in range(0, len(c), L)]
    return [c for c in out if len(c) > 20]


@settings(max_examples=120, **SETTINGS)
@given(documents(max_sentences=20), st.integers(1, 4), st.sampled_from([24, 32, 64]), st.sampled_from(['zh', 'en']), st.booleans())
def test_knowlm_mode_cuts_where_knowlm_cuts(tk, sp_tk, text, reps, L, lang, use_sp):
    "knowlm mode (per-sentence tokenization) writes the chunks KnowLM's script writes, with both kinds of tokenizer."
    from knowlm_nb.chunking import sentence_prefix_id
    t = sp_tk if use_sp else tk
    text = text * reps
    if not text.strip(): return
    drop = sentence_prefix_id(t) if use_sp else 29871  # KnowLM's literal id, or the tokenizer's own '▁'
    tokens, lengths, _, _ = chunk_texts([text], t, ChunkConfig(max_len=L, mode='knowlm', lang=lang, slice_prefix_id=drop))
    got = [c.tolist() for c in np.split(tokens, np.cumsum(lengths)[:-1])] if len(lengths) else []
    assert got == knowlm_reference(text, t, L, lang == 'zh', drop)


@settings(max_examples=60, **SETTINGS)
@given(documents(max_sentences=16), st.integers(4, 12), st.sampled_from([8, 24, 100]), st.booleans(), st.booleans())
def test_long_documents_are_cut_while_tokenized(tk, sp_tk, text, reps, max_len, bos, eos):
    "A long document cut as its windows arrive (a few windows held at a time) gives the spans and tokens of the whole-encoding path."
    import knowlm_nb.chunking as C
    text = text * reps
    cfg = ChunkConfig(max_len=max_len, bos=bos, eos=eos)
    for t in (tk, sp_tk):
        enc = t.backend.encode(text, add_special_tokens=False)
        cb = sentence_bounds(text)
        n = len(enc.ids) + bos + eos
        saved = (C.STREAM_CHARS, C.STREAM_OVERLAP)
        try:
            C.STREAM_CHARS, C.STREAM_OVERLAP = 120, 48
            r = C._greedy_long(text, cb, t, cfg)
        finally: C.STREAM_CHARS, C.STREAM_OVERLAP = saved
        if r is None: continue  # windows too short to agree: the caller tokenizes the document whole
        spans, arrays, n_long, n_r = r
        full = ([t.bos_id] if bos else []) + enc.ids + ([t.eos_id] if eos else [])
        if n <= max_len: assert spans == [(0, n)]
        else: assert (spans, n_long) == C._greedy_spans(enc, cb, int(bos), n, max_len, int(eos))
        assert n_r == n and [x.tolist() for x in arrays] == [full[a:b] for a, b in spans]


def test_long_document_memory_does_not_grow(tk):
    "Peak memory of cutting one long document stays near that of a document four times shorter (tracemalloc, Python and numpy)."
    import tracemalloc
    from knowlm_nb.world import make_world, ie_examples
    unit = ' '.join(e['text'] for e in ie_examples(make_world()))
    def peak(text):
        tracemalloc.start()
        chunk_texts([text], tk, ChunkConfig(max_len=1024))
        p = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return p - 2 * len(text)  # less what the text itself costs (UCS-2)
    small, big = peak(unit * 60), peak(unit * 240)  # about 1 and 4 MB
    assert big < 2 * small, f"{big/1e6:.0f} MB for a 4x longer document, {small/1e6:.0f} MB for the shorter"
