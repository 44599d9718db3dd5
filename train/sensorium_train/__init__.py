"""PyTorch architectures (core, readout, shifter, modulator) and the training loop."""
