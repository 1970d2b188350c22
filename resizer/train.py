"""Training and evaluation of a resizer → backbone model, top to bottom.

`train_and_evaluate(config, workdir)` runs one experiment in stages:

1. `build`: the task and models; every config check, before any data is
   read or anything is compiled. Then the dataset's metadata, and the
   workdir's lease.
2. `set_up`: the device mesh, step counts, the compiled program
   (`make_program`) and the state, resumed, warm-started or fresh.
3. `evaluate_only` (config.eval_only), or `train`: the loop of jitted train
   steps with periodic logging, image panels, evaluation and checkpoints,
   behind `guards.Guards` (lease, saves, preemption, segments); then the
   final evaluation and `workdir/results.json`.

The step is data-parallel: a `jax.shard_map` over a one-axis mesh of every
device (the modern form of `pmap`) under `jax.jit`. The batch is sharded,
parameters are replicated, the loss is the mean over the global batch (so
its gradient is the full-batch gradient on any mesh), and BatchNorm
statistics are averaged over the whole global batch through the mesh axis
name (or kept per device with `config.bn_cross_device=False`).
"""

import datetime
import functools
import time
from typing import Any, NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from clu import metric_writers, periodic_actions
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from resizer import checkpoints, config_checks, event_history, guards
from resizer import hosts, image_summaries, input_pipeline, lease, optim, paths
from resizer import run_record, tasks
from resizer.models import composite, costs

AXIS = 'data'


# ------------------------------------------------------------ the step itself
# Built by functions so that benchmarks and multi-process tests run exactly
# the step that training runs.

def make_init(model, tx, in_size: tuple[int, int], mesh, ema: bool = False):
  """A jitted rng → initial state, created replicated over `mesh`; with
  `ema`, the state also holds 'ema_params', starting at the parameters."""

  @functools.partial(jax.jit, out_shardings=NamedSharding(mesh, P()))
  def init(rng):
    images = jnp.zeros((1, *in_size, 3), jnp.uint8)
    variables = model.init({'params': rng, 'dropout': rng}, images, train=False)
    state = {'step': jnp.zeros((), jnp.int32),
             'params': variables['params'],
             'batch_stats': variables.get('batch_stats', {}),
             'opt_state': tx.init(variables['params'])}
    if ema:
      state['ema_params'] = variables['params']
    return state

  return init


# A rematerialised resizer (config.model.remat) keeps its recomputation apart
# from the forward pass with optimization barriers. XLA:CPU removes them
# early (its pass 'cse_barrier_expander') and then merges the recomputation
# with its forward twin, so the input-resolution activations stay alive
# across the backbone and remat saves nothing; GPU and TPU remove them only
# after scheduling. Keeping the pass off on CPU changes only programs that
# hold barriers, i.e. rematerialised ones.
CPU_COMPILER_OPTIONS = {'xla_disable_hlo_passes': 'cse_barrier_expander'}


def compiler_options(mesh) -> dict[str, str] | None:
  """XLA options for the train step on `mesh`'s platform."""
  platform = mesh.devices.flat[0].platform
  return dict(CPU_COMPILER_OPTIONS) if platform == 'cpu' else None


