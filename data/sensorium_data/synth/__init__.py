"""The synthetic digital mouse: Sensorium 2023 data with a known ground truth.

Needs the ``synth`` extra (scikit-image, for its bundled photographs).
"""
