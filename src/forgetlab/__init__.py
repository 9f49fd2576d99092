"""forgetlab: catastrophic forgetting under per-sample backprop, BPTT and RTRL, in NumPy."""

__version__ = "0.1.0"
