r"""DenseNet-121 on cats_vs_dogs with a learned resizer 300→150: the setting of
Keras' "Learning to Resize" example (2 classes; resizer + backbone 7,051,717
parameters with BN statistics), trained from scratch on one accelerator.

  tfds build cats_vs_dogs            # once; needs network access
  python -m resizer.main --config=configs/cats_vs_dogs_densenet.py --workdir=$WORKDIR

Arguments as in the ImageNet configs (resizer=, res=, out=, antialias=,
weights=), e.g.
`:resizer=bilinear` for the baseline. cats_vs_dogs has only a train split
(23,262 images); the last 20% is held out for evaluation.
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, resizer='learned', res=300, out=150,
                         antialias=False, weights='')
  config = common.base_config()
  config.input.update(dataset='cats_vs_dogs', train_split='train[:80%]',
                      eval_split='train[80%:]', batch_size=64,
                      eval_batch_size=64)
  config.model.update(name='densenet121', num_classes=2)
  common.set_resizer(config, arg.resizer, arg.res, arg.out, arg.antialias)
  config.optim.update(name='adam', learning_rate=1e-3, schedule='cosine',
                      warmup_epochs=1.0, weight_decay=0.0)
  config.num_epochs = 20.0
  config.update(eval_every_steps=500, checkpoint_every_steps=500,
                image_summary_every_steps=500)
  common.init_backbone_from(config, arg.weights)
  return config
