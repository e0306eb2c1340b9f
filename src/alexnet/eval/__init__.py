"""Evaluation (paper section 4.1): top-k metrics, centre and ten-crop testing, exact counts."""
