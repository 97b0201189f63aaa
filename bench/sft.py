"""SFT benchmark on the tiny pretrained model and the world's knowledge set: trainable-parameter share, tokens/s and peak RSS
for full fine-tuning, LoRA and QLoRA through `sft()`, and the SFT path's tokens/s against a plain PyTorch LoRA loop.

Also the held-out answer accuracy of the untuned base and of the cached tiny SFT models (vanilla; knowledge with 0 and with 1
context fact), built with `TINY_SFT_RECIPE` on first use.

Run: `python bench/sft.py [--steps 150] [--runs 3] [--skip-accuracy]`. Every measurement runs in its own process (so peak RSS is that run's own);
the SFT path and the plain loop alternate, and the ratio is of medians measured side by side in this run.
Writes bench/results/sft.json.
"""
import argparse, json, os, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_results

MODES = {'full fine-tuning': dict(lora=False, lr=1e-3), 'LoRA': dict(), 'QLoRA (4-bit NF4)': dict(quantization='4bit')}
COMMON = dict(batch_size=16, grad_accum=1, warmup_steps=0, group_by_length=False, logging_steps=10**6, seed=0, device='cpu', precision='fp32')

def child_sft(mode:str, steps:int)->dict:
    "One `sft()` run in this process."
    from knowlm_nb.sft import sft, TINY_SFT_RECIPE, SFTConfig
    from knowlm_nb.core import merge_config
    cfg = merge_config(SFTConfig, {**TINY_SFT_RECIPE, **COMMON, **MODES[mode], 'max_steps': steps})
    with tempfile.TemporaryDirectory() as d:
        r = sft(cfg, out=d)
    return {'trainable_share': r.record['trainable_parameters'] / r.record['parameters'], 'trainable_parameters': r.record['trainable_parameters'],
            'tokens_per_second': r.record['steady_tokens_per_second'], 'steps': r.steps}

