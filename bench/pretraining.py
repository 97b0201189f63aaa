"""Pretraining benchmark: our Trainer path vs a minimal plain-PyTorch loop on the same tiny model and data, the tiny model's build
time and its fact recall; on a GPU also tokens/s and MFU of a ~0.5B Qwen2-shaped model in bf16.

Run: `python bench/pretraining.py [--steps 200] [--runs 3] [--skip-build | --cached-build]` (CPU figures, written to
bench/results/pretraining.json) or `python bench/pretraining.py --gpu` (on a CUDA machine: the project's `pretrain()` on a
0.5B Qwen2 shape with the GPU options off and on, beside a plain-loop floor, written to bench/results/pretraining_gpu.json).
Prints a table; ratios are measured side by side in this run.
"""
import argparse, json, math, os, platform, statistics, sys, tempfile, time
from pathlib import Path
import numpy as np

RESULTS = Path(__file__).resolve().parent/'results'

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

# ---------------------------------------------------------------- GPU: the project's path at 0.5B scale
QWEN05 = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
              num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True)
PEAK_BF16 = {'H100': 989e12, 'H200': 989e12, 'A100': 312e12}  # dense bf16 tensor-core peak, FLOP/s

SMOKE = dict(vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True)  # --smoke: the same script on a CPU, tiny

def flops_per_token(n_params:int, doc_lengths, shape:dict=QWEN05):
    "Training FLOPs per real token: 6N for the weights + 12*L*H*d for attention over a token's own document of length d (token-weighted)."
    d = np.asarray(doc_lengths, dtype=np.float64)
    return 6*n_params + 12*shape['num_hidden_layers']*shape['hidden_size']*float((d*d).sum()/d.sum())

def gpu_setup(work:Path, n_docs:int, seq:int, seed:int=0, shape:dict=QWEN05, doc_max:int|None=None):
    "A random-init Qwen2-0.5B-shaped model and the world tokenizer saved as a local model dir; documents of 64..seq tokens in a chunk index."
    import torch
    from transformers import Qwen2Config, AutoModelForCausalLM
    from knowlm_nb.models import world_tokenizer
    from knowlm_nb.world import make_world, pretrain_documents
    from knowlm_nb.chunking import IndexedDatasetWriter
    tok = world_tokenizer()
    model = AutoModelForCausalLM.from_config(Qwen2Config(**shape, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                                         pad_token_id=tok.pad_token_id), dtype=torch.bfloat16)
    model.save_pretrained(work/'qwen05')
    tok.save_pretrained(work/'qwen05')
    stream = np.concatenate([np.asarray(x, dtype=np.int64) for x in tok([d['text'] for d in pretrain_documents(make_world(), repeats=2)])['input_ids']])
    rng = np.random.default_rng(seed)
    lens = rng.integers(64, (doc_max or seq) + 1, size=n_docs)
    with IndexedDatasetWriter(work/'docs', vocab_size=len(tok)) as w:
        o = 0
        for n in lens:
            if o + n > len(stream): o = 0
            w.add(stream[o:o + n])
            o += n
    return sum(p.numel() for p in model.parameters()), lens

def gpu_pretrain_run(work:Path, name:str, steps:int, device:str='cuda', **kw):
    "One `pretrain()` run on the GPU; returns its run record."
    from knowlm_nb.pretrain import pretrain, PretrainConfig
    from knowlm_nb.core import read_json
    out = work/'runs'/name
    cfg = PretrainConfig(model=str(work/'qwen05'), data=str(work/'docs'), out=str(out), max_len=2048, max_steps=steps, lr=3e-4,
                         warmup_steps=0, logging_steps=1, seed=0, device=device, group_by_length=False, **kw)
    r = pretrain(cfg)
    rec = read_json(out/'run.json')
    rec['losses'] = [h['loss'] for h in r.log_history if 'loss' in h]
    import torch
    if device == 'cuda':
        rec['peak_memory_gib'] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        del r
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    import shutil
    shutil.rmtree(out, ignore_errors=True)
    return rec

