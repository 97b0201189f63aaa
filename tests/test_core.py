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

# --- the config-to-CLI mechanism, the exit-code rule, atomic directories and text blocks
import dataclasses, signal
from hypothesis import given, settings, strategies as st
from knowlm_nb.core import (merge_config, ConfigError, InputError, exit_code, run_command, config_command, atomic_dir,
                            iter_text_blocks, iter_jsonl, check_stages, STAGES)

@dataclasses.dataclass
class _Cfg:
    "A config for the tests."
    name:str='x'  # a name
    n:int=1  # a count
    rate:float=0.5  # a rate
    flag:bool=False  # a switch
    weights:dict|None=None  # source -> weight
    def __post_init__(self):
        if self.n < 0: raise ValueError(f"n must be >= 0, got {self.n}")

FIELDS = [f.name for f in dataclasses.fields(_Cfg)]

@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(st.characters(categories=['Ll']), min_size=1, max_size=8), st.integers(0, 5), max_size=4))
def test_merge_config_refuses_every_unknown_key(over):
    unknown = [k for k in over if k not in FIELDS]
    if unknown:
        with pytest.raises(ConfigError, match='valid fields: name, n, rate, flag, weights'): merge_config(_Cfg, over)
    else:
        c = merge_config(_Cfg, over)
        assert all(getattr(c, k) == v for k, v in over.items())

def test_merge_config_wraps_post_init_errors():
    with pytest.raises(ConfigError, match='recipe.json: _Cfg: n must be >= 0'): merge_config(_Cfg(), {'n': -1}, where='recipe.json')
    assert merge_config(_Cfg(n=3), rate=0.1) == _Cfg(n=3, rate=0.1)

@pytest.mark.parametrize('err,code', [(InputError('x'), 2), (ConfigError('x'), 2), (DataFormatError('x'), 2), (FileNotFoundError('x'), 2),
                                      (RuntimeError('x'), 1), (MemoryError(), 1), (KeyError('x'), 1), (ValueError('deep inside torch'), 1)])
def test_exit_code_rule(err, code):
    assert exit_code(err) == code

def test_run_command_one_line(capsys):
    def boom(): raise DataFormatError('data.jsonl:7: missing field \'text\'\nmore detail')
    assert run_command('knowlm-nb x', boom) == 2
    assert capsys.readouterr().err == "knowlm-nb x: error: data.jsonl:7: missing field 'text'\n"
    def crash(): raise RuntimeError('CUDA out of memory')
    assert run_command('knowlm-nb x', crash) == 1
    assert capsys.readouterr().err == 'knowlm-nb x: error: RuntimeError: CUDA out of memory\n'
    assert run_command('knowlm-nb x', lambda: None) == 0

def test_config_command_flags_file_and_errors(tmp_path, capsys):
    seen = []
    cli = config_command(_Cfg, seen.append, 'knowlm-nb t', 'a test command')
    assert cli(['--n', '4', '--flag', '--weights', 'zh=0.7,en=0.3']) == 0
    assert seen[-1] == _Cfg(n=4, flag=True, weights={'zh': 0.7, 'en': 0.3})
    (tmp_path/'c.json').write_text('{"n": 2, "rate": 0.25, "flag": true}')
    assert cli(['--config', str(tmp_path/'c.json'), '--no-flag']) == 0
    assert seen[-1] == _Cfg(n=2, rate=0.25, flag=False)
    capsys.readouterr()
    assert cli(['--n', '-1']) == 2 and 'n must be >= 0' in capsys.readouterr().err
    assert cli(['--config', str(tmp_path/'missing.yaml')]) == 2 and 'does not exist' in capsys.readouterr().err
    assert cli(['--rate', 'high']) == 2 and "expected a number, got 'high'" in capsys.readouterr().err
    assert len(seen) == 2

def test_atomic_dir_replaces_only_on_success(tmp_path):
    d = tmp_path/'m'
    with atomic_dir(d) as t: (t/'w').write_text('1')
    with pytest.raises(RuntimeError):
        with atomic_dir(d) as t:
            (t/'w').write_text('2')
            raise RuntimeError('killed')
    assert (d/'w').read_text() == '1' and [p.name for p in tmp_path.iterdir()] == ['m']