def make_train_step(model, tx, task: tasks.Task, lr_schedule, mesh,
                    accumulate_steps: int = 1, ema_decay: float = 0.0):
  """The jitted, data-parallel step (state, global batch, rng) → (state,
  metrics). The state is donated.

  With `accumulate_steps` k > 1, each device runs its shard as k
  micro-batches in sequence (a quarter of the activations at k=4) and the
  step applies their mean gradient: the gradient of the global batch's mean
  loss, as without accumulation. BatchNorm normalises each micro-batch with
  its own statistics (over all devices' micro-batches with cross-device
  BN), and the running averages move once per step, by the mean of the
  micro-batches' statistics, as per-device BN averages devices.

  A state with 'ema_params' moves them towards the updated parameters:
  ema ← ema_decay · ema + (1 − ema_decay) · params."""

  def micro_step(params, batch_stats, batch, rng):
    """(loss, grads, new batch_stats, metrics) of one (micro-)batch."""

    def loss_fn(params):
      logits, new_vars = model.apply(
          {'params': params, 'batch_stats': batch_stats},
          batch['image'], train=True, mutable=['batch_stats'],
          rngs={'dropout': rng})
      # The mean over the *global* batch (every shard has the same size).
      # Differentiating it gives the global gradient on every device: the
      # parameters are replicated, so the transpose of their implicit
      # broadcast already sums the devices' contributions. A pmean of
      # per-device gradients on top would multiply them by the device count.
      loss = jax.lax.pmean(jnp.mean(task.loss(logits, batch)), AXIS)
      return loss, (logits, new_vars)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (logits, new_vars)), grads = grad_fn(params)
    metrics = {k: jnp.mean(v)
               for k, v in task.train_metrics(logits, batch).items()}
    return loss, grads, new_vars.get('batch_stats', {}), metrics

  def train_step(state, batch, rng):
    """One step on this device's shard of the batch; runs under shard_map."""
    rng = jax.random.fold_in(rng, jax.lax.axis_index(AXIS))
    params = state['params']
    if accumulate_steps == 1:
      loss, grads, batch_stats, step_metrics = micro_step(
          params, state['batch_stats'], batch, rng)
    else:
      micro_batches = jax.tree.map(
          lambda x: x.reshape(accumulate_steps, -1, *x.shape[1:]), batch)

      def run(i):
        return micro_step(params, state['batch_stats'],
                          jax.tree.map(lambda x: x[i], micro_batches),
                          jax.random.fold_in(rng, i))

      def accumulate(total, i):
        return jax.tree.map(jnp.add, total, run(i)), None

      # The first micro-batch starts the sum: its outputs carry the types
      # (device-varying or not) the scan's carry must keep.
      total, _ = jax.lax.scan(accumulate, run(0),
                              jnp.arange(1, accumulate_steps))
      loss, grads, batch_stats, step_metrics = jax.tree.map(
          lambda x: x / accumulate_steps, total)
    # Per-device statistics still leave one replicated running average.
    batch_stats = jax.lax.pmean(batch_stats, AXIS)
    updates, opt_state = tx.update(grads, state['opt_state'], params)
    params = optax.apply_updates(params, updates)
    step_metrics = jax.lax.pmean(step_metrics, AXIS)
    step_metrics.update(loss=loss, grad_norm=optax.tree.norm(grads))
    step_metrics['learning_rate'] = lr_schedule(state['step'])
    new_state = {'step': state['step'] + 1, 'params': params,
                 'batch_stats': batch_stats, 'opt_state': opt_state}
    if 'ema_params' in state:
      new_state['ema_params'] = optax.incremental_update(
          params, state['ema_params'], step_size=1 - ema_decay)
    return new_state, step_metrics

  return jax.jit(
      jax.shard_map(train_step, mesh=mesh, in_specs=(P(), P(AXIS), P()),
                    out_specs=(P(), P())),
      donate_argnums=(0,), compiler_options=compiler_options(mesh))


def make_eval_step(model, task: tasks.Task, mesh):
  """The jitted step (state, global batch) → per-example outputs and mask,
  sharded like the batch."""

  def eval_step(state, batch):
    logits = model.apply(
        {'params': state['params'], 'batch_stats': state['batch_stats']},
        batch['image'], train=False)
    return {**task.eval_outputs(logits, batch), 'mask': batch['mask']}

  return jax.jit(jax.shard_map(
      eval_step, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P(AXIS)))


def make_mesh(devices) -> jax.sharding.Mesh:
  """The one-axis data-parallel mesh over `devices` (a run's: all of them)."""
  return jax.sharding.Mesh(np.array(devices), (AXIS,))


class Program(NamedTuple):
  """What a run compiles: its state's initialiser and its two steps."""
  init: Any         # rng → state, replicated over the mesh.
  train_step: Any   # See make_train_step.
  eval_step: Any    # See make_eval_step.
  lr_schedule: Any  # step → learning rate.


def make_program(config: ml_collections.ConfigDict, parts: 'Parts', mesh,
                 steps_per_epoch: int, total_steps: int) -> Program:
  """The optimiser, initialiser and jitted steps of `config` on `mesh`, as
  a run builds them (resizer.preflight compiles these very functions).
  The step counts only shape the learning-rate schedule."""
  tx, lr_schedule = optim.make_optimizer(config.optim, steps_per_epoch,
                                         total_steps)
  ema_decay = config.ema_decay
  in_size = composite.sizes(config.resizer).input
  return Program(
      init=make_init(parts.eval_model, tx, in_size, mesh, ema=ema_decay > 0),
      train_step=make_train_step(parts.model, tx, parts.task, lr_schedule,
                                 mesh, config.optim.accumulate_steps,
                                 ema_decay),
      eval_step=make_eval_step(parts.eval_model, parts.task, mesh),
      lr_schedule=lr_schedule)