def gpu_plain_floor(work:Path, steps:int, batch:int, seed:int=0):
    "The floor outside the Trainer: pure bf16, Liger kernels, all documents in one row under varlen attention, fused AdamW; then a 3-step profile."
    import torch
    from transformers import AutoModelForCausalLM
    from liger_kernel.transformers import apply_liger_kernel_to_qwen2
    from knowlm_nb.pretrain import PackedCollator, load_pretraining_data
    from knowlm_nb.training import register_varlen_attention
    apply_liger_kernel_to_qwen2()
    m = AutoModelForCausalLM.from_pretrained(work/'qwen05', dtype=torch.bfloat16, attn_implementation=register_varlen_attention()).cuda().train()
    m.config.use_cache = False
    data = load_pretraining_data(str(work/'docs'))
    col = PackedCollator(0, 2048, flat=True)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-4, fused=True)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=g).tolist()
    marks, tokens, i = [], 0, 0
    def step():
        nonlocal i, tokens
        if i + batch > len(order): i = 0
        samples = [data[j] for j in order[i:i + batch]]
        i += batch
        b = {k: (v.cuda(non_blocking=True) if hasattr(v, 'cuda') else v) for k, v in col(samples).items()}
        loss = m(**b).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += sum(min(len(s['input_ids']), 2048) for s in samples)
    for _ in range(steps):
        step()
        torch.cuda.synchronize()
        marks.append((time.perf_counter(), tokens))
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(3): step()
        torch.cuda.synchronize()
    ev = sorted(prof.key_averages(), key=lambda e: -e.device_time_total)
    total = sum(e.device_time_total for e in ev if e.device_time_total > 0 and not e.key.startswith('ProfilerStep')) or 1
    top = [{'kernel': e.key[:120], 'share': round(e.device_time_total / total, 4), 'ms_per_step': round(e.device_time_total / 3e3, 2)} for e in ev[:25]]
    from knowlm_nb.training import steady_throughput
    del m, opt
    torch.cuda.empty_cache()
    return steady_throughput(marks), top

