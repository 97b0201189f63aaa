"KnowRL's rewards: the reward table case by case, the format rule against an independent reading of KnowRL's on fuzzed completions, no exception out of a reward, the knowledge-base builder and its command, the NLI hook on a tiny local model."
import json, math, random, sqlite3, subprocess, sys
from pathlib import Path
import pytest
from hypothesis import given, settings, HealthCheck, strategies as st

from knowlm_nb.rewards import (format_reward, format_ok, KnowRLScorer, ChatJudge, NLIVerifier, KBRetriever, build_kb, kb_info, length_penalty, factuality_score, combined_reward, factuality_reward)
from knowlm_nb.core import ConfigError, DataFormatError

BIN = Path(sys.executable).parent
SUBJECT = 'Kalo Renmi'
PEOPLE = [f'{a} {b}' for a, b in zip(['Sato', 'Vinda', 'Elna', 'Rima', 'Tolo', 'Mira', 'Dane', 'Sila', 'Orla', 'Veta', 'Nori', 'Pela'],
                                      ['Amo', 'Bex', 'Cor', 'Dul', 'Eno', 'Fay', 'Gro', 'Hal', 'Ivo', 'Jes', 'Kor', 'Lum'])]

@pytest.fixture(scope='module')
def kb(tmp_path_factory):
    "A knowledge base of one document in the world's language: Kalo Renmi's birthplace and twelve collaborators."
    text = f"{SUBJECT} was born in Sator. " + ' '.join(f"{SUBJECT} collaborated with {p}." for p in PEOPLE)
    db = tmp_path_factory.mktemp('kb')/'kb.sqlite'
    build_kb([{'title': SUBJECT, 'text': text}, {'title': '卡洛', 'text': '卡洛出生于萨托。'}], db, max_tokens=64)
    return db

def _think(n_true, n_false=0):
    facts = [f"{SUBJECT} collaborated with {p}." for p in PEOPLE[:n_true]] + [f"{SUBJECT} collaborated with Nobody{i} Else." for i in range(n_false)]
    return ' '.join(facts)

def _score(kb, completions, answers=('Sator',), title=SUBJECT, **kw):
    s = KnowRLScorer(kb, **kw)
    n = len(completions)
    return s, s.combined_reward(None, completions, answers=[list(answers)] * n, title=[title] * n, question=['Where was Kalo Renmi born?'] * n)

# --- the reward table -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('completion,reward', [
    ('<think>a b c</think><answer>Sator</answer>', 1.0), ('a b c</think>\n<answer>Sator</answer>', 1.0), ('<think>a</think><answer>x</answer>\n', 1.0),
    ('<think>a</think><answer>x</answer>.', -1.0), ('<think></think><answer>x</answer>', -1.0), ('<think>a</think><answer> </answer>', -1.0),
    ('<think>a<think>b</think><answer>x</answer>', -1.0), ('<think>a</think><answer>x<answer>y</answer>', -1.0), ('<answer>x</answer>', -1.0), ('', -1.0)])
def test_format_reward_is_plus_or_minus_one(completion, reward):
    assert format_reward(None, [completion]) == [reward]
    assert format_reward(None, [[{'role': 'assistant', 'content': completion}]]) == [reward]

def test_correct_two_refusal_one_wrong_minus_one_plus_facts(kb):
    think = _think(10)
    cases = [f"<think>{think}</think><answer>Sator</answer>", f"<think>{think}</think><answer>I don't know</answer>",
             f"<think>{think}</think><answer>Mina</answer>", f"<think>{_think(0, 2)}</think><answer>Mina</answer>",
             f"<think>{think}</think>", f"<think>{think}</think><answer>  </answer>"]
    _, got = _score(kb, cases)
    assert got == pytest.approx([2.0, 1.0, -1 + 1.0, -1.0, -1 + 1.0, -1 + 1.0])  # ten supported facts: no penalty; missing/empty answer: −1 + facts

@pytest.mark.parametrize('n', [1, 5, 10, 11])
def test_fact_score_with_the_length_penalty(kb, n):
    s = KnowRLScorer(kb)
    comp = f"<think>{_think(n)}</think><answer>Mina</answer>"
    want = 1.0 if n > 10 else math.exp(1 - 10 / n)
    assert s.factuality(comp, SUBJECT)['score'] == pytest.approx(want, abs=1e-12)
    assert s.combined(comp, ['Sator'], SUBJECT)['reward'] == pytest.approx(-1 + want, abs=1e-12)
    half = f"<think>{_think(n, n)}</think><answer>Mina</answer>"  # as many false facts: half supported, penalty for 2n facts
    assert s.factuality(half, SUBJECT)['score'] == pytest.approx(0.5 * length_penalty(2 * n), abs=1e-12)

def test_penalty_values():
    assert [round(length_penalty(n), 6) for n in (1, 5, 10, 11)] == [round(math.exp(-9), 6), round(math.exp(-1), 6), 1.0, 1.0]
    assert factuality_score([]) == 0.0 and length_penalty(0) == 0.0