def abstract_batch(config: ml_collections.ConfigDict, batch_size: int, mesh,
                   label: jax.ShapeDtypeStruct, evaluation: bool = False
                   ) -> dict[str, jax.ShapeDtypeStruct]:
  """The shapes, dtypes and sharding of the global batch a run's steps take
  (the input pipeline's, once on the devices): uint8 images at the
  resizer's input size, `label` per example, and a mask for evaluation."""
  sharded = NamedSharding(mesh, P(AXIS))
  h, w = composite.sizes(config.resizer).input

  def spec(shape, dtype):
    return jax.ShapeDtypeStruct((batch_size, *shape),
                                jax.dtypes.canonicalize_dtype(dtype),
                                sharding=sharded)

  batch = {'image': spec((h, w, 3), np.uint8),
           'label': spec(label.shape, label.dtype)}
  if evaluation:
    batch['mask'] = spec((), np.float32)
  return batch



class Parts(NamedTuple):
  """What a config builds before any data is read."""
  task: tasks.Task
  model: nn.Module       # The train step's: BatchNorm statistics averaged
                         # over AXIS if config.bn_cross_device.
  eval_model: nn.Module  # Init, evaluation and summaries: no mesh axis
                         # (they use the running statistics).


def build(config: ml_collections.ConfigDict, num_devices: int,
          num_processes: int, resuming_in: paths.PathLike | None = None
          ) -> Parts:
  """The task and models of `config`, or a ConfigError naming the first bad
  value: each builder checks its own block (task, resizer and model, optim),
  then `config_checks` what spans blocks or depends on the machine.

  A convention recorded as 'from_weights' is resolved here, in `config`
  (run_record.resolve_convention), reading the warm-start source once;
  `resuming_in`: the workdir of the run being resumed."""
  config_checks.require_blocks(config)
  try:
    source = run_record.resolve_convention(config, recorded=resuming_in)
    task = tasks.get_task(config)
    bn_axis = AXIS if config.bn_cross_device else None
    parts = Parts(task, composite.build_model(config, bn_axis_name=bn_axis),
                  composite.build_model(config))
    optim.check(config.optim)
  except ValueError as e:
    raise config_checks.ConfigError(str(e)) from None
  config_checks.validate(config, num_devices, num_processes,
                         resuming=resuming_in is not None, source=source)
  return parts


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: paths.PathLike,
                       allow_config_change: bool = False) -> dict[str, Any]:
  """Trains (or, with `config.eval_only`, evaluates) and returns the results.

  The workdir is leased to this run (process 0 holds it for the job) from
  before anything is written until the end; a resume whose config would
  train differently from the recorded one is refused unless
  `allow_config_change`."""
  # Everything that can be wrong with the config fails here, before any data
  # is read or anything is compiled.
  workdir = paths.resolve(workdir)  # Local or gs://: never os.path.
  if workdir.exists() and not workdir.is_dir():
    raise config_checks.ConfigError(
        f'--workdir={workdir} is a file; give a directory (a new one, or a '
        'run to resume).')
  resuming = checkpoints.has_checkpoint(workdir)
  parts = build(config, jax.device_count(), jax.process_count(),
                resuming_in=workdir if resuming else None)
  # The data set too (prepared by process 0 if asked), before the workdir
  # is touched: a run refused here leaves nothing behind.
  builder = input_pipeline.get_builder(config.input)
  try:
    info = input_pipeline.dataset_info(builder, config.input)
  except ValueError as e:
    raise config_checks.ConfigError(str(e)) from None
  config_checks.validate_against_data(config, info)
  logging.info('Config %s:\n%s', config.name, config)
  owner = lease.Lease(workdir)
  refused = None
  if jax.process_index() == 0:
    try:
      owner.acquire()
    except lease.WorkdirInUse as e:
      refused = e
  if jax.process_count() > 1 and not multihost_utils.broadcast_one_to_all(
      np.int32(refused is None)) and refused is None:
    refused = lease.WorkdirInUse(f'process 0 could not lease {workdir}.')
  if refused:
    raise refused
  hosts.on_stop(lambda reason: owner.release())  # Free for the rerun.
  try:
    return _run(config, parts, builder, workdir, owner, allow_config_change,
                check_recorded=resuming and not config.eval_only)
  finally:
    owner.release()


