"Information extraction: a table of broken outputs with their expected parses, random strings never raise, hand-counted F1, builder rules, the command's bad input, IEPile's record format end to end."
import json, subprocess, sys
from pathlib import Path
import pytest
from hypothesis import given, settings, strategies as st

from knowlm_nb.ie import (parse_output, score_records, split_schema, sample_negatives, check_schema, world_ie_records, answer_for, parse_tuples,
                          read_ie_records, TASKS, SchemaError, ie_prompt)

BIN = Path(sys.executable).parent
NER = ['person', 'city']
RE_ = ['born_in', 'works_for']
EE = [{'event_type': 'Birth', 'arguments': ['person', 'place']}]
E = {'person': [], 'city': []}

# (output, task, schema, expected result in repaired mode (None: unreadable), readable in strict mode)
BROKEN = [
    ('{"person": ["Kalo"], "city": ["Sator"]}', 'NER', NER, {'person': ['Kalo'], 'city': ['Sator']}, True),
    ("{'person': ['Kalo'], 'city': []}", 'NER', NER, {'person': ['Kalo'], 'city': []}, False),
    ('{"person": ["Kalo",], "city": [],}', 'NER', NER, {'person': ['Kalo'], 'city': []}, False),
    ('{"person": ["Kalo"], "city": ["Sat', 'NER', NER, {'person': ['Kalo'], 'city': ['Sat']}, False),
    ('Answer: {"person": ["Kalo"], "city": []} Hope this helps.', 'NER', NER, {'person': ['Kalo'], 'city': []}, False),
    ('```json\n{"person": ["Kalo"], "city": []}\n```', 'NER', NER, {'person': ['Kalo'], 'city': []}, False),
    ('{“person”：[“Kalo”]，“city”：[]}', 'NER', NER, {'person': ['Kalo'], 'city': []}, False),
    ('{"person": "Kalo", "city": []}', 'NER', NER, {'person': ['Kalo'], 'city': []}, True),
    ('{"person": ["Kalo"]}', 'NER', NER, {'person': ['Kalo'], 'city': []}, True),
    ('{"Person": ["Kalo"], "City": ["Sator"]}', 'NER', NER, {'person': ['Kalo'], 'city': ['Sator']}, True),
    ('{"person": ["Kalo"], "country": ["Jolania"], "city": []}', 'NER', NER, {'person': ['Kalo'], 'city': []}, True),
    ('{"person": ["Kalo", 3, null, ["x"]], "city": []}', 'NER', NER, {'person': ['Kalo', '3'], 'city': []}, True),
    ('{"person": "NAN", "city": "NAN"}', 'NER', NER, E, True),
    ('{"person": null, "city": []}', 'NER', NER, E, True),
    ('{}', 'NER', NER, E, True),
    ('[{"person": ["Kalo"]}]', 'NER', NER, {'person': ['Kalo'], 'city': []}, False),
    ('', 'NER', NER, None, False),
    ('I cannot find any entities.', 'NER', NER, None, False),
    ('null', 'NER', NER, None, False),
    ('"person"', 'NER', NER, None, False),
    ('{"person": ["Kalo"], "city": ["Sator"]} {"person": ["Mina"]}', 'NER', NER, {'person': ['Kalo'], 'city': ['Sator']}, False),
    ('｛"person": ["Kalo"]｝', 'NER', NER, {'person': ['Kalo'], 'city': []}, False),
    ('{"born_in": [{"subject": "Kalo", "object": "Sator"}], "works_for": []}', 'RE', RE_, {'born_in': [{'subject': 'Kalo', 'object': 'Sator'}], 'works_for': []}, True),
    ('{"born_in": [{"head": "Kalo", "tail": "Sator"}], "works_for": []}', 'RE', RE_, {'born_in': [{'subject': 'Kalo', 'object': 'Sator'}], 'works_for': []}, True),
    ('{"born_in": [{"subject": "Kalo"}], "works_for": []}', 'RE', RE_, {'born_in': [], 'works_for': []}, True),
    ('{"born_in": ["Kalo, Sator"], "works_for": []}', 'RE', RE_, {'born_in': [], 'works_for': []}, True),
    ('{"born_in": {"subject": "Kalo", "object": "Sator"}}', 'RE', RE_, {'born_in': [{'subject': 'Kalo', 'object': 'Sator'}], 'works_for': []}, True),
    ('{"born_in": [{"subject": "Kalo", "object": "Sator"}', 'RE', RE_, {'born_in': [{'subject': 'Kalo', 'object': 'Sator'}], 'works_for': []}, False),
    ('{"Birth": [{"trigger": "born", "arguments": {"person": "Kalo", "place": "NAN"}}]}', 'EE', EE,
     {'Birth': [{'trigger': 'born', 'arguments': {'person': 'Kalo', 'place': 'NAN'}}]}, True),
    ('{"Birth": [{"trigger": "born", "arguments": {"person": ["Kalo", "Mina"], "place": 5}}]}', 'EE', EE,
     {'Birth': [{'trigger': 'born', 'arguments': {'person': ['Kalo', 'Mina'], 'place': 'NAN'}}]}, True),
    ('{"Birth": [{"trigger": "born", "arguments": "Kalo"}]}', 'EE', EE, {'Birth': []}, True),
    ('{"Birth": [{"trigger": 3, "arguments": {}}]}', 'EE', EE, {'Birth': []}, True),
    ('{"Birth": [{"person": "Kalo", "place": "Sator"}]}', 'EEA', EE, {'Birth': [{'person': 'Kalo', 'place': 'Sator'}]}, True),
    ('{"Birth": "NAN"}', 'EEA', EE, {'Birth': []}, True),
]

