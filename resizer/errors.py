"""The one form of a refused value: `NAME=VALUE is invalid; expected WHAT.`

NAME is what the user wrote or can find: a config key (`config.optim.name`)
or a module's field (`LearnedResizer: num_filters`). The config checks, the
optimiser's and the resizer modules' own checks all raise through `require`.
"""

from typing import Any


class ConfigError(ValueError):
  """A config value that cannot work."""


def require(ok: bool, name: str, value: Any, expected: str) -> None:
  """Raises ConfigError 'NAME=VALUE is invalid; expected EXPECTED.' unless
  `ok`."""
  if not ok:
    raise ConfigError(f'{name}={value!r} is invalid; expected {expected}.')