class Run(NamedTuple):
  """A run set up on its devices and workdir: what the stages below read."""
  config: ml_collections.ConfigDict
  task: tasks.Task
  eval_model: nn.Module
  builder: Any                # The TFDS builder of config.input.
  workdir: Any                # paths.resolve'd.
  batch_sharding: NamedSharding  # Global batches, over the mesh's AXIS.
  program: Program
  rng: jax.Array
  mgr: Any                    # The workdir's checkpoint manager.
  in_size: tuple[int, int]    # Of the images the pipeline gives.
  local_batch: int            # This process's share of the global batch.
  local_eval_batch: int
  start_step: int
  total_steps: int
  steps_per_epoch: int
  num_eval_batches: int
  config_changes: list        # Allowed changes from the recorded config.
  start_time: float


def _run(config: ml_collections.ConfigDict, parts: Parts, builder, workdir,
         owner: lease.Lease, allow_config_change: bool, check_recorded: bool
         ) -> dict[str, Any]:
  """The run itself, with the workdir leased: set up, then evaluate only or
  train. `check_recorded`: compare the config with the one recorded by the
  run being resumed."""
  run, state = set_up(config, parts, builder, workdir, allow_config_change,
                      check_recorded)
  if (finished := already_finished(run)) is not None:
    run.mgr.close()
    logging.info('%s finished at step %d already: nothing to do.', workdir,
                 run.start_step)
    return finished
  is_writer = jax.process_index() == 0
  if is_writer and not config.eval_only:
    # Checked and restorable: the record for resizer.visualize, export and
    # the next resume.
    run_record.write_config(workdir, config, run.config_changes,
                            run.start_step)
  segments = run_record.Segments(workdir, run.start_step, jax.device_count(),
                                 jax.process_count(), write=is_writer)
  hosts.on_stop(segments.end)  # A failed job records how it ended.

  if is_writer and run.start_step > 0 and not config.eval_only:
    event_history.drop_after(workdir, run.start_step)  # Logged again.
  writer = metric_writers.create_default_writer(
      str(workdir), just_logging=jax.process_index() > 0)
  if run.start_step == 0 and not config.eval_only:
    writer.write_hparams(flat_hparams(config))
  model_info = costs.model_summary(config, run.eval_model)
  logging.info('Model:\n%s', costs.format_summary(model_info))

  if config.eval_only:
    return evaluate_only(run, state, writer, model_info)
  return train(run, state, writer, model_info, owner, segments)


def set_up(config: ml_collections.ConfigDict, parts: Parts, builder, workdir,
           allow_config_change: bool, check_recorded: bool
           ) -> tuple[Run, dict]:
  """The mesh, step counts and compiled program of the run, and its state:
  resumed from the workdir's latest checkpoint, warm-started from
  config.init_from, or fresh."""
  start_time = time.time()
  config_changes = []
  if check_recorded:  # (An evaluation trains nothing: any config goes.)
    config_changes = run_record.check_resume(workdir, config,
                                             allow_config_change)
  mesh = make_mesh(jax.devices())
  local_batch = config.input.batch_size // jax.process_count()
  local_eval_batch = config.input.eval_batch_size // jax.process_count()
  steps_per_epoch = input_pipeline.steps_per_epoch(builder, config.input,
                                                   local_batch)
  total_steps = config.total_steps or int(config.num_epochs * steps_per_epoch)
  num_eval_batches = input_pipeline.num_eval_batches(builder, config.input,
                                                     local_eval_batch)

  program = make_program(config, parts, mesh, steps_per_epoch, total_steps)
  rng = jax.random.key(config.seed)
  state = program.init(jax.random.fold_in(rng, 0))

  mgr = checkpoints.manager(workdir, config.keep_checkpoints,
                            config.async_checkpoints)
  restored = checkpoints.restore_latest(mgr, state, workdir)
  if restored is not None:
    state = restored
    logging.info('Resumed from %s at step %d.', mgr.directory,
                 int(state['step']))
  elif config.init_from.workdir:
    source = checkpoints.load(config.init_from.workdir,
                              sharding=NamedSharding(mesh, P()))
    state = checkpoints.warm_start(state, source, config.init_from.parts)
    if 'ema_params' in state:  # The average starts from the warm-started
      # weights, in buffers of its own: the step donates the state.
      state['ema_params'] = jax.tree.map(jnp.copy, state['params'])
    logging.info('Warm-started %s from %s.', config.init_from.parts,
                 config.init_from.workdir)
  elif config.eval_only:
    raise FileNotFoundError(f'config.eval_only is set but {workdir} has no '
                            'checkpoint to evaluate.')
  return Run(config, parts.task, parts.eval_model, builder, workdir,
             NamedSharding(mesh, P(AXIS)), program, rng, mgr,
             composite.sizes(config.resizer).input, local_batch, local_eval_batch, int(state['step']), total_steps,
             steps_per_epoch, num_eval_batches, config_changes,
             start_time), state