def test_table_is_big_enough():
    assert len(BROKEN) >= 30

@pytest.mark.parametrize('output,task,schema,want,strict_ok', BROKEN, ids=[f'{i}' for i in range(len(BROKEN))])
def test_broken_outputs_parse_as_expected(output, task, schema, want, strict_ok):
    r = parse_output(output, task, schema, 'repaired')
    assert r.result == want, r.notes
    if strict_ok and want is not None and want != json.loads(output): assert r.notes  # every change is said
    s = parse_output(output, task, schema, 'strict')
    assert (s.result is not None) == strict_ok

@settings(max_examples=600, deadline=None)
@given(st.text(max_size=300), st.sampled_from(TASKS))
def test_random_strings_never_raise(text, task):
    schema = EE if task in ('EE', 'EEA') else (RE_ if task == 'RE' else NER)
    for mode in ('strict', 'repaired'):
        r = parse_output(text, task, schema, mode, text='Kalo was born in Sator.')
        assert r.result is None or set(r.result) == {s if isinstance(s, str) else s['event_type'] for s in schema}
    rec = {'id': 'x', 'label': '[]', 'instruction': ie_prompt(task, schema, 'x'), 'output': text}
    assert score_records([rec], task, 'repaired')['texts'] == 1

@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=30), st.builds(lambda a, b: '{' + a + '}' + b, st.text(max_size=40), st.text(max_size=10))), min_size=1, max_size=5))
def test_scoring_random_outputs_never_raises(outputs):
    lab = json.dumps([{'entity': 'Kalo', 'entity_type': 'person'}])
    recs = [{'id': str(i % 2), 'label': lab, 'output': o} for i, o in enumerate(outputs)]
    for mode in ('strict', 'repaired'):
        r = score_records([{**x, 'instruction': ie_prompt('NER', NER, 'x')} for x in recs], 'NER', mode)
        assert 0.0 <= r['P'] <= 1.0 and 0.0 <= r['R'] <= 1.0

