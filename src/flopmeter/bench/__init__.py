"""Speed: device specs, calibration and the roofline estimate (and measured timings)."""
