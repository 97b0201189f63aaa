"The one place bench scripts write their figures: bench/results/<name>.json, which the README and notebooks quote."
import json, os, platform, sys, time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent/'results'

def write_results(name:str, figures:dict, path:str|None=None)->Path:
    "Write `figures` with the machine, the command and the date to bench/results/<name>.json (atomically)."
    out = Path(path) if path else RESULTS/f'{name}.json'
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {'command': 'python bench/' + Path(sys.argv[0]).name + (' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''),
              'date': time.strftime('%Y-%m-%d'), 'machine': f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}",
              'load_average_at_end': [round(x, 2) for x in os.getloadavg()] if hasattr(os, 'getloadavg') else None, **figures}
    tmp = out.with_name(f'.{out.name}.tmp')
    tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False) + '\n', encoding='utf-8')
    os.replace(tmp, out)
    print(f"figures written to {out}")
    return out
