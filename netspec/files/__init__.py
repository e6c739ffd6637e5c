"""Files and weights: atomic outputs, weight files read safely, the neutral weight layout, netspec convert."""
