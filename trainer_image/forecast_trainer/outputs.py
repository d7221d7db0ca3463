"""Files of the embedded mode (--output-dir): per product a folder with

  model.json          the model document (forecaster.py; never pickle)
  model.json.sha256   "<sha256>  model.json" (sha256sum format)
  forecast.csv        ds, yhat, yhat_lower, yhat_upper (the first level), then
                      yhat_lower_<L>, yhat_upper_<L> per interval level and q<Q> per quantile
                      (e.g. yhat_lower_95, q90), all calibrated on CV (intervals.py)
  forecast.png        history + fit + forecast with every level's band; "UNSURE" in the
                      title when the CV gain over naive is within noise
  metrics.json        parameters, CV errors, baselines, warnings

and ``summary.json`` for the run at the top. Files are written to a temporary folder that is
renamed into place, so a product never has half its files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from typing import Any

from forecast_trainer.jsonutil import json_safe
from forecast_trainer.plot import plot_forecast

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def product_folder(product: str) -> str:
    """A file-system-safe folder name for ``product`` (the id itself when it is already safe)."""
    if _SAFE.fullmatch(product) and not product.endswith("."):
        return product
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", product).strip("._-")[:80] or "product"
    return f"{slug}-{hashlib.sha256(product.encode('utf-8')).hexdigest()[:10]}"


def write_product(
    output_dir: str,
    product: str,
    model_json: str,
    checksum: str,
    forecast: Any,
    history: Any,
    fitted: Any,
    metrics: dict[str, Any],
    title: str,
    uncertain: bool = False,
) -> str:
    """Write one product's files; returns the folder's path relative to ``output_dir``."""
    os.makedirs(output_dir, exist_ok=True)
    name = product_folder(product)
    final = os.path.join(output_dir, name)
    staging = tempfile.mkdtemp(prefix=f".{name[:40]}-", dir=output_dir)
    try:
        with open(os.path.join(staging, "model.json"), "w", encoding="utf-8") as fh:
            fh.write(model_json)
        with open(os.path.join(staging, "model.json.sha256"), "w", encoding="utf-8") as fh:
            fh.write(f"{checksum}  model.json\n")
        out = forecast.copy()
        out["ds"] = out["ds"].dt.strftime("%Y-%m-%d")
        out.to_csv(os.path.join(staging, "forecast.csv"), index=False, float_format="%.4f")
        with open(os.path.join(staging, "metrics.json"), "w", encoding="utf-8") as fh:
            json.dump(json_safe({"product": product, **metrics}), fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        plot_forecast(os.path.join(staging, "forecast.png"), history, fitted, forecast, title, uncertain)
        if os.path.isdir(final):
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return name


def read_verified(folder: str) -> str:
    """A product folder's model JSON after checking it against model.json.sha256."""
    from forecast_trainer.model import checksum

    with open(os.path.join(folder, "model.json"), encoding="utf-8") as fh:
        text = fh.read()
    with open(os.path.join(folder, "model.json.sha256"), encoding="utf-8") as fh:
        expected = fh.read().split()[0]
    if checksum(text) != expected:
        from forecast_trainer.errors import ModelIntegrityError

        raise ModelIntegrityError(f"{folder}/model.json does not match its checksum; refusing it")
    return text
