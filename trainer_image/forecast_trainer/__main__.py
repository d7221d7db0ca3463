"""``python -m forecast_trainer`` is the same as the ``forecast-trainer`` console script."""

from forecast_trainer.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
