"""The GitHub Actions workflows, linted here (CI cannot run them): valid YAML with the shape Actions expects, actions pinned
to a version, and every make target, script and test file a `run:` step names exists in the repository."""
import re, shlex
from pathlib import Path
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT/'.github'/'workflows').glob('*.yml'))
MAKE_TARGETS = set(re.findall(r'^([\w.-]+)\s*:(?!=)', (ROOT/'Makefile').read_text(encoding='utf-8'), re.M))
REPO_PATH = re.compile(r'(?<![\w/.-])((?:\.ci|tools|tests|bench|docs|nbs)/[\w./-]*[\w/])')


def test_the_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {'test.yml', 'docs.yml', 'release.yml'}


def make_targets(script:str)->list:
    "The targets of every `make` call in a shell script (options and VAR=value arguments left out)."
    out = []
    for line in script.splitlines():
        for part in re.split(r'&&|\|\||;|\|', line):
            try: words = shlex.split(part)
            except ValueError: words = part.split()
            if not words or words[0] != 'make': continue
            out += [w for w in words[1:] if not w.startswith('-') and '=' not in w]
    return out


@pytest.mark.parametrize('wf', WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_valid_and_names_only_what_exists(wf):
    doc = yaml.safe_load(wf.read_text(encoding='utf-8'))
    assert isinstance(doc, dict) and doc.get('name'), f"{wf.name}: no name"
    triggers = doc.get('on', doc.get(True))  # YAML 1.1 reads the key `on` as True
    assert triggers, f"{wf.name}: no trigger (on:)"
    assert doc.get('jobs'), f"{wf.name}: no jobs"
    problems = []
    for job_name, job in doc['jobs'].items():
        if 'uses' in job: continue  # a reusable workflow
        if 'runs-on' not in job: problems.append(f"job {job_name}: no runs-on")
        for i, step in enumerate(job.get('steps') or []):
            where = f"job {job_name} step {i} ({step.get('name', step.get('uses', ''))})"
            if ('uses' in step) == ('run' in step): problems.append(f"{where}: needs exactly one of uses/run")
            if 'uses' in step and not re.fullmatch(r'[\w.-]+/[\w./-]+@(v\d+(\.\d+)*|[0-9a-f]{40}|release/v\d+)', step['uses']):
                problems.append(f"{where}: action not pinned to a version: {step['uses']}")
            if 'run' in step:
                problems += [f"{where}: make target '{t}' is not in the Makefile" for t in make_targets(step['run']) if t not in MAKE_TARGETS]
                problems += [f"{where}: {p} does not exist" for p in REPO_PATH.findall(step['run']) if not (ROOT/p).exists()]
        if not job.get('steps') and 'uses' not in job: problems.append(f"job {job_name}: no steps")
        for need in ([job['needs']] if isinstance(job.get('needs'), str) else job.get('needs') or []):
            if need not in doc['jobs']: problems.append(f"job {job_name}: needs unknown job {need}")
    assert not problems, f"{wf.name}: " + '; '.join(problems)


def test_the_lint_catches_what_it_should(tmp_path):
    "The checks above fail on a missing make target, a missing script and an unpinned action."
    assert make_targets('make setup EXTRAS=dev && make -n docs PYTHON=python') == ['setup', 'docs']
    assert REPO_PATH.findall('bash .ci/run; python tools/nope.py tests/test_x.py') == ['.ci/run', 'tools/nope.py', 'tests/test_x.py']
    assert 'nope-target' not in MAKE_TARGETS and {'setup', 'test', 'demo', 'docs', 'readme'} <= MAKE_TARGETS
