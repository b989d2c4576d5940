"""Side-by-side benchmarks: ours vs a peer, same process, same inputs.

Run ``python -m benchmarks [suite ...]`` (or ``make bench``). Each suite prints
one table with our time, the peer's time and the ratio (peer / ours: above 1
means scalekit is faster), on the CPU and, where present, on CUDA.
"""