def test_atomic_dir_survives_sigkill(tmp_path):
    "A process killed mid-build leaves the old directory whole (only a hidden temporary sibling may remain)."
    d = tmp_path/'m'
    with atomic_dir(d) as t: (t/'w').write_text('old')
    code = (f"import time\nfrom pathlib import Path\nfrom knowlm_nb.core import atomic_dir\n"
            f"with atomic_dir(Path({str(d)!r})) as t:\n    (t/'w').write_text('new, half')\n    print('inside', flush=True)\n    time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == 'inside'
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert (d/'w').read_text() == 'old'
    left = [x.name for x in tmp_path.iterdir() if x.name != 'm']
    assert left and all(x.startswith('.m.~') for x in left), left  # the dead build's staging folder, named for its host and process
    with atomic_dir(d) as t: (t/'w').write_text('new')  # the next write of the same target sweeps it (#18 item 9)
    assert sorted(x.name for x in tmp_path.iterdir()) == ['m'] and (d/'w').read_text() == 'new'


def test_a_killed_file_writer_leaves_nothing_after_the_next_write(tmp_path):
    "SIGKILL inside atomic_write leaves a hidden .tmp; the next atomic_write of that file removes it, a live writer's is kept."
    f = tmp_path/'report.md'
    code = (f"import time\nfrom knowlm_nb.core import atomic_write\n"
            f"with atomic_write({str(f)!r}) as h:\n    h.write('half')\n    h.flush()\n    print('inside', flush=True)\n    time.sleep(60)\n")
    live = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)
    dead = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)
    assert live.stdout.readline().strip() == 'inside' and dead.stdout.readline().strip() == 'inside'
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    assert len(list(tmp_path.glob('.report.md.*.tmp'))) == 2
    with atomic_write(f) as h: h.write('whole')
    left = [x.name for x in tmp_path.glob('.report.md.*.tmp')]
    live.kill()
    live.wait()
    assert f.read_text() == 'whole' and len(left) == 1 and f'-{live.pid}-' in left[0], left

@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=['Cs', 'Zl', 'Zp'], blacklist_characters='\r\n\x0b\x0c\x1c\x1d\x1e\x85'), min_size=1, max_size=20)
                .filter(lambda s: s.strip() and s == s.strip()), min_size=1, max_size=6))
def test_text_blocks_round_trip(tmp_path_factory, docs):
    p = tmp_path_factory.mktemp('tb')/'c.txt'
    p.write_text('\n\n'.join(docs) + '\n', encoding='utf-8')
    assert [t for t, _ in iter_text_blocks(p)] == docs

def test_check_stages_is_the_registry():
    assert check_stages(None) == [s.name for s in STAGES.values() if s.pipeline]
    with pytest.raises(InputError, match="unknown stage 'chunking'"): check_stages(['chunking'])

def test_written_files_and_directories_follow_the_umask(tmp_path):
    "Reports, datasets, cache entries and chunk indexes get the modes a plain open()/mkdir() would give (#18 item 10), not 0600/0700."
    import subprocess, sys
    code = f"""
import os, json
os.umask(0o027)
from pathlib import Path
from knowlm_nb.core import write_json, write_jsonl, atomic_dir
from knowlm_nb.chunking import IndexedDatasetWriter
d = Path({str(tmp_path)!r})
write_json(d/'a.json', {{'x': 1}})
write_jsonl(d/'b.jsonl', [{{'x': 1}}])
with atomic_dir(d/'model') as t: (t/'w.bin').write_bytes(b'x')
w = IndexedDatasetWriter(d/'idx', vocab_size=100)
w.add([1, 2, 3])
w.close()
print(json.dumps({{p.name: oct(p.stat().st_mode & 0o777) for p in sorted(d.iterdir())}}))
"""
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    modes = json.loads(r.stdout.strip().splitlines()[-1])
    assert modes == {'a.json': '0o640', 'b.jsonl': '0o640', 'idx.bin': '0o640', 'idx.idx': '0o640', 'model': '0o750'}, modes

