"""Slit spectroscopy (the reference's ``mode="spec"``): NIRSpec fixed slit / MOS and MIRI LRS.

What jwst 3.0.0 does (``outlier_detection/spec.py`` with ``resample/resample_spec.py``,
stcal 1.20), as reproduced here:

- Runs per source: calwebb_spec3 splits ``MultiSlitModel`` exposures with
  ``exp_to_source`` (key ``source_name`` if set, else ``source_id``; each slit's metadata
  merged from its exposure, keeping its own ``wcsinfo``/``bunit``), then runs the step on
  each source's container of slits with ``mode="spec"``; MIRI LRS ``ImageModel`` files are
  one container. Fewer than two inputs: nothing is changed and the status is ``FAILED``.
- Groups: the slits of one exposure (same ``group_id``/observation: e.g. NRS1 and NRS2
  cut-outs of one source) are drizzled together; the median is over groups.
- Frame: ``build_nirspec_output_wcs`` (NIRSpec) or ``build_interpolated_output_wcs``
  (others), pixel scale ratio 1; quirks in :mod:`daskod.geometry._spec_frame` and
  :mod:`daskod.geometry._spec_frame_interp`.
- Pixel maps: every pixel (``pixmap_stepsize``/``order`` are ignored), the input WCS's
  bounding box applied (NaN outside), the output's not; drizzle is limited to
  ``resample_range`` of the input bounding box (``int(edge + 0.5)``), and the NaN map just
  outside it changes how the border pixels' corners are placed.
- Resample: ``ivm``/``exptime`` weights, sky level subtracted when not yet subtracted, a
  second drizzle of ERR with the same map, weights, kernel and ``pixfrac`` (weighted linear
  mean; divided by ``1/sqrt(pixel_scale_ratio) = 1``); the group's weight threshold
  (``maskpt`` x 3-sigma-clipped mean of non-zero weights) masks data and error alike.
- Median: NaN-median over groups of the data and, separately, of the errors.
- Blot: both with tblot's bilinear rule (float32 coordinates; daskod's float64 blot differs by
  ~1e-4 of the value, which changed no flag on the parity scenes), NaN fill.
- Flags: ``flag_resampled_crs`` with the blotted ``median_err`` as the noise term, the
  background ``meta.background.level`` when not subtracted else ``backg``; ``DQ |= 17``;
  NaN matching of SCI/ERR/VAR_* and DO_NOT_USE.
- Without resampling: every input's own weight threshold masks its data and ERR, NaN-median
  over inputs (all the same shape), ``|SCI - median| > snr1 * median_err``. With
  ``weight_type="exptime"`` jwst 3.0.0 raises ``KeyError: 'exposure_time'`` here (it passes
  the datamodel, not a dict, to stcal's ``build_driz_weight``); daskod uses the exposure time.
- Intermediates (``save_intermediate_results``): ``<root>_<slit>_outlier_s2d.fits`` per
  group (first member's names; SCI/ERR/WHT *before* the threshold), ``<root>_<slit>_median.fits``
  (first input; SCI and ERR), ``<root>_<slit>_blot.fits`` per input (SCI and ERR, the input's
  model type); ``<root>`` is the file stem without ``_cal``; for MIRI LRS containers read from
  an association the association id replaces the slit (``<root>_<asn_id>_blot.fits``).

The pieces, each usable alone: the output frame (:mod:`daskod.geometry._spec_frame`,
:mod:`daskod.geometry._spec_frame_interp`), exact pixel maps
(:mod:`daskod.geometry._spec_pixel_map`), kernels (:mod:`daskod.spec._kernels`), tile work
units for the engine (:mod:`daskod.spec._tasks`, wired by :mod:`daskod.modes.spec`:
``daskod.detect_outliers(..., mode="spec")``) and a whole-frame numpy prototype, the oracle
the tests hold the engine to (:func:`detect_spec_outliers_dense`; not a production path).
JWST products: :mod:`daskod.io._jwst_spec`.
"""

from daskod.spec._dense import SpecDenseResult, detect_spec_outliers_dense, group_indices
from daskod.spec._frame import build_spec_frame

__all__ = ["detect_spec_outliers_dense", "SpecDenseResult", "build_spec_frame",
           "group_indices"]
