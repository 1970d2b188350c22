r"""The offline IQA demo: predict simulated rating distributions of degraded
photos (resizer/datasets/iqa_demo.py) with the EMD loss, on CPU in minutes.

  python -m resizer.main --config=configs/demo_iqa.py --workdir=runs/iqa_learned

The first run writes the AVA-format images to ~/tensorflow_datasets/
resizer_iqa_demo/manual and prepares them through the real `ava` builder.
Baseline: `--config=configs/demo_iqa.py:resizer=bilinear`. Reports SRCC/PLCC
of predicted vs true mean scores on the held-out 20%. At equal compute, with
the classification demo's wide backbone and an 8-filter resizer:

  python -m resizer.compare --config=configs/demo_iqa.py:backbone=resnet_demo_wide \
      --set=resizer.num_filters=8 --fixed=bilinear,bilinear+aa --workdir=runs/iqa_compare
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, resizer='learned', antialias=False, seed=0,
                         steps=300, backbone='resnet_demo')
  config = common.base_config()
  config.seed = arg.seed
  config.task = 'iqa'
  config.input.update(
      dataset='ava/random_split', prepare=True,
      data_dir='~/tensorflow_datasets/resizer_iqa_demo',
      manual_dir='~/tensorflow_datasets/resizer_iqa_demo/manual',
      make_manual_dir='iqa_demo', train_split='train', eval_split='test',
      label_key='rating_distribution', batch_size=32, eval_batch_size=80,
      shuffle_buffer=1024, cache_train=True, crop_area_range=(0.6, 1.0),
      eval_crop_fraction=1.0)
  # A CPU demo: convolutions in the forms XLA:CPU runs fastest.
  config.model.update(name=arg.backbone, num_classes=10, dtype='float32',
                      conv_impl='cpu_forms')
  common.set_resizer(config, arg.resizer, in_size=128, out_size=32,
                     antialias=arg.antialias)
  config.loss.label_smoothing = 0.0
  config.optim.update(name='adam', learning_rate=1e-3, schedule='cosine',
                      warmup_epochs=1.0, weight_decay=0.0)
  config.total_steps = arg.steps
  config.update(log_every_steps=50, eval_every_steps=100,
                checkpoint_every_steps=100, image_summary_every_steps=100)
  return config
