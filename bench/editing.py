"""Knowledge editing: seconds per edit and EasyEdit's metrics for every method on the tiny model, and seconds per ROME edit at GPT-2-small size.

Run: `.venv/bin/python bench/editing.py [--n 20] [--gpt2-edits 3]`. Writes bench/results/editing.json.
Tiny model: the cached tiny pretrained model (2 layers, width 128), `--n` of the world's training edits, independent mode
(each edit on the original weights, undone after measuring), the 'tiny' presets (ROME: the spill-aware value, C = I), plus ROME
with EasyEdit's value (δ at the subject only) with C = I and with C from the world's documents. Protocol: teacher-forced token accuracy;
locality = agreement with the pre-edit predictions; rewrite_generated = greedy generation contains the new object.
GPT-2-small size: a random-init GPT-2 of 12 layers, width 768 (the world tokenizer's vocabulary), ROME with EasyEdit's gpt2-xl
settings at layer 5 (20 steps on 21 templates of 10 tokens, no covariance); timing only, its metrics mean nothing.
"""
import argparse, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_results

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n', type=int, default=20, help='world edits per method on the tiny model')
    p.add_argument('--gpt2-edits', type=int, default=3, help='ROME edits timed on the GPT-2-small-sized model')
    a = p.parse_args()
    import torch
    from transformers import GPT2Config, AutoModelForCausalLM
    from knowlm_nb.editing import edit, world_edit_requests, EDIT_METHODS
    from knowlm_nb.models import load_model, load_tokenizer, world_tokenizer
    from knowlm_nb.pretrain import tiny_lm_path
    path = str(tiny_lm_path())
    model, tok = load_model(path, device='cpu').eval(), load_tokenizer(path)
    reqs = world_edit_requests(n=a.n)
    pool = world_edit_requests()[a.n:]
    tiny = []
    runs = [(m, {}) for m in EDIT_METHODS] + [('rome', {'spill_aware': False}), ('rome', {'spill_aware': False, 'covariance': True})]
    for m, over in runs:
        r = edit(model, tok, reqs, method=m, ike_pool=pool, progress=False, **over)
        tiny.append({**r.summary(), 'hparams': r.hparams})
        print(tiny[-1], flush=True)
    wt = world_tokenizer()
    torch.manual_seed(0)
    g = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=len(wt), n_embd=768, n_layer=12, n_head=12, n_positions=256,
                                                    bos_token_id=wt.bos_token_id, eos_token_id=wt.eos_token_id)).eval()
    n_params = sum(x.numel() for x in g.parameters())
    t0 = time.perf_counter()
    r = edit(g, wt, reqs[:a.gpt2_edits], method='rome', preset='gpt2-xl', layer=5, generate=False, progress=False)
    gpt2 = {'parameters': n_params, 'layers': 12, 'width': 768, 'edits': a.gpt2_edits, 'seconds_per_edit': round(r.seconds_per_edit, 2),
            'seconds_with_templates': round((time.perf_counter() - t0) / a.gpt2_edits, 2), 'hparams': r.hparams}
    print(gpt2)
    print(f"\n{'method':<6} {'variant':<32} {'rewrite':>8} {'rephrase':>9} {'locality':>9} {'portab.':>8} {'generated':>10} {'fluency':>8} {'s/edit':>7}")
    for s in tiny: print(f"{s['method']:<6} {s['variant']:<32} {s['rewrite']:>8.3f} {s['rephrase']:>9.3f} {s['locality']:>9.3f} {s['portability']:>8.3f} {s['rewrite_generated']:>10.3f} {s['fluency']:>8.2f} {s['seconds_per_edit']:>7.3f}")
    print(f"ROME at GPT-2-small size ({n_params / 1e6:.0f}M parameters): {gpt2['seconds_per_edit']:.2f} s per edit")
    write_results('editing', {'threads': torch.get_num_threads(), 'tiny_model': {'edits': a.n, 'mode': 'independent', 'methods': tiny},
                              'gpt2_small_rome': gpt2})

if __name__ == '__main__': main()
