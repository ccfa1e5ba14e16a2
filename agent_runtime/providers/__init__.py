"""Model providers behind one streaming interface (`base`); the simulated model (`simulated`)."""
