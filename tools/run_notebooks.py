"""Run every notebook as a learner's *Run All* would: in a real Jupyter kernel, every cell in order, nothing skipped.

`nbdev-test` runs the cells in-process and skips flagged ones (`#| slow`, `#| cuda`, `#| multicuda`, `#| colab`). This runner
starts an ipykernel per notebook (working directory `nbs/`, the inline matplotlib backend a learner gets), runs *every* cell,
and saves the executed notebook with its outputs and widget state under `--out` (the documentation site is built from those
copies; the notebooks in git stay without outputs). Flagged cells must therefore be safe here: colab cells do nothing outside
Colab, GPU cells print their command unless enough GPUs are present.

The Colab notebooks (`*_colab.ipynb`) are not run: each asks for a GPU runtime and a real model from the hub, neither of
which exists on a CPU machine; `tests/test_notebooks.py` checks them against the library instead.

Threads: with `--jobs N` notebooks run N at a time and each kernel gets `OMP_NUM_THREADS = cores // N` (at least 1), so
parallel kernels never fight over the cores (the rule in the index notebook, checked by tests/test_threads.py).

Usage: python tools/run_notebooks.py [--jobs 2] [--out _build/executed] [NOTEBOOK ...]
Exit 0 when every cell of every notebook ran, 1 otherwise (the failing notebook, cell and error are printed)."""
import argparse, json, os, re, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'


def default_notebooks()->list:
    "Every stage notebook in numbered order (the index included), without the Colab notebooks."
    return sorted(p for p in NBS.glob('*.ipynb') if not p.stem.endswith('_colab'))


# Artefacts several notebooks train from (tiny_lm -> tiny_sft -> its merged copy): built first, on every core, so that two
# notebooks never wait on the same cache lock with a core idle. The notebooks then find them in the cache, as on a second run.
WARM_CACHE = """from knowlm_nb.pretrain import tiny_lm_path
from knowlm_nb.sft import tiny_sft_path
from knowlm_nb.dpo import tiny_sft_merged_path
tiny_lm_path()
tiny_sft_path('knowledge')
tiny_sft_merged_path()
"""
# The longest notebooks first (so the last one running is a short one), when no earlier run.json says better.
LONGEST_FIRST = ['06_dpo', '07_ie', '12_grpo', '05_sft', '04_pretraining', '08_editing']


def schedule(notebooks:list, timings:dict)->list:
    "`notebooks` longest first: by the seconds an earlier run took, else by `LONGEST_FIRST`, the rest in numbered order."
    rank = {n: i for i, n in enumerate(LONGEST_FIRST)}
    return sorted(notebooks, key=lambda p: (-timings.get(p.name, -1), rank.get(p.stem, len(rank)), p.name))


def warm_cache(env:dict)->float:
    "Build the shared tiny models with every core (OMP_NUM_THREADS unset); return the seconds it took."
    t0 = time.time()
    env = {k: v for k, v in env.items() if k not in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'RAYON_NUM_THREADS')}
    subprocess.run([sys.executable, '-c', WARM_CACHE], env=env, check=True)
    return time.time() - t0


