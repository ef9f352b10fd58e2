"""bslr: grids of networks over batch size and learning rate, and the statistics and figures of a paper."""

__version__ = "0.1.0"