def already_finished(run: Run) -> dict[str, Any] | None:
  """The results of a run that has trained to the end and is launched again
  unchanged (not to evaluate): nothing is left to do."""
  if (run.start_step < run.total_steps or run.config.eval_only
      or run.config_changes):
    return None
  return run_record.read_results(run.workdir, jax.process_index() == 0)


def evaluate_only(run: Run, state, writer, model_info: dict[str, Any]
                  ) -> dict[str, Any]:
  """config.eval_only: evaluates the latest checkpoint and appends the
  evaluation to results.json; training's own result stays."""
  run.mgr.close()
  evaluations = evaluate(run, state)
  write_eval(writer, run.start_step, evaluations)
  writer.flush()
  evaluation = dict(step=run.start_step, **evaluations,
                    num_devices=jax.device_count(), time=time.time(),
                    wall_time_sec=round(time.time() - run.start_time, 1))
  results = run_record.read_results(
      run.workdir, jax.process_index() == 0) or results_record(
          run.config, model_info, {}, run.start_step, [], run.task.main_metric)
  results.setdefault('evaluations', []).append(evaluation)
  if jax.process_index() == 0:
    run_record.write_results(run.workdir, results)
  return {**results, **evaluations}


def train(run: Run, state, writer, model_info: dict[str, Any],
          owner: lease.Lease, segments: run_record.Segments
          ) -> dict[str, Any]:
  """The training loop, from the run's start step to its last, with the
  workdir's guards; then the final evaluation and results.json."""
  config, total_steps = run.config, run.total_steps
  image_batch = next(input_pipeline.eval_batches(
      run.builder, config.input, size=run.in_size,
      local_batch_size=run.local_eval_batch, num_batches=1))['image'][:4]
  make_panels = image_summaries.panel_fn(run.eval_model)
  train_iter = input_pipeline.train_batches(
      run.builder, config.input, size=run.in_size, start_step=run.start_step,
      steps_per_epoch=run.steps_per_epoch, local_batch_size=run.local_batch,
      seed=config.seed)
  hooks = [periodic_actions.ReportProgress(num_train_steps=total_steps,
                                           writer=writer)]
  if config.profile_steps and jax.process_index() == 0:
    hooks.append(periodic_actions.Profile(
        num_profile_steps=config.profile_steps, logdir=str(run.workdir)))
  pending = []  # Per-step metrics still on device: no host sync every step.
  last_log_time, last_log_step = time.time(), run.start_step
  evaluations = {}
  logging.info('Training from step %d to %d (%d steps per epoch).',
               run.start_step, total_steps, run.steps_per_epoch)

  with guards.Guards(owner, run.mgr, segments) as guard:
    for step in range(run.start_step + 1, total_steps + 1):
      batch = to_global(next(train_iter), run.batch_sharding)
      state, step_metrics = run.program.train_step(
          state, batch, jax.random.fold_in(run.rng, step))
      pending.append(step_metrics)
      for hook in hooks:
        hook(step)
      guard.step_done()
      save_now = itstime(step, config.checkpoint_every_steps, total_steps)
      log_now = itstime(step, config.log_every_steps, total_steps)
      if save_now or log_now:
        # A checkpoint or a log line only after a check of every loss since
        # the last: a saved state is never past a non-finite loss.
        guard.check_losses(pending, step)
      if log_now:
        elapsed = time.time() - last_log_time
        scalars = mean_metrics(pending)
        scalars['steps_per_sec'] = (step - last_log_step) / elapsed
        scalars['images_per_sec'] = (scalars['steps_per_sec']
                                     * config.input.batch_size)
        writer.write_scalars(step, {f'train/{k}': v
                                    for k, v in scalars.items()})
        logging.info('%s', progress_line(step, total_steps, scalars))
        pending, last_log_time, last_log_step = [], time.time(), step
      if config.image_summary_every_steps and itstime(
          step, config.image_summary_every_steps, total_steps):
        panels = make_panels({'params': state['params'],
                              'batch_stats': state['batch_stats']},
                             image_batch)
        writer.write_images(step, {f'resizer/{k}': v
                                   for k, v in panels.items()})
      if itstime(step, config.eval_every_steps, total_steps):
        evaluations = evaluate(run, state)
        write_eval(writer, step, evaluations)
        logging.info('Eval at step %d: %s', step, evaluations)
      if save_now:
        guard.save(step, state)
      if step != total_steps:
        guard.stop_if_preempted(step, state, pending)
  writer.flush()
  if not evaluations:  # Nothing left to train: evaluate the restored state.
    evaluations = evaluate(run, state)
  segments.update(int(state['step']))
  results = results_record(config, model_info, evaluations,
                           int(state['step']), segments.all(),
                           run.task.main_metric)
  if jax.process_index() == 0:
    run_record.write_results(run.workdir, results)
  return results