def threads_per_job(jobs:int, cores:int=None)->int:
    "Torch/BLAS threads each of `jobs` parallel kernels gets: the cores shared out, at least one."
    if cores is None: cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
    return max(1, cores // max(1, jobs))


def kernel_env(jobs:int)->dict:
    "The environment of one kernel: threads shared out, the inline backend (no MPLBACKEND), never the hub."
    env = dict(os.environ)
    n = str(threads_per_job(jobs))
    env.update(OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, RAYON_NUM_THREADS=n, TOKENIZERS_PARALLELISM='false', HF_HUB_OFFLINE='1',
               PYDEVD_DISABLE_FILE_VALIDATION='1')
    env.pop('MPLBACKEND', None)  # a learner's kernel shows figures inline; Agg would leave the pages without plots
    return env


def run_one(nb_path:Path, out_path:Path, timeout:int)->dict:
    "Execute one notebook in a fresh kernel (runs in its own process); return its timing and the first error."
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    nb = nbformat.read(nb_path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(nb_path.parent)}},
                            store_widget_state=True, record_timing=False)
    t0, error = time.time(), None
    try: client.execute()
    except CellExecutionError as e:
        cell = next((i for i, c in enumerate(nb.cells) if c.cell_type == 'code' and any(o.get('output_type') == 'error' for o in c.get('outputs', []))), None)
        lines = [l for l in re.sub(r'\x1b\[[0-9;]*m', '', str(e)).splitlines() if l.strip()]
        error = f"cell {cell}: {lines[-1] if lines else e.__class__.__name__}"
        print('\n'.join(lines[-25:]), file=sys.stderr)
    except Exception as e:  # a dead kernel or a timeout
        error = f"{e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    for c in nb.cells:  # outputs, not run metadata: execution counts and timings would churn every build
        c.get('metadata', {}).pop('execution', None)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f'.{out_path.name}.tmp')
    nbformat.write(nb, tmp)
    os.replace(tmp, out_path)
    return dict(notebook=nb_path.name, seconds=round(time.time() - t0, 1), error=error)


def run_all(notebooks:list, out:Path, jobs:int=2, timeout:int=900)->list:
    "Run `notebooks` `jobs` at a time, each in its own process and kernel; print one line per notebook as it finishes."
    env = kernel_env(jobs)
    def one(p):
        cmd = [sys.executable, __file__, '--one', str(p), '--out', str(out), '--timeout', str(timeout)]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        try: res = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError): res = dict(notebook=p.name, seconds=None, error=f"runner crashed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
        print(f"{res['notebook']:<28} {res['seconds'] or 0:>7.1f} s  {'ok' if not res['error'] else 'FAILED ' + res['error']}", flush=True)
        if res['error'] and r.stderr.strip(): print(r.stderr.rstrip()[-4000:], flush=True)
        return res
    with ThreadPoolExecutor(max(1, jobs)) as ex: return list(ex.map(one, notebooks))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('notebooks', nargs='*', type=Path, help='notebooks to run (default: every notebook but the Colab ones)')
    ap.add_argument('--out', type=Path, default=ROOT/'_build'/'executed', help='folder for the executed copies')
    ap.add_argument('--jobs', type=int, default=2, help='notebooks run at the same time')
    ap.add_argument('--timeout', type=int, default=900, help='seconds one cell may take')
    ap.add_argument('--no-warm', action='store_true', help='do not build the shared tiny models first (they are built by the notebooks that need them)')
    ap.add_argument('--one', type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(run_one(a.one.resolve(), a.out/a.one.name, a.timeout)))
        return 0
    nbs = [p.resolve() for p in a.notebooks] or default_notebooks()
    missing = [str(p) for p in nbs if not p.is_file()]
    if missing:
        print(f"run_notebooks: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    t0 = time.time()
    if not a.notebooks and not a.no_warm:
        print(f"shared tiny models (tiny_lm, tiny_sft, its merged copy) built or found in the cache in {warm_cache(dict(os.environ)):.0f} s", flush=True)
    try: timings = {r['notebook']: r['seconds'] or 0 for r in json.loads((a.out/'run.json').read_text())['results']}
    except (OSError, ValueError, KeyError, TypeError): timings = {}
    nbs = schedule(nbs, timings)
    print(f"running {len(nbs)} notebooks, {a.jobs} at a time, {threads_per_job(a.jobs)} thread(s) each; executed copies in {a.out}", flush=True)
    res = run_all(nbs, a.out, a.jobs, a.timeout)
    failed = [r for r in res if r['error']]
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out/'run.json').write_text(json.dumps(dict(results=res, wall_seconds=round(time.time() - t0, 1)), indent=1) + '\n')
    print(f"{len(res) - len(failed)}/{len(res)} notebooks ran every cell in {time.time() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
