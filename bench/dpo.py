"""DPO benchmark on the tiny model: knowledge pairs built (and checked) per second, and `dpo()`'s tokens/s against a plain PyTorch
DPO loop on the same start model, LoRA adapter, pairs and batch size (reference log-probabilities precomputed in both, the output
layer applied only at answer positions in both, DPO's sigmoid loss plus the SFT term on the chosen answer, AdamW, linear schedule,
clipping).

Also the held-out figures of the cached tiny DPO model against its SFT start (`dpo_comparison`): preference accuracy per
perturbation, answer accuracy and fact precision.

Run: `python bench/dpo.py [--steps 100] [--runs 3] [--skip-accuracy]`. Every training run is its own process; the two paths
alternate and the ratio is of medians measured side by side in this run. Writes bench/results/dpo.json.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_results

COMMON = dict(warmup_steps=0, logging_steps=10**6, seed=0, device='cpu', precision='fp32')

def pairs_per_second(repeats:int=3)->dict:
    "Pairs built by `knowledge_pairs` (training split, the tiny recipe's shape) per second, and pairs checked by `check_pair` per second."
    from knowlm_nb.dpo import knowledge_pairs, check_pair, TINY_DPO_RECIPE
    from knowlm_nb.world import make_world
    w = make_world()
    check_pair(w, knowledge_pairs(w, n_facts=TINY_DPO_RECIPE['n_facts'])[0])  # warm the parser's cache
    build, check = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        pairs = knowledge_pairs(w, n_facts=TINY_DPO_RECIPE['n_facts'])
        build.append(len(pairs) / (time.perf_counter() - t))
        t = time.perf_counter()
        for p in pairs: check_pair(w, p)
        check.append(len(pairs) / (time.perf_counter() - t))
    return {'pairs': len(pairs), 'built_per_second': round(statistics.median(build)), 'checked_per_second': round(statistics.median(check))}

def _cfg(steps):
    from knowlm_nb.dpo import DPOTrainConfig, TINY_DPO_RECIPE
    from knowlm_nb.core import merge_config
    return merge_config(DPOTrainConfig, {**TINY_DPO_RECIPE, **COMMON, 'max_steps': steps})

def child_dpo(steps:int)->dict:
    "One `dpo()` run (TRL's DPOTrainer on the training core) in this process."
    from knowlm_nb.dpo import dpo
    with tempfile.TemporaryDirectory() as d:
        r = dpo(_cfg(steps), out=d)
    return {'tokens_per_second': r.record['steady_tokens_per_second'], 'steps': r.steps}

def child_plain(steps:int)->dict:
    "The floor: the same LoRA policy and pairs in a plain PyTorch DPO loop, steady-state tokens/s."
    import dataclasses, torch
    import torch.nn.functional as F
    from knowlm_nb.dpo import dpo_pairs, policy_start, preference_rows
    from knowlm_nb.sft import sft_model_and_tokenizer
    from knowlm_nb.core import seed_everything
    from knowlm_nb.training import steady_throughput
    cfg = _cfg(steps)
    seed_everything(0)
    model, tok = sft_model_and_tokenizer(dataclasses.replace(cfg, model=policy_start(cfg)), 'cpu', 'fp32')
    rows, _ = preference_rows(dpo_pairs(cfg), tok, cfg.max_len)
    enc = lambda s: tok(s, add_special_tokens=False)['input_ids']
    data = []
    for r in rows:
        p = enc(r['prompt'])
        data.append([(p + enc(r[k]) + [tok.eos_token_id], len(p)) for k in ('chosen', 'rejected')])

    def batch(pairs):
        seqs = [s for pr in pairs for s in (pr[0], pr[1])]
        seqs = seqs[0::2] + seqs[1::2]  # chosen first, then rejected, as TRL concatenates them
        n = max(len(s) for s, _ in seqs)
        ids = torch.full((len(seqs), n), tok.pad_token_id)
        att, mask = torch.zeros(len(seqs), n, dtype=torch.long), torch.zeros(len(seqs), n)
        for i, (s, k) in enumerate(seqs):
            ids[i, :len(s)], att[i, :len(s)], mask[i, k:len(s)] = torch.tensor(s), 1, 1
        return ids, att, mask

    base = model.get_base_model()
    def logps(ids, att, mask):  # the output layer only where there is a label, as TRL's head does with trl_labelled_positions_only
        h = base.model(input_ids=ids, attention_mask=att).last_hidden_state[:, :-1]
        m = mask[:, 1:].bool()
        lab = torch.gather(base.lm_head(h[m]).log_softmax(-1), 1, ids[:, 1:][m].unsqueeze(-1)).squeeze(-1)
        return torch.zeros(m.shape).masked_scatter(m, lab), mask[:, 1:]

    bs, g = cfg.batch_size, torch.Generator().manual_seed(0)
    ref = torch.zeros(len(data), 2)
    with torch.no_grad(), model.disable_adapter():  # precomputed reference log-probs, as precompute_ref=True does
        for i in range(0, len(data), bs):
            ref[i:i + bs] = logps(*batch(data[i:i + bs]))[0].sum(-1).view(2, -1).T
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s/steps))
    order, i, tokens, marks = torch.randperm(len(data), generator=g).tolist(), 0, 0, []
    model.train()
    for step in range(steps):
        if i + bs > len(order): order, i = torch.randperm(len(data), generator=g).tolist(), 0
        idx = order[i:i + bs]
        i += bs
        ids, att, mask = batch([data[j] for j in idx])
        per_tok, m = logps(ids, att, mask)
        lp = per_tok.sum(-1).view(2, -1)
        delta = (lp[0] - ref[idx, 0]) - (lp[1] - ref[idx, 1])
        nll = -per_tok[:bs][m[:bs].bool()].mean()
        loss = cfg.loss_weights[0] * -F.logsigmoid(cfg.beta * delta).mean() + cfg.loss_weights[1] * nll
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(att.sum())
        marks.append((time.perf_counter(), tokens))
    return {'tokens_per_second': steady_throughput(marks), 'steps': steps}

def accuracy()->dict:
    "Held-out figures of the cached tiny DPO model against its SFT start."
    from knowlm_nb.dpo import tiny_dpo, tiny_dpo_path, tiny_sft_merged_path, dpo_comparison
    from knowlm_nb.models import load_model
    from knowlm_nb.core import read_json
    policy, tok = tiny_dpo()
    pref, ans = dpo_comparison(load_model(str(tiny_sft_merged_path()), device='cpu'), policy, tok)
    return {'preference': pref, 'answers': ans, 'build_seconds': read_json(tiny_dpo_path().parent/'build.json')['seconds']}

def run_child(args:list)->dict:
    "Run this script as a child; its last stdout line is the JSON result."
    r = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env={**os.environ, 'KNOWLM_NB_DEVICE': 'cpu'})
    if r.returncode != 0: raise SystemExit(f"child {args} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--steps', type=int, default=100)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--skip-accuracy', action='store_true', help='only the throughput figures')
    ap.add_argument('--child', default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child_plain(a.steps) if a.child == 'plain' else child_dpo(a.steps)))
        return
    from knowlm_nb.dpo import tiny_sft_merged_path
    tiny_sft_merged_path()  # build the start model once, outside the timed runs
    built = pairs_per_second()
    print(f"{built['pairs']:,} pairs: built {built['built_per_second']:,}/s, checked against the world {built['checked_per_second']:,}/s")
    ours, plain = [], []
    for _ in range(a.runs):  # alternate, so drift in the machine's speed hits both alike
        ours.append(run_child(['--child', 'dpo', '--steps', str(a.steps)])['tokens_per_second'])
        plain.append(run_child(['--child', 'plain', '--steps', str(a.steps)])['tokens_per_second'])
    ratio = statistics.median(plain) / statistics.median(ours)
    print(f"plain PyTorch DPO loop {statistics.median(plain):,.0f} tokens/s vs dpo() {statistics.median(ours):,.0f}: ratio {ratio:.3f} (target <= 1.3)")
    acc = None if a.skip_accuracy else accuracy()
    if acc:
        for r in acc['preference']: print(r)
        for r in acc['answers']: print(r)
    write_results('dpo', {'pairs': built, 'steps': a.steps, 'runs': a.runs, 'batch_size': _cfg(1).batch_size,
                          'plain_dpo_loop_tokens_per_second': round(statistics.median(plain)), 'dpo_tokens_per_second': round(statistics.median(ours)),
                          'plain_over_dpo': round(ratio, 3), 'plain_runs': [round(x) for x in plain], 'dpo_runs': [round(x) for x in ours],
                          'accuracy': acc})

if __name__ == '__main__':
    main()
