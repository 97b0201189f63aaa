"""Pretraining benchmark: our Trainer path vs a minimal plain-PyTorch loop on the same tiny model and data, the tiny model's build
time and its fact recall; on a GPU also tokens/s and MFU of a ~0.5B Qwen2-shaped model in bf16.

Run: `python bench/pretraining.py [--steps 200] [--runs 3] [--skip-build | --cached-build]`. Prints a table; ratios are measured side by side in this run.
"""
import argparse, math, os, platform, statistics, sys, tempfile, time
from pathlib import Path

def plain_loop(model, data, collator, steps, batch_size, lr, seed, bf16=False):
    "The floor: shuffled batches, AdamW, cosine schedule, clipping (bf16 autocast when the recipe uses it). Returns (seconds, tokens)."
    import torch
    model.config.use_cache = False  # as the Trainer does for training (packed batches need it)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5*(1 + math.cos(math.pi*s/steps)))
    model.train(); order = torch.randperm(len(data), generator=g).tolist(); tokens = 0; i = 0
    t0 = time.perf_counter()
    for step in range(steps):
        if i + batch_size > len(order): order = torch.randperm(len(data), generator=g).tolist(); i = 0
        samples = [data[j] for j in order[i:i + batch_size]]; i += batch_size
        b = collator(samples)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16): loss = model(**b).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
        tokens += sum(len(s['input_ids']) for s in samples)
    return time.perf_counter() - t0, tokens

def trainer_run(cfg_kw, steps, batch_size, lr, seed, out):
    from knowlm_nb.pretrain import pretrain, PretrainConfig
    r = pretrain(PretrainConfig(out=out, max_steps=steps, batch_size=batch_size, lr=lr, seed=seed, warmup_steps=0, logging_steps=steps,
                                **{'group_by_length': False, **cfg_kw}))
    return r.seconds, r.tokens  # tokens: real (unpadded) tokens, the same for every batching of the same samples

BATCHING = {'padded, random order': dict(packing=False, group_by_length=False),
            'padded, grouped by length': dict(packing=False, group_by_length=True),
            'packed, random order': dict(packing=True, group_by_length=False)}

