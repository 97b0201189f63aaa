"core: JSON/JSONL readers that name file and line, atomic writes, the build lock under real parallel processes."
import json, os, subprocess, sys, textwrap
from pathlib import Path
import pytest
from knowlm_nb.core import (read_jsonl, write_jsonl, read_json, write_json, DataFormatError, atomic_write, cached_build,
                            seed_everything, knowlm_home, in_test, stable_hash)

def test_jsonl_round_trip(tmp_path):
    recs = [{'text': '床前明月光'}, {'text': 'x', 'n': [1, 2]}]
    write_jsonl(tmp_path/'a.jsonl', recs)
    assert read_jsonl(tmp_path/'a.jsonl') == recs

@pytest.mark.parametrize('content,msg', [
    ('{"a": 1}\n{"a": }\n', 'a.jsonl:2: invalid JSON'),
    ('{"a": 1}\n[1, 2]\n', 'a.jsonl:2: expected a JSON object'),
    ('{"text": 1}\n\n{"b": 2}\n', "a.jsonl:3: missing field 'text'"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, content, msg):
    (tmp_path/'a.jsonl').write_text(content, encoding='utf-8')
    with pytest.raises(DataFormatError, match=msg): read_jsonl(tmp_path/'a.jsonl', required=('text',) if 'text' in content else ())

def test_jsonl_invalid_utf8(tmp_path):
    (tmp_path/'a.jsonl').write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(DataFormatError, match='a.jsonl:2: not UTF-8'): read_jsonl(tmp_path/'a.jsonl')

def test_json_error_line_and_column(tmp_path):
    (tmp_path/'c.json').write_text('{\n  "a": 1,\n  "b": ]\n}', encoding='utf-8')
    with pytest.raises(DataFormatError, match=r'c.json:3:8: invalid JSON'): read_json(tmp_path/'c.json')

def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path/'f.txt'; p.write_text('old')
    with pytest.raises(RuntimeError):
        with atomic_write(p) as f: f.write('new half'); raise RuntimeError('boom')
    assert p.read_text() == 'old' and [x.name for x in tmp_path.iterdir()] == ['f.txt']

def test_cached_build_builds_once_across_processes(tmp_path):
    "Four processes ask for the same artefact at once: one build, everybody reads the complete result."
    script = textwrap.dedent(f'''
        import time, sys
        from pathlib import Path
        from knowlm_nb.core import cached_build
        def build(d):
            with open({str(tmp_path/'builds.log')!r}, 'a') as f: f.write('x')
            (d/'part1').write_text('1'); time.sleep(1.0); (d/'part2').write_text('2')
        p = cached_build('demo', {{'k': 1}}, build, home=Path({str(tmp_path/'home')!r}))
        assert (p/'part1').read_text() == '1' and (p/'part2').read_text() == '2'
        print(p)
    ''')
    procs = [subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outs)) == 1
    assert (tmp_path/'builds.log').read_text() == 'x'

def test_cached_build_failure_leaves_nothing(tmp_path):
    def build(d): (d/'a').write_text('1'); raise ValueError('fail')
    with pytest.raises(ValueError): cached_build('demo', {'k': 2}, build, home=tmp_path)
    assert [p for p in (tmp_path/'demo').iterdir() if not p.name.endswith('.lock')] == []

def test_seed_everything_repeats_numpy():
    import numpy as np
    seed_everything(3); a = np.random.rand(3)
    seed_everything(3); assert (np.random.rand(3) == a).all()

def test_home_env(monkeypatch, tmp_path):
    monkeypatch.setenv('KNOWLM_NB_HOME', str(tmp_path/'h'))
    assert knowlm_home() == tmp_path/'h'
    monkeypatch.setenv('IN_TEST', '1'); assert in_test()
    monkeypatch.setenv('IN_TEST', '0'); assert not in_test()

def test_stable_hash_ignores_key_order():
    assert stable_hash({'a': 1, 'b': 2}) == stable_hash({'b': 2, 'a': 1}) != stable_hash({'a': 1, 'b': 3})