def test_hand_counted_f1():
    lab = lambda *ents: json.dumps([{'entity': e, 'entity_type': t} for e, t in ents])
    recs = [  # text a: gold 3, two prompts (groups) merged; text b: gold 1, predicted twice (multiset: one match); text c: gold 2, unreadable
        {'id': 'a', 'label': lab(('Kalo', 'person'), ('Mina', 'person'), ('Sator', 'city')), 'output': '{"person": ["Kalo", "Vinda"]}'},
        {'id': 'a', 'label': lab(('Kalo', 'person'), ('Mina', 'person'), ('Sator', 'city')), 'output': '{"city": ["Sator"]}'},
        {'id': 'b', 'label': lab(('Rosel', 'city')), 'output': '{"city": ["Rosel", "Rosel"]}'},
        {'id': 'c', 'label': lab(('Peul', 'city'), ('Duvin', 'city')), 'output': 'Peul, Duvin'},
    ]
    r = score_records(recs, 'NER')
    assert (r['tp'], r['pred'], r['gold'], r['errors'], r['texts']) == (3, 5, 6, 1, 3)
    assert r['P'] == pytest.approx(0.6) and r['R'] == pytest.approx(0.5) and r['F1'] == pytest.approx(2 * 0.6 * 0.5 / 1.1)
    assert r['iepile'] == {'P': 60.0, 'R': 50.0, 'F1': 54.55}
    assert r['per_label']['city'] == {'P': 2 / 3, 'R': 0.5, 'F1': pytest.approx(4 / 7), 'tp': 2, 'pred': 3, 'gold': 4}
    rel = [{'id': 'r', 'label': json.dumps([{'head': 'Kalo', 'relation': 'born_in', 'tail': 'Sator'}]),
            'output': '{"born_in": [{"head": "Kalo", "tail": "Sator"}]}', 'instruction': ie_prompt('RE', RE_, 'x')}]
    assert score_records(rel, 'RE')['tp'] == 0  # IEPile reads subject/object: a head/tail answer scores as ('', born_in, '')
    assert score_records(rel, 'RE', 'repaired')['tp'] == 1

def test_builder_rules():
    assert [len(g) for g in split_schema(list(range(13)), 6)] == [6, 7]
    assert [len(g) for g in split_schema(list(range(11)), 4)] == [4, 4, 3]
    assert split_schema(list(range(5)), -1) == [list(range(5))]
    labels = [f'r{i}' for i in range(14)]
    draws = [sample_negatives(['r2'], labels, 0.25, (7, k)) for k in range(300)]
    assert all(d[0] in ('r0', 'r1', 'r2') and 'r2' in d for d in draws)
    assert sum(len(d) - 1 for d in draws) / 300 == pytest.approx(14 * 0.25 - 0.25, abs=0.5)  # negatives drawn from 13 others, about 13 · 0.25
    assert draws[5] == sample_negatives(['r2'], labels, 0.25, (7, 5))
    with pytest.raises(SchemaError, match="EE schema item 0"): check_schema('EE', [3])

def test_world_records_have_iepile_shape_and_perfect_answers_score_100():
    for task in TASKS:
        recs = world_ie_records(task, splits=('test',))
        assert recs and all(set(r) >= {'id', 'task', 'source', 'instruction', 'label'} for r in recs)
        golds = {r['id']: json.loads(r['label']) for r in recs}
        perfect = [{**r, 'output': json.dumps(answer_for(task, json.loads(r['instruction'])['schema'], golds[r['id']]))} for r in recs]
        s = score_records(perfect, task)
        assert (s if task not in ('EE', 'EEA') else s['argument'])['F1'] == 1.0

def test_old_tuple_format():
    assert parse_tuples('(Kalo,born_in,Sator)\n(Kalo,works_for,NAN)\nnothing') == [('Kalo', 'born_in', 'Sator')]

def _ie(*args):
    return subprocess.run([str(BIN/'knowlm-nb'), 'ie', *args], capture_output=True, text=True, timeout=120)

def test_command_build_and_score_and_bad_input(tmp_path):
    r = _ie('build', '--task', 'RE', '--splits', 'train', '--train', '--out', str(tmp_path/'re.jsonl'))
    assert r.returncode == 0 and 'with answers' in r.stdout, r.stderr
    recs = read_ie_records(tmp_path/'re.jsonl', need_output=True)
    (tmp_path/'pred.jsonl').write_text(''.join(json.dumps(x, ensure_ascii=False) + '\n' for x in recs), encoding='utf-8')
    r = _ie('score', '--pred', str(tmp_path/'pred.jsonl'), '--task', 'RE')
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s['P'] == 1.0 and s['errors'] == 0  # training outputs are exact answers (recall < 1: negatives sampled, not every label asked)
    for text, msg in [('{"id": "a"}\n', "missing field 'label'"), ('{"id": "a", "label": "x"}\n', "field 'label' is not JSON"),
                      ('{"id": "a", "label": "[]", "instruction": "nope", "output": ""}\n', "field 'instruction' must be a prompt JSON")]:
        (tmp_path/'bad.jsonl').write_text(text, encoding='utf-8')
        r = _ie('score', '--pred', str(tmp_path/'bad.jsonl'), '--task', 'NER')
        assert r.returncode == 2 and msg in r.stderr and 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert _ie('score', '--pred', str(tmp_path), '--task', 'NER').returncode == 2
    assert _ie('build', '--task', 'XX', '--out', 'x').returncode == 2

