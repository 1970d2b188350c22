r"""Any TFDS image-classification dataset by name, with any backbone.

  python -m resizer.main --workdir=$WORKDIR \
    --config=configs/tfds_classification.py:dataset=oxford_iiit_pet,classes=37,eval_split=test

Arguments: dataset=<TFDS name>, classes=<label count>, train_split=, eval_split=,
backbone=<name in resizer.models.composite.BACKBONES>, resizer=, res=, out=,
antialias=, batch=<global batch size>, epochs=, weights=<directory from
python -m resizer.import_weights, or a run>. Wired examples:
caltech_birds2011 (classes=200, eval_split=test), oxford_iiit_pet (37, test),
tf_flowers (5, train[:80%] / train[80%:]), food101 (101, validation).
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(
      arg, dataset='oxford_iiit_pet', classes=37, train_split='train',
      eval_split='test', backbone='resnet50', resizer='learned', res=448,
      out=224, antialias=False, batch=128, epochs=60.0, weights='')
  config = common.base_config()
  config.input.update(dataset=arg.dataset, train_split=arg.train_split,
                      eval_split=arg.eval_split, batch_size=arg.batch,
                      eval_batch_size=arg.batch)
  config.model.update(name=arg.backbone, num_classes=arg.classes)
  common.set_resizer(config, arg.resizer, arg.res, arg.out, arg.antialias)
  config.optim.update(schedule='cosine', learning_rate=0.1, warmup_epochs=2.0,
                      weight_decay=5e-5)
  config.num_epochs = arg.epochs
  config.update(eval_every_steps=1000, checkpoint_every_steps=1000,
                image_summary_every_steps=1000)
  common.init_backbone_from(config, arg.weights)
  return config
