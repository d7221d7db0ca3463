"""forecast_trainer: trains one Prophet demand-forecasting model per product, tuned with Optuna.

Light on purpose: importing the package (and ``forecast-trainer --help``) must not pull in
pandas, Prophet or Optuna; the commands import them when they run.
"""

from forecast_trainer.version import __version__

__all__ = ["__version__"]