def child_plain(steps:int)->dict:
    "The floor: the same LoRA model and batches in a plain PyTorch loop (AdamW, linear schedule, clipping), steady-state tokens/s."
    import torch
    from knowlm_nb.sft import sft_model_and_tokenizer, sft_data, SFTCollator, TINY_SFT_RECIPE, SFTConfig
    from knowlm_nb.core import merge_config, seed_everything
    from knowlm_nb.training import steady_throughput
    cfg = merge_config(SFTConfig, {**TINY_SFT_RECIPE, **COMMON, 'max_steps': steps})
    seed_everything(0)
    model, tok = sft_model_and_tokenizer(cfg, 'cpu', 'fp32')
    data = sft_data(cfg, tok, 'alpaca')
    col = SFTCollator(tok.pad_token_id)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s/steps))
    g = torch.Generator().manual_seed(0)
    order, i, tokens, marks = torch.randperm(len(data), generator=g).tolist(), 0, 0, []
    model.train()
    for step in range(steps):
        if i + cfg.batch_size > len(order):
            order, i = torch.randperm(len(data), generator=g).tolist(), 0
        samples = [data[j] for j in order[i:i + cfg.batch_size]]
        i += cfg.batch_size
        loss = model(**col(samples)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        tokens += sum(len(s['input_ids']) for s in samples)
        marks.append((time.perf_counter(), tokens))
    return {'tokens_per_second': steady_throughput(marks), 'steps': steps}

def accuracy()->dict:
    "Held-out answer accuracy and fact precision of the untuned base and the tiny SFT variants (cached builds)."
    from knowlm_nb.sft import tiny_sft, tiny_sft_path, sft_eval_items, answer_accuracy, fact_precision
    from knowlm_nb.pretrain import tiny_lm
    from knowlm_nb.world import make_world
    from knowlm_nb.core import read_json
    w, items = make_world(), sft_eval_items()
    base, tok = tiny_lm()
    out = {'held_out_questions': len(items)}
    variants = {'untuned base': None, 'vanilla SFT': ('vanilla', {}), 'knowledge SFT (recipe: no context fact)': ('knowledge', {}),
                'knowledge SFT, 1 context fact': ('knowledge', {'context_facts': 1})}
    for name, v in variants.items():
        m = base if v is None else tiny_sft(v[0], **v[1])[0]
        acc, done = answer_accuracy(m, tok, items, return_items=True)
        fp = fact_precision(w, [(d['completion'], d['lang']) for d in done])
        out[name] = {'held_out_acc': round(acc['all'], 3), 'en': round(acc['en'], 3), 'zh': round(acc['zh'], 3),
                     'fact_precision': None if fp['true'] is None else round(fp['true'], 3)}
        if v is not None: out[name]['build_seconds'] = read_json(tiny_sft_path(v[0], **v[1]).parent/'build.json')['seconds']
    return out

def run_child(args:list)->dict:
    "Run this script as a child; its last stdout line is the JSON result, with the child's peak RSS."
    r = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env={**os.environ, 'KNOWLM_NB_DEVICE': 'cpu'})
    if r.returncode != 0: raise SystemExit(f"child {args} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--steps', type=int, default=150)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--skip-accuracy', action='store_true', help='only the throughput figures')
    ap.add_argument('--child', default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        res = child_plain(a.steps) if a.child == 'plain' else child_sft(a.child, a.steps)
        res['peak_rss_mb'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps(res))
        return
    from knowlm_nb.pretrain import tiny_lm_path
    tiny_lm_path()  # build the base once, outside the timed runs
    modes = {}
    for mode in MODES:
        runs = [run_child(['--child', mode, '--steps', str(a.steps)]) for _ in range(a.runs if mode != 'LoRA' else 1)]
        modes[mode] = {'trainable_share': round(runs[0]['trainable_share'], 4), 'trainable_parameters': runs[0]['trainable_parameters'],
                       'tokens_per_second': round(statistics.median(r['tokens_per_second'] for r in runs)),
                       'peak_rss_mb': max(r['peak_rss_mb'] for r in runs), 'runs': len(runs)}
    ours, plain = [], []
    for _ in range(a.runs):  # alternate, so drift in the machine's speed hits both alike
        ours.append(run_child(['--child', 'LoRA', '--steps', str(a.steps)])['tokens_per_second'])
        plain.append(run_child(['--child', 'plain', '--steps', str(a.steps)])['tokens_per_second'])
    ratio = statistics.median(plain) / statistics.median(ours)
    modes['LoRA']['tokens_per_second'] = round(statistics.median(ours))
    print(f"{'mode':<20}{'trainable':>12}{'share':>9}{'tokens/s':>10}{'peak RSS MB':>13}")
    for k, v in modes.items(): print(f"{k:<20}{v['trainable_parameters']:>12,}{v['trainable_share']:>9.2%}{v['tokens_per_second']:>10,}{v['peak_rss_mb']:>13,}")
    print(f"plain PyTorch LoRA loop {statistics.median(plain):,.0f} tokens/s vs sft() {statistics.median(ours):,.0f}: ratio {ratio:.3f} (target <= 1.15)")
    acc = None if a.skip_accuracy else accuracy()
    if acc:
        for k, v in acc.items():
            if isinstance(v, dict): print(f"{k:<42} held-out acc {v['held_out_acc']:.3f} (en {v['en']:.3f}, zh {v['zh']:.3f}); fact precision {v['fact_precision']}")
    write_results('sft', {'accuracy': acc, 'steps': a.steps, 'runs': a.runs, 'batch_size': COMMON['batch_size'], 'modes': modes,
                          'plain_lora_loop_tokens_per_second': round(statistics.median(plain)), 'sft_lora_tokens_per_second': round(statistics.median(ours)),
                          'plain_over_sft': round(ratio, 3), 'plain_runs': [round(x) for x in plain], 'sft_runs': [round(x) for x in ours]})

if __name__ == '__main__':
    main()