# ---------------------------------------------------------------- evaluation

def to_global(batch: dict[str, np.ndarray], sharding: NamedSharding
              ) -> dict[str, jax.Array]:
  """This process's numpy batch → one global array, placed by `sharding`."""
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def evaluate(run: Run, state) -> dict[str, dict[str, float]]:
  """{'eval': the metrics of the parameters over the whole eval split,
  'eval_ema': those of the EMA weights (if kept), with the live BatchNorm
  statistics}."""
  metrics = {'eval': _evaluate_params(run, state)}
  if 'ema_params' in state:
    metrics['eval_ema'] = _evaluate_params(
        run, {**state, 'params': state['ema_params']})
  return metrics


def _evaluate_params(run: Run, state) -> dict[str, float]:
  """The task's metrics of `state`, every example counted once (the last
  batch is padded and masked), gathered from every process."""
  outputs = []
  for batch in input_pipeline.eval_batches(
      run.builder, run.config.input, size=run.in_size,
      local_batch_size=run.local_eval_batch, num_batches=run.num_eval_batches):
    outputs.append(run.program.eval_step(
        state, to_global(batch, run.batch_sharding)))
  gathered = multihost_utils.process_allgather(outputs, tiled=True)
  merged = {k: np.concatenate([np.asarray(o[k]) for o in gathered])
            for k in gathered[0]}
  return run.task.summarize(merged)


def write_eval(writer, step: int, metrics: dict[str, dict[str, float]]
               ) -> None:
  """Evaluations as TensorBoard scalars: eval/top1_accuracy, eval_ema/..."""
  writer.write_scalars(step, {f'{name}/{k}': v
                              for name, values in metrics.items()
                              for k, v in values.items()})


# ----------------------------------------------------------------- helpers

def itstime(step: int, every: int, total_steps: int) -> bool:
  """Whether a periodic action is due after `step`: every `every` steps
  (none between when `every` is 0) and after the last step."""
  return step == total_steps or (every > 0 and step % every == 0)


def mean_metrics(pending: list[dict[str, jnp.ndarray]]) -> dict[str, float]:
  """The mean of each per-step metric over the steps since the last log."""
  host = jax.device_get(pending)
  return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


def progress_line(step: int, total_steps: int, scalars: dict[str, float]
                  ) -> str:
  """'step 100/300 (33%) · 512 img/s · loss 0.4321 · ETA 0:01:05'."""
  eta = (total_steps - step) / max(scalars['steps_per_sec'], 1e-9)
  return (f'step {step}/{total_steps} ({100 * step // total_steps}%) · '
          f"{scalars['images_per_sec']:.0f} img/s · loss {scalars['loss']:.4f} · "
          f'ETA {datetime.timedelta(seconds=round(eta))}')


def flat_hparams(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as flat scalars, for TensorBoard's hparams view."""
  flat = flax.traverse_util.flatten_dict(config.to_dict(), sep='.')
  return {k: v if isinstance(v, (int, float, str, bool)) else str(v)
          for k, v in flat.items()}


def results_record(config: ml_collections.ConfigDict,
                   model_info: dict[str, Any],
                   evaluations: dict[str, dict[str, float]],
                   steps: int, segments: list[dict[str, Any]],
                   main_metric: str) -> dict[str, Any]:
  """What `results.json` holds: the setting, the final evaluation ('eval',
  and 'eval_ema' with an EMA), and the training segments with their total
  wall time."""
  return dict(
      config=config.name, seed=config.seed,
      dataset=config.input.dataset, task=config.task,
      main_metric=main_metric, **model_info,
      eval=evaluations.get('eval', {}), **{
          k: v for k, v in evaluations.items() if k != 'eval'},
      steps=steps, global_batch_size=config.input.batch_size,
      dtype=config.model.dtype, num_devices=jax.device_count(),
      wall_time_sec=round(sum(s['wall_time_sec'] for s in segments), 1),
      segments=segments)