def gpu_bench(steps:int=30, compare_steps:int=20, out_json:str|None=None, smoke:bool=False, batches:list|None=None, doc_max:int=2048, select:list|None=None):
    "The project's pretrain() on a 0.5B Qwen2 shape at sequence 2048, options off and on, beside a plain-loop floor; MFU on real tokens."
    import torch
    work = Path(tempfile.mkdtemp())
    shape, device = (SMOKE, 'cpu') if smoke else (QWEN05, 'cuda')
    name = 'cpu (smoke test)' if smoke else torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    n, lens = gpu_setup(work, n_docs=300 if smoke else 6000, seq=2048, shape=shape, doc_max=doc_max)
    fpt = flops_per_token(n, lens, shape)
    import transformers
    res = {'device': name, 'torch': torch.__version__, 'transformers': transformers.__version__, 'parameters': n, 'seq': 2048,
           'flops_per_token': fpt, 'peak_flops': peak, 'doc_lengths': f'64..{doc_max} tokens, uniform', 'command': 'python bench/pretraining.py ' + ' '.join(sys.argv[1:]),
           'mfu_rule': 'steady real tokens/s (steps after the first fifth) x (6N + 12*L*H*E[d^2]/E[d]) / peak bf16 FLOP/s', 'runs': {}}
    def save():
        path = Path(out_json or RESULTS/'pretraining_gpu.json')
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=1) + '\n')
    def mfu(tps): return None if (tps is None or peak is None) else tps * fpt / peak
    # name: (steps, pretrain fields). Order matters: Liger's RoPE patch is global to the process, so every run that must not have
    # it (the unoptimised loss check, the compiled layers, which keep only Liger's fused loss) comes before the first full-Liger run.
    bs = batches or [64, 96]
    V, F = dict(packing=True, attn_implementation='varlen'), dict(packing=True, attn_implementation='flex_attention')
    runs = {'loss check: unoptimised (padded, sdpa, no Liger, bf16 mixed), 8 docs/step': (compare_steps, dict(packing=False, liger=False, attn_implementation='sdpa', precision='bf16', batch_size=8)),
            'loss check: varlen, compiled layers, Liger loss only, bf16 mixed, 8 docs/step': (compare_steps, dict(**V, compile=True, precision='bf16', batch_size=8)),
            **{f'varlen, compiled layers, Liger loss only, pure bf16 + fused AdamW, {b} docs/step': (steps, dict(**V, compile=True, precision='bf16-pure', batch_size=b)) for b in bs},
            'loss check: varlen, Liger, bf16 mixed, 8 docs/step': (compare_steps, dict(**V, precision='bf16', batch_size=8)),
            **{f'varlen, Liger, pure bf16 + fused AdamW, {b} docs/step': (steps, dict(**V, precision='bf16-pure', batch_size=b)) for b in bs},
            f'flex (rows of 2048), Liger, pure bf16 + fused AdamW, {bs[0]} docs/step': (steps, dict(**F, precision='bf16-pure', batch_size=bs[0]))}
    if select: runs = {k: v for k, v in runs.items() if any(x in k for x in select)}
    if smoke: runs = {k: (3, {**kw, 'liger': False, 'precision': 'fp32', 'attn_implementation': 'sdpa' if kw.get('attn_implementation') == 'flex_attention' else kw.get('attn_implementation')})
                      for k, (_, kw) in list(runs.items())[:3]}
    for label, (k, kw) in runs.items():
        t0 = time.perf_counter()
        try:
            rec = gpu_pretrain_run(work, f"run{len(res['runs'])}", k, device, **kw)
            tps = rec.get('steady_tokens_per_second')
            res['runs'][label] = {'options': kw, 'steps': k, 'steady_tokens_per_second': tps, 'mfu': mfu(tps), 'micro_batch': rec['micro_batch'],
                                  'gpu_options': rec['gpu_options'], 'peak_memory_gib': rec.get('peak_memory_gib'), 'losses': rec['losses'],
                                  'wall_seconds': round(time.perf_counter() - t0, 1)}
        except Exception as e:
            res['runs'][label] = {'options': kw, 'error': f"{type(e).__name__}: {str(e)[:400]}"}
        if 'error' in res['runs'][label]:  # (outside the except block, whose traceback keeps the failed run's tensors alive)
            import gc
            gc.collect()
            if device == 'cuda': torch.cuda.empty_cache()
        print(label, {k_: v for k_, v in res['runs'][label].items() if k_ != 'losses'}, flush=True)
        save()
    if not smoke and (not select or 'floor' in select):
        try:
            tps, prof = gpu_plain_floor(work, steps, bs[0])
            res['runs'][f'plain loop floor: varlen, Liger, pure bf16, fused AdamW, {bs[0]} docs/step'] = {'steady_tokens_per_second': tps, 'mfu': mfu(tps)}
            res['floor_profile_top_kernels'] = prof
        except Exception as e:
            res['runs']['plain loop floor'] = {'error': f"{type(e).__name__}: {str(e)[:400]}"}
    a = res['runs'].get('loss check: unoptimised (padded, sdpa, no Liger, bf16 mixed), 8 docs/step', {}).get('losses')
    res['loss_check'] = {}
    for label in [k for k in res['runs'] if k.startswith('loss check:') and 'unoptimised' not in k]:
        b = res['runs'][label].get('losses')
        if a and b: res['loss_check'][label] = {'max_abs_diff_first_steps': max(abs(x - y) for x, y in zip(a, b)), 'unoptimised': a, 'optimised': b}
    save()
    return res

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--steps', type=int, default=200); p.add_argument('--runs', type=int, default=3); p.add_argument('--skip-build', action='store_true')
    p.add_argument('--cached-build', action='store_true', help="report the cached tiny_lm's build record instead of building it afresh")
    p.add_argument('--gpu', action='store_true', help='only the GPU measurement (needs CUDA and liger-kernel)')
    p.add_argument('--gpu-steps', type=int, default=30, help='steps of each GPU throughput run')
    p.add_argument('--gpu-doc-max', type=int, default=2048, help='longest document (tokens); lengths are uniform from 64')
    p.add_argument('--gpu-batches', help='micro batches (documents per step) of the throughput runs (default 64,96)')
    p.add_argument('--smoke', action='store_true', help='with --gpu: run the GPU script on the CPU with a tiny model (checks the script, measures nothing)')
    p.add_argument('--gpu-select', help="only the runs whose label holds one of these comma-separated words ('floor' for the plain loop)")
    p.add_argument('--out-json', help='where to write the figures (default: bench/results/pretraining[_gpu].json)')
    a = p.parse_args()
    if a.gpu:
        res = gpu_bench(a.gpu_steps, out_json=a.out_json or (tempfile.mkdtemp() + '/smoke.json' if a.smoke else None), smoke=a.smoke,
                        batches=[int(x) for x in a.gpu_batches.split(',')] if a.gpu_batches else None, doc_max=a.gpu_doc_max,
                        select=a.gpu_select.split(',') if a.gpu_select else None)
        print(f"\n{res['device']}, {res['parameters']/1e6:.0f}M params, seq 2048, MFU on real tokens (peak {res['peak_flops'] or 0:.3g} FLOP/s)")
        for k, v in res['runs'].items():
            if 'error' in v: print(f"{k:<80} error: {v['error'][:120]}")
            else: print(f"{k:<80} {v['steady_tokens_per_second'] or 0:>10,.0f} tok/s  MFU {v['mfu'] or float('nan'):.3f}")
        for k, v in res.get('loss_check', {}).items(): print(f"{k}: largest loss difference from the unoptimised run over the first steps {v['max_abs_diff_first_steps']:.4f}")
        for row in res.get('floor_profile_top_kernels', [])[:15]: print(f"  {row['share']:6.1%} {row['ms_per_step']:8.2f} ms/step  {row['kernel']}")
        return
    if a.runs < 3: p.error('--runs must be at least 3 (medians of fewer are not reported)')
    import torch
    from knowlm_nb.pretrain import load_pretraining_data, CausalLMCollator, PackedCollator, TINY_LM_RECIPE, tiny_lm_path, fact_recall, tiny_lm
    from knowlm_nb.models import world_tokenizer, tiny_config, build_model, n_params
    from knowlm_nb.world import make_world, pretrain_documents
    from knowlm_nb.core import read_json
    from knowlm_nb.training import resolve_precision
    tok = world_tokenizer()
    data = load_pretraining_data([d['text'] for d in pretrain_documents(make_world(), repeats=1)], tok, 256)
    kw = dict(hidden_size=TINY_LM_RECIPE['hidden_size'], n_layers=TINY_LM_RECIPE['n_layers'], n_heads=TINY_LM_RECIPE['n_heads'], doc_repeats=1, max_len=256,
              precision=resolve_precision(TINY_LM_RECIPE.get('precision', 'fp32'), 'cpu'), packing=TINY_LM_RECIPE.get('packing', False))
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
    figures = {'torch': torch.__version__, 'steps': a.steps, 'runs': a.runs, 'plain_tokens_per_s': round(tps['plain']), 'trainer_tokens_per_s': round(tps['trainer']),
               'ratio_plain_over_trainer': round(tps['plain']/tps['trainer'], 3),
               'batching_real_tokens_per_s': {k: round(v) for k, v in tps_b.items()}}
    if not a.skip_build:
        figures['tiny_lm'] = {'first_build_seconds': None if home is None else round(first, 1), 'build_record_seconds': b.get('build_seconds', b['seconds']),
                              'cached_load_seconds': round(load, 2), 'steps': b['steps'], 'tokens': b['tokens'],
                              'recall_train': {k: round(v, 3) for k, v in tr.items()}, 'recall_heldout': {k: round(v, 3) for k, v in ho.items()}}
    from results_io import write_results
    write_results('pretraining', figures, a.out_json)

if __name__ == '__main__': main()
