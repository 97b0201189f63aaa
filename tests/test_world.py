"The toy world: determinism, consistency, held-out templates, record formats, bad input."
import json, hashlib
from pathlib import Path
import pytest
from knowlm_nb.world import (WorldConfig, WorldConfigError, make_world, check_world, generate_datasets, write_world,
                             validate_record, RELATIONS, LANGS, World, Fact, recall_prompt, FORMATS)
from knowlm_nb.core import DataFormatError

def _bytes(d: Path): return {p.name: p.read_bytes() for p in sorted(d.iterdir())}

def test_same_seed_same_bytes(tmp_path):
    write_world(tmp_path/'a', WorldConfig(seed=7)); write_world(tmp_path/'b', WorldConfig(seed=7))
    assert _bytes(tmp_path/'a') == _bytes(tmp_path/'b')

def test_different_seed_different_world(tmp_path):
    a, b = make_world(seed=1), make_world(seed=2)
    assert {e.en for e in a.entities.values()} != {e.en for e in b.entities.values()}
    assert [(f.s, f.r, f.o) for f in a.facts] != [(f.s, f.r, f.o) for f in b.facts]

@pytest.mark.parametrize('seed', [0, 1, 2, 3, 11])
def test_no_contradictions(seed):
    w = make_world(seed=seed)
    assert check_world(w) == []
    for r in RELATIONS.values():
        if r.functional:
            subj = [f.s for f in w.facts if f.r == r.name]
            assert len(subj) == len(set(subj)), r.name

def test_check_world_catches_a_contradiction():
    w = make_world()
    f = next(x for x in w.facts if x.r == 'born_in')
    other = next(e.id for e in w.of_type('city') if e.id != f.o)
    bad = World(w.config, w.entities, w.facts + [Fact('fbad', f.s, 'born_in', other)])
    assert any('functional' in p for p in check_world(bad))

def test_bigger_world_consistent():
    w = make_world(WorldConfig(n_countries=20, n_people=600, n_orgs=80, n_inventions=110, collaborations=300))
    assert check_world(w) == []

def test_heldout_templates_disjoint_and_object_final():
    for r in RELATIONS.values():
        for lang in LANGS:
            assert r.train[lang] and len(r.heldout[lang]) >= 2
            assert not set(r.train[lang]) & set(r.heldout[lang])
            # no held-out prompt prefix is also a training prefix: a held-out probe is a phrasing the model never saw
            assert not {t.split('{o}')[0] for t in r.train[lang]} & {t.split('{o}')[0] for t in r.heldout[lang]}

def test_training_data_never_uses_heldout_templates():
    w = make_world()
    data = generate_datasets(w)
    heldout_sents = set()
    for f in w.facts[:200]:
        for lang in LANGS:
            for t in RELATIONS[f.r].heldout[lang]:
                heldout_sents.add(recall_prompt(w, f, lang, t))
    text = '\n'.join(d['text'] for d in data['pretrain'])
    assert not any(s in text for s in heldout_sents if len(s) > 12)
    held = '\n'.join(d['text'] for d in data['pretrain_heldout'])
    assert sum(s in held for s in heldout_sents) > 0

def test_every_record_validates():
    data = generate_datasets(make_world(seed=3))
    assert set(data) == set(FORMATS)
    for name, recs in data.items():
        assert recs, name
        for i, r in enumerate(recs): validate_record(r, name, f'{name}:{i}')
        json.dumps(recs, ensure_ascii=False)

def test_splits_disjoint_by_fact():
    w = make_world()
    data = generate_datasets(w)
    split_of = {f.id: f.split for f in w.facts}
    assert set(split_of.values()) == {'train', 'validation', 'test'}
    for name in ('qa', 'alpaca', 'knowrl', 'edits'):
        for r in data[name]: assert r['split'] == split_of[r['fact_id']]
    tr = {r['fact_id'] for r in data['qa'] if r['split'] == 'train'}
    te = {r['fact_id'] for r in data['qa'] if r['split'] == 'test'}
    assert tr and te and not tr & te

def test_edit_cases_change_the_two_hop_answer():
    for e in generate_datasets(make_world())['edits']:
        assert e['target_new'] != e['ground_truth']
        assert e['portability_ground_truth'] != e['portability_old_answer']
        assert e['rephrase_prompt'] != e['prompt']

@pytest.mark.parametrize('kw,msg', [({'n_people': 0}, 'n_people'), ({'n_fields': 99}, 'n_fields'), ({'seed': -1}, 'seed'),
                                    ({'n_orgs': 50, 'n_people': 10}, 'n_orgs'), ({'split': (1.0, 0.5, 0.0)}, 'split'),
                                    ({'n_people': 'ten'}, 'n_people')])
def test_invalid_sizes(kw, msg):
    with pytest.raises(WorldConfigError, match=msg): WorldConfig(**kw)