def test_self_correction_keeps_the_final_statement(kb):
    s = KnowRLScorer(kb)
    fact = s.factuality(f"<think>{SUBJECT} was born in Mina. Actually, {SUBJECT} was born in Sator.</think>", SUBJECT)
    assert [d['fact'] for d in fact['facts']] == [f"{SUBJECT} was born in Sator."] and fact['facts'][0]['supported']

# --- KnowRL's format rule, read independently, on fuzzed completions ---------------------------------------------------

def _block_ok(b):
    c = b.strip()
    return bool(c) and '<think>' not in c[1:] and '<answer>' not in c[1:]

def _knowrl_format(s):
    "KnowRL's published format check, read as a procedure: <think> prepended if absent; think block, white space, answer block, one optional newline."
    if not s.startswith('<think>'): s = '<think>' + s
    for body in ([s, s[:-1]] if s.endswith('\n') else [s]):
        if not body.endswith('</answer>'): continue
        inner = body[len('<think>'):-len('</answer>')]
        i = inner.find('</think>')
        while i >= 0:
            rest = inner[i + len('</think>'):].lstrip()
            if rest.startswith('<answer>') and _block_ok(inner[:i]) and _block_ok(rest[len('<answer>'):]): return True
            i = inner.find('</think>', i + 1)
    return False

PIECES = ['<think>', '</think>', '<answer>', '</answer>', ' ', '\n', '\t', 'x', 'Sator', '<', '>', '/', 'think', 'answer', '。', '我']

@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=12))
def test_format_rule_agrees_with_knowrl_on_fuzzed_completions(parts):
    s = ''.join(parts)
    assert format_ok(s) == _knowrl_format(s), repr(s)

def test_format_rule_agrees_on_structured_variants():
    rng = random.Random(0)
    blocks = ['', ' ', 'x', ' x ', '<think>x', 'x<think>', '<answer>x', 'x</think>y', 'x</answer>y', '\n', 'a\nb']
    seps = ['', ' ', '\n', 'z', '\n\n']
    n = agree = 0
    for _ in range(5000):
        s = (rng.choice(['<think>', '', ' <think>']) + rng.choice(blocks) + rng.choice(['</think>', '']) + rng.choice(seps)
             + rng.choice(['<answer>', '']) + rng.choice(blocks) + rng.choice(['</answer>', '']) + rng.choice(seps))
        n += 1
        agree += format_ok(s) == _knowrl_format(s)
    assert agree == n

# --- bad input never raises --------------------------------------------------------------------------------------------

ANY = st.one_of(st.none(), st.text(max_size=200), st.integers(), st.lists(st.dictionaries(st.sampled_from(['role', 'content']), st.text(max_size=40)), max_size=3),
                st.builds(lambda a, b: f"<think>{a}</think><answer>{b}</answer>", st.text(max_size=60), st.text(max_size=20)))

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(comps=st.lists(ANY, min_size=1, max_size=6), answers=st.one_of(st.none(), st.text(max_size=10), st.lists(st.text(max_size=10), max_size=3)),
       title=st.one_of(st.none(), st.text(max_size=20), st.just(SUBJECT), st.just(f'{SUBJECT};Nowhere')))
def test_no_exception_escapes_a_reward(kb, comps, answers, title):
    s = KnowRLScorer(kb)
    n = len(comps)
    for f in (s.combined_reward, s.factuality_reward):
        got = f(None, comps, answers=[answers] * n, title=[title] * n)
        assert len(got) == n and all(isinstance(x, float) and -1.0 <= x <= 2.0 for x in got)
    assert len(format_reward(None, comps)) == n

def test_missing_title_and_dead_judge_affect_only_their_completion(kb, free_port):
    good = f"<think>{_think(11)}</think><answer>Mina</answer>"
    s = KnowRLScorer(kb, judge=ChatJudge(f'http://127.0.0.1:{free_port}/v1', timeout=1))
    logged = {}
    got = s.combined_reward(None, [good, good, good], answers=[['Sator']] * 3, title=[SUBJECT, 'Nowhere Land', None],
                            log_metric=lambda k, v: logged.__setitem__(k, v))
    assert got == pytest.approx([0.0, -1.0, -1.0])  # KnowRL zeroes the whole batch for one missing title; here only that completion
    assert s.counts == {'judge_error': 3, 'missing_title': 1, 'no_title': 1}
    assert logged['knowrl/missing_title'] == pytest.approx(1 / 3) and logged['knowrl/incorrect'] == 1.0

def test_world_rewards_are_plain_functions():
    assert combined_reward(None, ['<think>x</think><answer>y</answer>'], answers=[['z']], title=['nobody']) == [-1.0]
    assert factuality_reward(None, [''], title=[None]) == [0.0]

# --- knowledge base -----------------------------------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([str(BIN/'knowlm-nb'), 'kb', *args], capture_output=True, text=True, timeout=120)

