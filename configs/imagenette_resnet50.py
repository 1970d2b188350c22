r"""ResNet-50 on Imagenette (10 easy ImageNet classes, full-size images) with a
learned resizer 448→224; a one-accelerator stand-in for the ImageNet runs.

  tfds build imagenette/full-size-v2  # once; needs network access
  python -m resizer.main --config=configs/imagenette_resnet50.py --workdir=$WORKDIR

Arguments as in the ImageNet configs (resizer=, res=, out=, antialias=,
weights=).
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, resizer='learned', res=448, out=224,
                         antialias=False, weights='')
  config = common.base_config()
  config.input.update(dataset='imagenette/full-size-v2', batch_size=128,
                      eval_batch_size=128)
  config.model.update(name='resnet50', num_classes=10)
  common.set_resizer(config, arg.resizer, arg.res, arg.out, arg.antialias)
  config.optim.update(schedule='cosine', learning_rate=0.1, warmup_epochs=2.0,
                      weight_decay=5e-5)
  config.num_epochs = 60.0
  config.update(eval_every_steps=1000, checkpoint_every_steps=1000,
                image_summary_every_steps=1000)
  common.init_backbone_from(config, arg.weights)
  return config