def _cmd(*args, timeout=600):
    return subprocess.run([str(BIN/'knowlm-nb'), *args], capture_output=True, text=True, timeout=timeout)

def test_command_line_path_build_tune_predict_score(tmp_path, small_base):
    "The tiny model's path from the shell: IEPile training records are SFT records; the merged model predicts; the scorer reads its answers."
    ins = 'Extract the entities.'
    r = _ie('build', '--task', 'NER', '--train', '--splits', 'train', '--instruction', ins, '--out', str(tmp_path/'train.jsonl'))
    assert r.returncode == 0, r.stderr
    assert {json.loads(x['instruction'])['instruction'] for x in read_ie_records(tmp_path/'train.jsonl')} == {ins}
    r = _cmd('sft', '--model', small_base, '--data', str(tmp_path/'train.jsonl'), '--out', str(tmp_path/'run'), '--max-steps', '2',
             '--batch-size', '4', '--grad-accum', '1', '--merge')
    assert r.returncode == 0 and 'merged model in' in r.stdout, r.stderr[-2000:]
    assert _ie('build', '--task', 'NER', '--instruction', ins, '--out', str(tmp_path/'test.jsonl')).returncode == 0
    r = _ie('predict', '--records', str(tmp_path/'test.jsonl'), '--model', str(tmp_path/'run'/'merged'), '--template', 'alpaca',
            '--max-new-tokens', '6', '--batch-size', '32', '--out', str(tmp_path/'pred.jsonl'))
    assert r.returncode == 0, r.stderr[-2000:]
    pred = read_ie_records(tmp_path/'pred.jsonl', need_output=True)
    assert len(pred) == len(read_ie_records(tmp_path/'test.jsonl'))
    r = _ie('score', '--pred', str(tmp_path/'pred.jsonl'), '--task', 'NER', '--mode', 'repaired')
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s['outputs'] == len(pred) and s['gold'] > 0 and 0 <= s['F1'] <= 1
    r = _ie('predict', '--records', str(tmp_path/'test.jsonl'), '--model', str(tmp_path/'run'/'merged'), '--template', 'chat', '--out', str(tmp_path/'p2.jsonl'))
    assert r.returncode == 2 and 'needs a tokenizer with a chat template' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert not (tmp_path/'p2.jsonl').exists()

def test_chat_and_oneke_wrappers():
    from knowlm_nb.ie import wrap_prompt
    from knowlm_nb.models import world_tokenizer
    tok = world_tokenizer()
    tok.chat_template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
    p = ie_prompt('NER', NER, 'Kalo Renmi was born in Sator.')
    assert wrap_prompt(p, 'chat', tok) == f'<|user|>{p}<|assistant|>'
    assert wrap_prompt(p, 'oneke', system='SYS').startswith('<s>[INST] <<SYS>>\nSYS\n<</SYS>>\n\n{"instruction"')
    assert wrap_prompt(p) == p

def test_tiny_recipe_errors_come_before_training():
    from knowlm_nb.ie import tiny_ie_path
    from knowlm_nb.core import ConfigError
    with pytest.raises(ConfigError, match='unknown recipe field'): tiny_ie_path(epoch=3)
    with pytest.raises(ConfigError, match='lora_r'): tiny_ie_path(lora=True, lora_r=0)

