"""Faults that a test injects into one process of a multi-process run
(`python -c "from tests import faults; faults.X(); ..."`), in place of a
host whose data is missing or damaged."""

from resizer import input_pipeline


def fail_at_startup() -> None:
  """The run's first look at its data raises."""

  def get_builder(cfg):
    raise RuntimeError(f'injected fault: {cfg.dataset} is not ready here')

  input_pipeline.get_builder = get_builder


def fail_after_steps(steps: int) -> None:
  """The training stream raises after `steps` batches, as a damaged record
  would."""
  original = input_pipeline.train_batches

  def train_batches(*args, **kwargs):
    for i, batch in enumerate(original(*args, **kwargs)):
      if i == steps:
        raise RuntimeError(f'injected fault: corrupted record after {steps} '
                           'batches')
      yield batch

  input_pipeline.train_batches = train_batches