def gpu_mfu(steps=20, seq=2048, batch=8):
    import torch
    from transformers import Qwen2Config, AutoModelForCausalLM
    cfg = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                      num_key_value_heads=2, max_position_embeddings=seq, tie_word_embeddings=True)
    m = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation='sdpa').cuda()
    n = sum(p.numel() for p in m.parameters())
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True)
    x = torch.randint(0, cfg.vocab_size, (batch, seq), device='cuda')
    for i in range(steps + 3):
        if i == 3: torch.cuda.synchronize(); t0 = time.perf_counter()
        loss = m(input_ids=x, labels=x).loss; loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize(); dt = time.perf_counter() - t0
    tps = steps*batch*seq/dt
    flops_per_token = 6*n + 12*cfg.num_hidden_layers*cfg.hidden_size*seq  # params + attention
    peak = {'H100': 989e12, 'H200': 989e12, 'A100': 312e12}.get(next((k for k in ('H100', 'H200', 'A100') if k in torch.cuda.get_device_name()), ''), None)
    return n, tps, (tps*flops_per_token/peak if peak else float('nan')), torch.cuda.get_device_name()

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--steps', type=int, default=200); p.add_argument('--runs', type=int, default=3); p.add_argument('--skip-build', action='store_true')
    p.add_argument('--cached-build', action='store_true', help="report the cached tiny_lm's build record instead of building it afresh")
    a = p.parse_args()
    if a.runs < 3: p.error('--runs must be at least 3 (medians of fewer are not reported)')
    import torch
    from knowlm_nb.pretrain import load_pretraining_data, CausalLMCollator, PackedCollator, TINY_LM_RECIPE, tiny_lm_path, fact_recall, tiny_lm
    from knowlm_nb.models import world_tokenizer, tiny_config, build_model, n_params
    from knowlm_nb.world import make_world, pretrain_documents
    from knowlm_nb.core import read_json, knowlm_home
    tok = world_tokenizer()
    data = load_pretraining_data([d['text'] for d in pretrain_documents(make_world(), repeats=1)], tok, 256)
    kw = dict(hidden_size=TINY_LM_RECIPE['hidden_size'], n_layers=TINY_LM_RECIPE['n_layers'], n_heads=TINY_LM_RECIPE['n_heads'], doc_repeats=1, max_len=256,
              precision=TINY_LM_RECIPE.get('precision', 'fp32'), packing=TINY_LM_RECIPE.get('packing', False))
    bs, lr = TINY_LM_RECIPE['batch_size'], TINY_LM_RECIPE['lr']
    res = {'trainer': [], 'plain': []}
    for run in range(a.runs):  # alternate the two so that machine load hits both alike
        m = build_model(tiny_config('llama', tokenizer=tok, hidden_size=kw['hidden_size'], n_layers=kw['n_layers'], n_heads=kw['n_heads'], max_position_embeddings=512), seed=run)
        col = (PackedCollator if kw['packing'] else CausalLMCollator)(tok.pad_token_id, 256)
        res['plain'].append(plain_loop(m, data, col, a.steps, bs, lr, run, bf16=kw['precision'] == 'bf16'))
        with tempfile.TemporaryDirectory() as d: res['trainer'].append(trainer_run(kw, a.steps, bs, lr, run, d + '/run'))
    batching = {k: [] for k in BATCHING}
    for run in range(a.runs):  # the Trainer path under three batchings of the same samples, interleaved
        for name, over in BATCHING.items():
            with tempfile.TemporaryDirectory() as d:  # on tiny_lm's own samples (doc_repeats of the recipe)
                batching[name].append(trainer_run({**kw, 'doc_repeats': TINY_LM_RECIPE['doc_repeats'], **over}, a.steps, bs, lr, run, d + '/run'))
    tps = {k: statistics.median(t/s for s, t in v) for k, v in res.items()}
    tps_b = {k: statistics.median(t/s for s, t in v) for k, v in batching.items()}
    print(f"knowlm_nb pretraining bench — python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())}; tiny Llama {n_params(m):,} params, {kw['precision']}, "
          f"{'packed' if kw['packing'] else 'padded'} batches, {a.steps} steps x batch {bs}, median of {a.runs}")
    print(f"{'what':<58} {'value':>12}")
    print(f"{'plain PyTorch loop, tokens/s':<58} {tps['plain']:>12,.0f}")
    print(f"{'our Trainer path (pretrain), tokens/s':<58} {tps['trainer']:>12,.0f}")
    print(f"{'ratio plain / Trainer (target <= 1.15)':<58} {tps['plain']/tps['trainer']:>12.3f}")
    for name, v in tps_b.items(): print(f"{'tiny_lm samples, Trainer, ' + name + ', real tokens/s':<58} {v:>12,.0f}")
    if not a.skip_build:
        home = None
        if not a.cached_build:  # a first build, timed now, in an empty cache (the world tokenizer is rebuilt too)
            home = tempfile.TemporaryDirectory(); os.environ['KNOWLM_NB_HOME'] = home.name
        t0 = time.perf_counter(); p_ = tiny_lm_path(); first = time.perf_counter() - t0
        b = read_json(p_.parent/'build.json')
        t0 = time.perf_counter(); model, t = tiny_lm(); load = time.perf_counter() - t0
        w = make_world()
        tr, ho = fact_recall(model, t, w, 'train'), fact_recall(model, t, w, 'heldout')
        if home is None: print(f"{'tiny_lm build time, s (from its build record; --cached-build)':<58} {b.get('build_seconds', b['seconds']):>12.1f}")
        else: print(f"{'tiny_lm first build, s (empty cache, target <= 180)':<58} {first:>12.1f}")
        print(f"{'tiny_lm cached load, s':<58} {load:>12.2f}")
        print(f"{'tiny_lm steps / tokens':<58} {str(b['steps']) + ' / ' + format(b['tokens'], ','):>12}")
        for k in ('en', 'zh', 'all'): print(f"{'fact recall, training templates, ' + k:<58} {tr[k]:>12.3f}")
        for k in ('en', 'zh', 'all'): print(f"{'fact recall, held-out templates, ' + k:<58} {ho[k]:>12.3f}")
    if torch.cuda.is_available():
        n, tps_gpu, mfu, name = gpu_mfu()
        print(f"{'GPU ' + name + ': Qwen2-shaped ' + format(n/1e6, '.0f') + 'M bf16, tokens/s':<58} {tps_gpu:>12,.0f}")
        print(f"{'GPU MFU (target >= 0.40 on an H100)':<58} {mfu:>12.3f}")
    else:
        print(f"{'GPU tokens/s and MFU':<58} {'no GPU here':>12}")

if __name__ == '__main__': main()
