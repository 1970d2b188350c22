r"""What a job of two processes does when one fails: the fault cases of
tests/test_host_failures.py, each printed as the exit codes, the seconds
from the fault to the last exit, and each process's last line.

  python benchmarks/host_failures.py . DATA_DIR   # DATA_DIR: fine_gratings/tiny

ARGV[1] is the checkout to run (another one measures its code); CASES
(environment) picks cases, e.g. CASES=kill,term.
"""
import os, signal, subprocess, sys, time, tempfile, socket
ROOT = os.path.abspath(sys.argv[1])
sys.path.insert(0, ROOT)
os.chdir(ROOT)
os.environ['PYTHONPATH'] = ROOT
from tests.helpers import tiny_demo_args
DATA = sys.argv[2]

def run(name, steps, flags, faults, trigger=None):
  tmp = tempfile.mkdtemp()
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
  data = DATA if name != 'unprepared' else os.path.join(tmp, 'tfds')
  procs, logs = [], []
  for i in range(2):
    code = ('import os, sys; os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"; '
            'os.environ["JAX_PLATFORMS"] = "cpu"; ' + (faults[i] or 'pass') +
            '; from absl import app; from resizer import main; sys.argv = sys.argv[1:]; app.run(main.main)')
    logs.append(os.path.join(tmp, f'{i}.log'))
    procs.append(subprocess.Popen([sys.executable, '-c', code, *tiny_demo_args(os.path.join(tmp, 'run'), data, steps, *flags),
        f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2', f'--process_id={i}'],
        stdout=open(logs[-1], 'w'), stderr=subprocess.STDOUT))
  t0 = time.time()
  if trigger:
    kind, sig = trigger
    while True:
      if kind == 'ckpt' and os.path.exists(os.path.join(tmp, 'run', 'checkpoints', '2')): break
      if kind == 'eta' and ' · ETA ' in open(logs[0]).read(): break
      if any(p.poll() is not None for p in procs): break
      time.sleep(0.2)
    procs[1].send_signal(sig)
    t0 = time.time()
  elif name == 'mid':
    while 'injected fault' not in open(logs[1]).read() and all(p.poll() is None for p in procs): time.sleep(0.2)
    t0 = time.time()
  codes = []
  for p in procs:
    try: codes.append(p.wait(timeout=420))
    except subprocess.TimeoutExpired: p.kill(); codes.append('killed at 420 s')
  took = time.time() - t0
  lines = [open(l).read().strip().splitlines()[-1][:300] if open(l).read().strip() else '' for l in logs]
  print(f'{name}: codes {codes}, last exit {took:.0f} s after the fault; last lines: {lines}', flush=True)

import os as _o
for case in (_o.environ.get('CASES') or 'startup,mid,kill,term,unprepared').split(','):
  {'startup': lambda: run('startup', 20, (), ('', 'from tests import faults; faults.fail_at_startup()')),
   'mid': lambda: run('mid', 12, ('--config.checkpoint_every_steps=2', '--config.log_every_steps=1', '--config.eval_every_steps=100', '--config.async_checkpoints=false'), ('', 'from tests import faults; faults.fail_after_steps(5)')),
   'kill': lambda: run('kill', 2000, ('--config.checkpoint_every_steps=2', '--config.log_every_steps=1', '--config.eval_every_steps=10000'), ('', ''), ('ckpt', signal.SIGKILL)),
   'term': lambda: run('term', 2000, ('--config.checkpoint_every_steps=1000', '--config.log_every_steps=1', '--config.eval_every_steps=10000'), ('', ''), ('eta', signal.SIGTERM)),
   'unprepared': lambda: run('unprepared', 2, ('--config.input.prepare=true', '--config.checkpoint_every_steps=2'), ('', ''))}[case]()