def test_piping_to_head_is_quiet(tmp_path):
    "`knowlm-nb ... | head -1`: the command stops at the closed pipe with status 0 and nothing on stderr (#18 item 10)."
    import subprocess, sys
    from pathlib import Path
    exe = str(Path(sys.executable).parent/'knowlm-nb')
    import knowlm_nb
    poems = Path(knowlm_nb.__file__).parent/'data'/'poetry'/'tangshi300.json'  # 300 poems: 300 lines of output
    p = subprocess.Popen(['bash', '-c', f'"{exe}" rhyme score --file "{poems}" | head -1; exit ${{PIPESTATUS[0]}}'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0 and out.count('\n') == 1
    assert 'BrokenPipe' not in err and 'Traceback' not in err, err

def test_a_process_waiting_for_a_cache_build_says_so(tmp_path):
    "Two processes ask for the same artefact: the second waits for the first and says why on stderr (#18 item 9)."
    import subprocess, sys, time
    code = ("import sys, time\nfrom pathlib import Path\nfrom knowlm_nb.core import cached_build\n"
            f"d = cached_build('slow', {{'k': 1}}, lambda t: (time.sleep(float(sys.argv[1])), (t/'x').write_text('done')), home=Path({str(tmp_path)!r}))\n"
            "print((d/'x').read_text())")
    first = subprocess.Popen([sys.executable, '-c', code, '3'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list((tmp_path/'slow').glob('.*.lock')): time.sleep(0.05)
    time.sleep(0.3)  # the first process holds the lock once its lock file exists
    second = subprocess.run([sys.executable, '-c', code, '0'], capture_output=True, text=True, timeout=120)
    out1, err1 = first.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, (err1, second.stderr)
    assert out1.strip() == second.stdout.strip() == 'done'
    assert 'another process is building slow/' in second.stderr and 'waiting' in second.stderr
    assert 'waiting' not in err1


def test_sigterm_during_a_command_leaves_no_temporary_file(tmp_path):
    "SIGTERM while `atomic_write` and the chunk index writer hold temporary files: exit 143, one line, nothing left behind."
    import subprocess, sys
    code = ("import os, signal, sys\nfrom knowlm_nb.core import run_command, atomic_write\nfrom knowlm_nb.chunking import IndexedDatasetWriter\n"
            "def work():\n    with atomic_write(sys.argv[1] + '/a.json') as f, IndexedDatasetWriter(sys.argv[1] + '/idx', vocab_size=100) as w:\n"
            "        w.add([1, 2, 3])\n        f.write('half')\n        os.kill(os.getpid(), signal.SIGTERM)\n"
            "sys.exit(run_command('knowlm-nb x', work))")
    r = subprocess.run([sys.executable, '-c', code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 143 and r.stderr.strip() == 'knowlm-nb x: terminated (SIGTERM)', r.stderr
    assert list(tmp_path.iterdir()) == []


def test_report_says_when_chinese_will_show_as_boxes(tmp_path, monkeypatch):
    "Without a CJK font the pipeline's report carries the note (and the notebook/CLI warning says it once)."
    import knowlm_nb.core as C
    monkeypatch.setattr(C, 'CJK_FONTS', ['No Such Font'])
    monkeypatch.setattr(C, '_cjk_warned', [True])
    md = C.pipeline(tmp_path/'rep', stages=['world']).read_text(encoding='utf-8')
    assert f"Note: {C.NO_CJK_FONT}." in md


def test_every_writer_sweeps_what_a_killed_writer_left(tmp_path):
    """The world writer, the chunk index writer and the knowledge-base builder stage under host-and-process names, so the next run
    removes a dead run's staging files (#18 item 9) and keeps a live one's."""
    from knowlm_nb.core import _HOST_ID
    from knowlm_nb.world import write_world, WorldConfig
    from knowlm_nb.chunking import IndexedDatasetWriter
    from knowlm_nb.rewards import build_kb
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True).stdout.strip()
    world_left = tmp_path/f'.world.~{_HOST_ID}-{dead}-abcd1234'
    world_left.mkdir()
    (world_left/'facts.jsonl').write_text('half')
    index_left = tmp_path/f'.corpus.bin.~{_HOST_ID}-{dead}-abcd1234.tmp'
    index_left.write_bytes(b'half')
    kb_left = tmp_path/f'.kb.sqlite.~{_HOST_ID}-{dead}-kb'
    kb_left.write_bytes(b'half')
    live = tmp_path/f'.corpus.idx.~{_HOST_ID}-{os.getpid()}-abcd1234.tmp'
    live.write_bytes(b'mine, still writing')
    write_world(tmp_path/'world', WorldConfig(n_people=12, n_orgs=2, n_countries=2, cities_per_country=1, collaborations=4))
    w = IndexedDatasetWriter(tmp_path/'corpus', vocab_size=100)
    w.add([1, 2, 3])
    w.close()
    build_kb([{'title': 'A', 'text': 'A is a place.'}], tmp_path/'kb.sqlite')
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith('.'))
    assert left == [live.name], left


def test_without_a_cjk_font_the_command_says_so_and_how_to_fix_it(tmp_path):
    """#18 item 4: on a machine with no CJK font, `knowlm-nb pipeline` (whose rhyme grid is Chinese) warns on stderr with the fix,
    and the report carries the same note; the figure is still written."""
    code = f"""
import sys, matplotlib
matplotlib.use('Agg')
from matplotlib import font_manager
cjk = ('wenquanyi', 'noto sans cjk', 'source han', 'simhei', 'yahei', 'pingfang', 'heiti', 'ar pl')
font_manager.fontManager.ttflist = [f for f in font_manager.fontManager.ttflist if not any(k in f.name.lower() for k in cjk)]
font_manager.findSystemFonts = lambda *a, **k: []
from knowlm_nb.core import main
sys.exit(main(['pipeline', '--out', {str(tmp_path/'rep')!r}, '--stages', 'rhyme']))
"""
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'no CJK font is installed' in r.stderr and 'apt-get install fonts-wqy-microhei' in r.stderr, r.stderr[-2000:]
    assert 'no CJK font is installed' in (tmp_path/'rep'/'report.md').read_text(encoding='utf-8')
    assert (tmp_path/'rep'/'figures'/'rhyme_grid.png').read_bytes()[:4] == b'\x89PNG'
