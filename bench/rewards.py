"""Speed of KnowRL's rewards with the local parts, and the share of a tiny GRPO step they take.

Run: `.venv/bin/python bench/rewards.py [--n 4000] [--repeats 3] [--steps 6]`. One process pinned to one core.
Part 1 scores a fixed mix of completions to the world's questions (right answers, refusals, wrong answers with
true or false reasoning, no answer block, bad format: written from the world's facts, so the mix is the same
every run) with each reward alone and with KnowRL's pair (format + combined) together; completions per second,
median of `--repeats` runs. Every run starts cold: a new scorer (empty retrieval cache) and the verifier's
parse caches cleared. The knowledge base is the world's, already built (its build time is not counted).
Part 2 trains the tiny GRPO recipe for `--steps` steps from the cached cold-start model with every reward
function wrapped in a timer, and reports the time in rewards over the training time (wall clock).
Targets (issue #12): >= 2,000 completions/s combined; rewards < 5% of a GRPO step.
"""
import argparse, os, random, statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_results


def completion_mix(n:int, seed:int=0)->tuple:
    "n completions to the world's test and validation questions, with their items, in six kinds."
    from knowlm_nb.world import make_world, knowrl_items, RELATIONS, render
    w = make_world()
    items = [i for i in knowrl_items(w) if i['split'] in ('test', 'validation')]
    facts = {f.id: f for f in w.facts}
    rng = random.Random(seed)
    comps, its, kinds = [], [], []
    for k in range(n):
        it = rng.choice(items)
        f, lang = facts[it['fact_id']], it['lang']
        said = [render(rng.choice(RELATIONS[g.r].train[lang]), w.name(g.s, lang), w.name(g.o, lang))[0] for g in w.facts if g.s == f.s][:4]
        think = (' ' if lang == 'en' else '').join(said)
        other = rng.choice([e for e in w.entities.values() if e.type == w.entities[f.o].type and e.id != f.o]).name(lang)
        false = render(RELATIONS[f.r].train[lang][0], w.name(f.s, lang), other)[0]
        kind = k % 6
        c = [f"<think>{think}</think>\n<answer>{it['answers'][0]}</answer>", f"<think>{think}</think>\n<answer>{'I don' + chr(39) + 't know' if lang == 'en' else '我不知道'}</answer>",
             f"<think>{think}</think>\n<answer>{other}</answer>", f"<think>{false} {false}</think>\n<answer>{other}</answer>",
             f"<think>{think}</think>", f"{think} {other}"][kind]
        comps.append(c)
        its.append(it)
        kinds.append(kind)
    return comps, its


def time_rewards(comps, its, repeats):
    from knowlm_nb.rewards import KnowRLScorer, format_reward, world_kb, _claims, _passage_claims
    kb = world_kb()
    cols = dict(answers=[i['answers'] for i in its], title=[i['title'] for i in its], question=[i['question'] for i in its], lang=[i['lang'] for i in its])
    def run(which):
        _claims.cache_clear()
        _passage_claims.cache_clear()
        s = KnowRLScorer(kb)
        t0 = time.perf_counter()
        if which in ('format', 'all'): format_reward(None, comps, **cols)
        if which in ('combined', 'all'): s.combined_reward(None, comps, **cols)
        if which == 'factuality': s.factuality_reward(None, comps, **cols)
        return len(comps) / (time.perf_counter() - t0)
    run('all')  # warm-up: imports, the SQLite file in the page cache
    return {w: round(statistics.median(run(w) for _ in range(repeats)), 1) for w in ('format', 'combined', 'factuality', 'all')}


def reward_share(steps):
    import contextlib, io
    import knowlm_nb.grpo as g
    spent = [0.0]
    original = g.reward_functions
    def timed(cfg):
        out = []
        for f in original(cfg):
            def wrapped(prompts, completions, _f=f, **kw):
                t0 = time.perf_counter()
                try: return _f(prompts, completions, **kw)
                finally: spent[0] += time.perf_counter() - t0
            wrapped.__name__ = f.__name__
            out.append(wrapped)
        return out
    g.reward_functions = timed
    g.tiny_cold_start_path()  # build outside the clock if missing
    out = Path(os.environ.get('TMPDIR', '/tmp'))/f'bench_grpo_{os.getpid()}'
    with contextlib.redirect_stderr(io.StringIO()):
        r = g.grpo(g.GRPOTrainConfig(**{**g.TINY_GRPO_RECIPE, 'max_steps': steps, 'logging_steps': 1, 'out': str(out)}))
    import shutil
    shutil.rmtree(out, ignore_errors=True)
    return {'steps': r.steps, 'train_seconds': round(r.seconds, 2), 'reward_seconds': round(spent[0], 3), 'reward_share': round(spent[0] / r.seconds, 4),
            'completions': r.steps * g.TINY_GRPO_RECIPE['batch_size']}


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=4000)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--steps', type=int, default=6)
    a = ap.parse_args()
    if hasattr(os, 'sched_setaffinity'): os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    comps, its = completion_mix(a.n)
    speed = time_rewards(comps, its, a.repeats)
    print(f"completions/s on one core ({a.n} completions, six kinds, median of {a.repeats} cold runs):")
    for k, v in speed.items(): print(f"  {k:<11} {v:>10,.0f}")
    print(f"  target: combined (format + combined) >= 2,000/s: {'met' if speed['all'] >= 2000 else 'NOT met'}")
    share = reward_share(a.steps)
    print(f"tiny GRPO ({share['steps']} steps, {share['completions']} completions): {share['reward_seconds']}s in rewards of {share['train_seconds']}s "
          f"= {100 * share['reward_share']:.2f}% (target < 5%: {'met' if share['reward_share'] < 0.05 else 'NOT met'})")
    write_results('rewards', {'completions_per_second': speed, 'n_completions': a.n, 'repeats': a.repeats, 'grpo_step_share': share})