def test_pipeline_step_from_the_command_line(tmp_path):
    "The pipeline's IE step runs from the installed command (the module alone) and writes its section, figures and metrics."
    r = _cmd('pipeline', '--stages', 'ie', '--out', str(tmp_path/'rep'), timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    md = (tmp_path/'rep'/'report.md').read_text(encoding='utf-8')
    assert '## Information extraction (OneKE / IEPile format)' in md and 'tiny IE model' in md and 'untuned base' in md
    assert (tmp_path/'rep'/'figures'/'ie_f1.png').exists() and (tmp_path/'rep'/'figures'/'ie_loss.png').exists()
    metrics = json.loads((tmp_path/'rep'/'metrics.json').read_text(encoding='utf-8'))
    assert {'ner_f1', 're_f1', 'ee_events_f1', 'ee_arguments_f1'} <= set(metrics['ie'])

def test_predict_bad_input_is_one_line(tmp_path, small_base):
    "Bad arguments and records stop `predict` with exit 2 and one line (never an empty file written with status 0)."
    assert _ie('build', '--task', 'NER', '--out', str(tmp_path/'test.jsonl')).returncode == 0
    recs = read_ie_records(tmp_path/'test.jsonl')
    for flags, msg in [(['--batch-size', '-1'], 'batch_size must be a positive integer'), (['--max-new-tokens', '0'], 'max_new_tokens must be a positive integer'),
                       (['--template', 'oneke', '--lang', 'fr'], "no default OneKE system prompt for lang 'fr'")]:
        for r in recs: r.pop('lang', None)
        (tmp_path/'in.jsonl').write_text(''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in recs[:3]), encoding='utf-8')
        r = _ie('predict', '--records', str(tmp_path/'in.jsonl'), '--model', small_base, '--out', str(tmp_path/'p.jsonl'), *flags)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1 and not (tmp_path/'p.jsonl').exists(), (flags, r.stderr)
    (tmp_path/'noprompt.jsonl').write_text(json.dumps({'id': 'a', 'label': '[]'}) + '\n', encoding='utf-8')
    r = _ie('predict', '--records', str(tmp_path/'noprompt.jsonl'), '--model', small_base, '--out', str(tmp_path/'p.jsonl'))
    assert r.returncode == 2 and "noprompt.jsonl:1: missing field 'instruction'" in r.stderr, r.stderr
    long = dict(recs[0], instruction=ie_prompt('NER', NER, 'Kalo was born in Sator. ' * 200))
    (tmp_path/'long.jsonl').write_text(json.dumps(long) + '\n', encoding='utf-8')
    r = _ie('predict', '--records', str(tmp_path/'long.jsonl'), '--model', small_base, '--out', str(tmp_path/'p.jsonl'))
    assert r.returncode == 2 and "the model's window is 512" in r.stderr and 'record 0' in r.stderr, r.stderr

def test_predict_warns_when_answers_may_be_cut(tmp_path, small_base):
    from knowlm_nb.ie import predict_records
    import contextlib, io
    rec = {'id': 'a', 'label': '[]', 'instruction': ie_prompt('NER', NER, 'Kalo was born in Sator. ' * 25)}
    err = io.StringIO()
    with contextlib.redirect_stderr(err): out = predict_records([rec], small_base, max_new_tokens=400)
    assert 'prompts leave fewer than 400 positions' in err.getvalue() and isinstance(out[0]['output'], str)

def test_hard_negatives_from_the_command_line(tmp_path):
    "IEPile's hard negatives: every similar relation of a positive is asked; a bad dictionary file is one line, exit 2."
    from knowlm_nb.ie import world_similar_relations
    r = _ie('build', '--task', 'RE', '--train', '--splits', 'train', '--similar', 'world', '--out', str(tmp_path/'hard.jsonl'))
    assert r.returncode == 0, r.stderr
    sim, recs = world_similar_relations(), read_ie_records(tmp_path/'hard.jsonl')
    asked = {}
    for x in recs: asked.setdefault(x['id'], set()).update(json.loads(x['instruction'])['schema'])
    for x in recs:
        for g in json.loads(x['label']): assert {g['relation'], *sim[g['relation']]} <= asked[x['id']]
    (tmp_path/'sim.json').write_text('["born_in"]', encoding='utf-8')
    r = _ie('build', '--task', 'RE', '--train', '--similar', str(tmp_path/'sim.json'), '--out', str(tmp_path/'x.jsonl'))
    assert r.returncode == 2 and 'expected a JSON object label -> [similar labels]' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