def test_unknown_relation():
    w = make_world()
    with pytest.raises(KeyError, match="unknown relation 'married_to'"): w.objects('person/0000', 'married_to')
    rec = {'question': 'q', 'answer': 'a', 'answers': ['a'], 'lang': 'en', 'relation': 'married_to', 'fact_id': 'f', 'split': 'train'}
    with pytest.raises(DataFormatError, match="unknown relation 'married_to'"): validate_record(rec, 'qa')

def test_bad_records_name_the_field():
    with pytest.raises(DataFormatError, match=r"x.jsonl:3: field 'lang' must be one of"):
        validate_record({'title': 't', 'lang': 'fr', 'text': 'x'}, 'kb', 'x.jsonl:3')
    with pytest.raises(DataFormatError, match="field 'instruction' must be str"):
        validate_record({'instruction': 1, 'input': '', 'output': ''}, 'alpaca')

def test_manifest_hashes_match_files(tmp_path):
    m = write_world(tmp_path)
    for name, info in m['datasets'].items():
        assert hashlib.sha256((tmp_path/info['file']).read_bytes()).hexdigest() == info['sha256']
        assert sum(1 for _ in open(tmp_path/info['file'], encoding='utf-8')) == info['records']

def test_world_config_error_is_bad_input():
    from knowlm_nb.core import ConfigError, exit_code
    with pytest.raises(ConfigError) as e: WorldConfig(n_people=2)
    assert isinstance(e.value, (WorldConfigError, ValueError)) and exit_code(e.value) == 2

def test_cli_world_writes_what_write_world_writes(tmp_path, capsys):
    from knowlm_nb.world import cli_world
    rc = cli_world(['--out', str(tmp_path/'cli'), '--seed', '3', '--n-people', '20', '--n-orgs', '5', '--split', '0.6', '0.2', '0.2'])
    assert rc == 0 and 'world seed=3' in capsys.readouterr().out
    write_world(tmp_path/'api', WorldConfig(seed=3, n_people=20, n_orgs=5, split=(0.6, 0.2, 0.2)))
    assert _bytes(tmp_path/'cli') == _bytes(tmp_path/'api')  # the manifest records the WorldConfig, not --out

def test_cli_world_help_and_bad_input(tmp_path, capsys):
    from dataclasses import fields
    from knowlm_nb.core import config_field_help
    from knowlm_nb.world import cli_world, WorldCommandConfig
    assert cli_world(['--help']) == 0
    out = ' '.join(capsys.readouterr().out.split())
    helps = config_field_help(WorldCommandConfig)
    assert set(helps) == {f.name for f in fields(WorldCommandConfig)} and {f.name for f in fields(WorldConfig)} < set(helps)
    for name, comment in helps.items(): assert '--' + name.replace('_', '-') in out and ' '.join(comment.split()) in out, name
    assert cli_world(['--n-people', '-3']) == 2 and 'WorldConfig.n_people must be an int in [4, 2280], got -3' in capsys.readouterr().err
    assert cli_world(['--seed', '1']) == 2 and capsys.readouterr().err == 'knowlm-nb world: error: the following arguments are required: --out\n'
    assert cli_world(['--out', str(tmp_path), '--split', '0.5', 'half']) == 2 and 'WorldConfig.split must be three' in capsys.readouterr().err
    assert cli_world(['--out', str(tmp_path), '--n-people', 'many']) == 2 and "argument --n-people: expected an integer, got 'many'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_every_accepted_size_builds_and_the_limit_is_named(capsys):
    "The accepted range is what works: the largest world the syllables allow builds; one person more is a one-line error naming the limit."
    from knowlm_nb.world import NAME_LIMIT, cli_world
    others = 10 + 5 * (1 + 4)  # n_orgs + countries and their cities (the defaults)
    w = make_world(WorldConfig(n_people=NAME_LIMIT - others, n_orgs=10, n_inventions=20, collaborations=15))
    assert len([e for e in w.entities.values() if e.type == 'person']) == NAME_LIMIT - others
    with pytest.raises(WorldConfigError, match=f'n_people can be at most {NAME_LIMIT - others}'): WorldConfig(n_people=NAME_LIMIT - others + 1)
    assert cli_world(['--n-people', '2250', '--out', 'unused']) == 2 and 'n_people can be at most 2245' in capsys.readouterr().err


def test_a_rewrite_that_fails_leaves_the_previous_world(tmp_path, monkeypatch):
    "A full disk half-way through a rewrite: the old files and their manifest stay, byte for byte; no staging directory is left."
    import knowlm_nb.world as W
    write_world(tmp_path/'w')
    before = {p.name: p.read_bytes() for p in (tmp_path/'w').iterdir()}
    real, calls = W.write_jsonl, []
    def full_disk(path, recs):
        calls.append(path)
        if len(calls) == 3: raise OSError(28, 'No space left on device')
        return real(path, recs)
    monkeypatch.setattr(W, 'write_jsonl', full_disk)
    with pytest.raises(OSError, match='No space left'): write_world(tmp_path/'w', WorldConfig(seed=1))
    assert {p.name: p.read_bytes() for p in (tmp_path/'w').iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['w']
