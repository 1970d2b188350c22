r"""The offline demo: does a learned resizer recover detail a fixed resize loses,
at equal compute?

  python -m resizer.main --config=configs/demo.py --workdir=runs/demo_learned

Trains a ResNet on `fine_gratings` (grating orientation under real photos,
128x128 → 32x32; see resizer/datasets/fine_gratings.py), which is generated
on first use, on CPU in under 10 minutes. The backbone (`resnet_demo_wide`)
is wide enough that the resizer adds about half of its cost, so fixed
resizes at a larger backbone input cost as much; the paper's comparison,
over 3 seeds, is

  python -m resizer.compare --config=configs/demo.py --workdir=runs/demo_compare

Single baselines with the same budget: `--config=configs/demo.py:resizer=none
--config.resizer.in_size=48 --config.resizer.out_size=48` (the pipeline's
resize to 48x48), `:resizer=bilinear` (also bicubic, muller, lanczos3, and
antialias=true), `seed=N` for repeats, `backbone=resnet_demo` for the
narrow backbone of earlier results. Compare runs with

  python -m resizer.report runs/*
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, resizer='learned', antialias=False, seed=0,
                         steps=300, backbone='resnet_demo_wide')
  config = common.base_config()
  config.seed = arg.seed
  config.input.update(
      dataset='fine_gratings', prepare=True, train_split='train',
      eval_split='test', batch_size=64, eval_batch_size=256,
      shuffle_buffer=4096, cache_train=True,
      # Whole images: a random resized crop would change the grating's
      # period, and a horizontal flip turns 45° into 135° (another class).
      crop_area_range=(1.0, 1.0), aspect_ratio_range=(1.0, 1.0), flip=False,
      eval_crop_fraction=1.0)
  # A CPU demo: convolutions in the forms XLA:CPU runs fastest.
  config.model.update(name=arg.backbone, num_classes=4, dtype='float32',
                      conv_impl='cpu_forms')
  common.set_resizer(config, arg.resizer, in_size=128, out_size=32,
                     antialias=arg.antialias)
  # n=8 rather than the paper's 16: half the resizer's cost, so that it adds
  # about half of the backbone's (0.047 of 0.099 GFLOPs/img), as the
  # paper's adds 20-24% to ResNet-50; 8 filters still hold the 4
  # orientations in 2 phases each.
  config.resizer.num_filters = 8
  config.loss.label_smoothing = 0.0
  config.optim.update(name='adam', learning_rate=2e-3, schedule='cosine',
                      warmup_epochs=0.5, weight_decay=0.0)
  config.total_steps = arg.steps
  config.update(log_every_steps=50, eval_every_steps=100,
                checkpoint_every_steps=100, image_summary_every_steps=100)
  return config
