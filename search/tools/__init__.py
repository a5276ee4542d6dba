"""Measurement and research tools: how fast, how it scales, how pruning would have done.

Not the product: a search never imports them. They measure the product and back the numbers in
the docs: `bench` the speed on this machine (docs/speed.md), `scale` what a worker adds around a
trial as a study grows (docs/workers.md), `bank` a curve bank of unpruned CIFAR-10 runs,
`simulate` whole searches against it, `replay` pruners over a finished search's curves and
`fidelity` how far early epochs rank trials as the end does (docs/pruning.md); `protocols` names
the reduced CIFAR-10 settings they run on and `baseline_loader` is the benchmark's reference
loop. Run one as `python -m search.tools.bench` or `regsearch bench`.
"""
