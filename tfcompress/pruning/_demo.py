"""Demo row of pruning (see tfcompress/demo.py): 80 % unstructured magnitude pruning, int8."""


def demo_rows(ctx):
    """Prunes the trained digits CNN to 80 % sparsity (Zhu & Gupta schedule) and exports it.

    The row is exported with dynamic-range int8 weights; the zeros are what the tfcompress
    sparse kernels and gzip exploit.
    """
    import numpy as np

    from tfcompress.pruning import PolynomialDecay, PruningCallback, prune

    epochs = 1 if ctx.quick else max(2, ctx.epochs // 3)
    steps = int(np.ceil(len(ctx.x_train) / 32))
    end = max(1, steps * max(1, epochs - 1))
    pruned = prune(ctx.model, schedule=PolynomialDecay(0.0, 0.8, 0, end, frequency=max(1, min(100, end // 4))))
    ctx.compile_and_fit(pruned, epochs=epochs, callbacks=[PruningCallback()])
    return [ctx.measure("pruned 80% (int8 weights)", pruned, quantize="dynamic")]