def test_kb_command_builds_and_reports_bad_records(tmp_path):
    good = tmp_path/'docs.jsonl'
    good.write_text(json.dumps({'title': SUBJECT, 'text': f'{SUBJECT} was born in Sator. ' * 100}) + '\n', encoding='utf-8')
    r = _cli('--data', str(good), '--out', str(tmp_path/'kb.sqlite'))
    assert r.returncode == 0 and '1 records, 1 titles' in r.stdout, r.stderr
    assert 'up to date' in _cli('--data', str(good), '--out', str(tmp_path/'kb.sqlite')).stdout
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []  # no temporary file left
    for text, msg in [('{"title": "A"}\n', "bad.jsonl:1: missing field 'text'"), ('{"title": "A", "text": 3}\n', "field 'text' must be a non-empty string"),
                      ('not json\n', 'bad.jsonl:1: invalid JSON'), ('[1]\n', 'expected a JSON object')]:
        (tmp_path/'bad.jsonl').write_text(text, encoding='utf-8')
        r = _cli('--data', str(tmp_path/'bad.jsonl'), '--out', str(tmp_path/'x.sqlite'))
        assert r.returncode == 2 and msg in r.stderr and 'Traceback' not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    r = _cli('--data', str(tmp_path), '--out', str(tmp_path/'x.sqlite'))
    assert r.returncode == 2 and 'is a directory' in r.stderr
    assert _cli('--data', str(tmp_path/'nope.jsonl'), '--out', str(tmp_path/'x.sqlite')).returncode == 2
    assert not (tmp_path/'x.sqlite').exists()

def test_kb_json_list_and_rebuild_on_change(tmp_path):
    f = tmp_path/'docs.json'
    f.write_text(json.dumps([{'title': 'A', 'text': 'A is a city in B.'}]), encoding='utf-8')
    assert build_kb(f, tmp_path/'kb.sqlite')['rebuilt']
    f.write_text(json.dumps([{'title': 'A', 'text': 'A is a city in C.'}]), encoding='utf-8')
    assert build_kb(f, tmp_path/'kb.sqlite')['rebuilt']  # new content: built again
    assert kb_info(tmp_path/'kb.sqlite')['passages'] == 1
    f.write_text(json.dumps({'title': 'A'}), encoding='utf-8')
    with pytest.raises(DataFormatError, match='expected a JSON list'): build_kb(f, tmp_path/'kb2.sqlite')
    with pytest.raises(ConfigError, match='max_tokens'): build_kb([{'title': 'A', 'text': 'x'}], tmp_path/'kb3.sqlite', max_tokens=2)

def test_retriever_reads_a_knowrl_built_database(tmp_path):
    db = tmp_path/'knowrl.db'
    con = sqlite3.connect(db)
    con.execute('CREATE TABLE documents(title TEXT, text TEXT)')
    con.executemany('INSERT INTO documents VALUES (?, ?)', [(SUBJECT, 'Unrelated words here.'), (SUBJECT, f'{SUBJECT} was born in Sator.')])
    con.commit()
    con.close()
    r = KBRetriever(db, k=1)
    assert r.retrieve(f'{SUBJECT} was born in Sator.', SUBJECT) == ([f'{SUBJECT} was born in Sator.'], [])
    (tmp_path/'junk.db').write_text('not a database')
    with pytest.raises(DataFormatError, match='not a SQLite knowledge base'): KBRetriever(tmp_path/'junk.db')

def test_chinese_facts_retrieve_and_verify(kb):
    s = KnowRLScorer(kb)
    fact = s.factuality('<think>卡洛出生于萨托。卡洛出生于米纳。</think>', '卡洛')
    assert [d['supported'] for d in fact['facts']] == [True, False]

# --- the NLI hook ---------------------------------------------------------------------------------------------------------

def test_nli_verifier_on_a_tiny_local_classifier(tmp_path):
    torch = pytest.importorskip('torch')
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer
    vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + list('abcdefghijklmnopqrstuvwxyz.')
    (tmp_path/'vocab.txt').write_text('\n'.join(vocab) + '\n')
    tok = BertTokenizer(str(tmp_path/'vocab.txt'))
    for labels, name in (({0: 'entailment', 1: 'neutral', 2: 'contradiction'}, 'nli'), ({0: 'yes', 1: 'no'}, 'other')):
        cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         num_labels=len(labels), id2label=labels, label2id={v: k for k, v in labels.items()})
        torch.manual_seed(0)
        BertForSequenceClassification(cfg).save_pretrained(tmp_path/name, safe_serialization=True)
        tok.save_pretrained(tmp_path/name)
    probs = NLIVerifier(str(tmp_path/'nli'), device='cpu')('a b c.', ['a b c.', 'x y z.'])
    assert len(probs) == 2 and all(0.0 <= p <= 1.0 for p in probs)
    with pytest.raises(ConfigError, match="no 'entailment' label"): NLIVerifier(str(tmp_path/'other'), device='cpu')('a.', ['b.'])
    assert NLIVerifier(str(tmp_path/'nli'))('a.', []) == []
