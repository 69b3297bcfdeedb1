"""Regenerate the reference parameter files in this folder with the real JWST pipeline.

Run once with the reference interpreter (jwst 3.0.0), offline:

    STPIPE_DISABLE_CRDS_STEPPARS=True CRDS_PATH=$(mktemp -d) CRDS_SERVER_URL=https://127.0.0.1:9 \
    CRDS_OBSERVATORY=jwst /work/jwst-venv/bin/python tests/data/make_reference_pars.py

``reference-pars-outlierdetectionstep.asdf``: the step's export with non-default values and
the CRDS metadata block; ``reference-pars-image3pipeline.asdf``: calwebb_image3's export,
whose ``outlier_detection`` step carries its own values.
"""

from pathlib import Path

from jwst.outlier_detection import OutlierDetectionStep
from jwst.pipeline import Image3Pipeline

HERE = Path(__file__).parent

step = OutlierDetectionStep(snr="4.0 3.0", scale="1.8 0.7", maskpt=0.5, pixmap_stepsize=10.0,
                            pixmap_order=3, weight_type="exptime", backg=0.25)
step.export_config(HERE / "reference-pars-outlierdetectionstep.asdf", include_metadata=True)

pipe = Image3Pipeline()
pipe.outlier_detection.snr = "6.0 5.0"
pipe.outlier_detection.kernel = "point"
pipe.outlier_detection.resample_data = False
pipe.export_config(HERE / "reference-pars-image3pipeline.asdf")
